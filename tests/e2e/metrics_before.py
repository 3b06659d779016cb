"""The hand-written `/metrics` renderer taskflare had before `prometheus-client`: kept
as the reference the tests compare the new exposition with (same numbers)."""

from __future__ import annotations

from taskflare.app import App
from taskflare.readmodel import WorkerCounters


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        text = repr(float(value)) if not float(value).is_integer() else str(int(value))
        self.lines.append(f"{name}{_labels(**labels)} {text}")


async def render_metrics(app: App) -> str:
    """The whole exposition."""
    out = _Writer()
    queues = await app.read.queues()
    out.family("taskflare_messages", "gauge", "Stored messages by queue and state.")
    for queue in queues:
        for state, count in sorted(queue["depth"].items()):
            out.sample("taskflare_messages", count, queue=queue["name"], state=state)
    out.family(
        "taskflare_queue_oldest_pending_age_seconds", "gauge", "Age of the oldest ready message."
    )
    for queue in queues:
        age = queue["oldestPendingAgeSeconds"] or 0.0
        out.sample("taskflare_queue_oldest_pending_age_seconds", age, queue=queue["name"])
    out.family("taskflare_queue_paused", "gauge", "1 when the queue is paused.")
    for queue in queues:
        out.sample("taskflare_queue_paused", int(queue["paused"]), queue=queue["name"])
    out.family("taskflare_jobs", "gauge", "Jobs by queue, type and status.")
    for row in await app.read.job_counts():
        out.sample(
            "taskflare_jobs",
            row["count"],
            queue=row["queue"],
            type=row["type"],
            status=row["status"],
        )
    counters = await app.read.worker_counters()
    out.family("taskflare_workers", "gauge", "Workers that reported in the last 30 seconds.")
    out.sample("taskflare_workers", counters.alive)
    _worker_counters(out, counters)
    return "\n".join(out.lines) + "\n"


def _worker_counters(out: _Writer, counters: WorkerCounters) -> None:
    names = {
        "delivered": "Messages delivered to consumers.",
        "acked": "Messages acked (jobs completed).",
        "retried": "Messages retried.",
        "failed": "Messages failed after their last attempt.",
        "cancelled": "Jobs cancelled while running.",
    }
    for counter, help_text in names.items():
        metric = f"taskflare_{'processed' if counter == 'acked' else counter}_total"
        out.family(metric, "counter", help_text)
        for queue, value in sorted(counters.totals.get(counter, {}).items()):
            out.sample(metric, value, queue=queue)
    metric = "taskflare_handler_duration_seconds"
    out.family(metric, "histogram", "Time consumers spent on a batch (or a job).")
    for queue, values in sorted(counters.histogram.items()):
        running = 0.0
        bounds = [*counters.histogram_buckets, float("inf")]
        for bound, value in zip(bounds, values, strict=False):
            running += value
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out.sample(f"{metric}_bucket", running, queue=queue, le=le)
        out.sample(f"{metric}_sum", round(counters.histogram_sum.get(queue, 0.0), 6), queue=queue)
        out.sample(f"{metric}_count", running, queue=queue)
