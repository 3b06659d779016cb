"""`GET /metrics`: Prometheus text format, from the read model.

Gauges come from the database (messages by queue and state, oldest pending age, jobs by
status); counters and handler-duration histograms are the sums of every worker's last
report (workers report every 5 s), so they cover all processes on all machines.
"""

from __future__ import annotations

from typing import Any

from ..app import App
from ..readmodel import WorkerCounters


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
    _limits(out, await app.read.limits())
    counters = await app.read.worker_counters()
    out.family("taskflare_workers", "gauge", "Workers that reported in the last 30 seconds.")
    out.sample("taskflare_workers", counters.alive)
    _worker_counters(out, counters)
    return "\n".join(out.lines) + "\n"


_LIMIT_GAUGES = (
    ("taskflare_limit_keys", "keys", "Distinct keys of unfinished jobs under a flow limit."),
    ("taskflare_limit_running", "running", "Jobs running under a flow limit."),
    ("taskflare_limit_waiting", "waiting", "Ready jobs a flow limit holds back now."),
    (
        "taskflare_limit_started_per_second",
        "startedPerSecond",
        "Jobs started under a flow limit per second (last 10 s).",
    ),
)


def _limits(out: _Writer, limits: list[dict[str, Any]]) -> None:
    for metric, field, help_text in _LIMIT_GAUGES:
        out.family(metric, "gauge", help_text)
        for row in limits:
            out.sample(metric, row[field], queue=row["queue"], limit=row["limit"])


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
