"""`GET /metrics`: Prometheus text format, from the database and the workers' reports.

Gauges come from the database (messages by queue and state, oldest pending age, jobs by
status); counters and handler-duration histograms are the sums of every worker's last
report (workers report every 5 s), so they cover all processes on all machines.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import orjson

from ..app import App

WORKER_ALIVE_SECONDS = 30.0
REPORT_WINDOW_SECONDS = 7 * 86_400.0


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
    backend = await app.backend()
    now = time.time()
    out = _Writer()
    counts = await backend.queue_counts()
    out.family("taskflare_messages", "gauge", "Stored messages by queue and state.")
    for queue in counts:
        for state, count in sorted(queue.by_state.items()):
            out.sample("taskflare_messages", count, queue=queue.name, state=state)
    out.family(
        "taskflare_queue_oldest_pending_age_seconds", "gauge", "Age of the oldest ready message."
    )
    for queue in counts:
        age = 0.0 if queue.oldest_ready_at is None else max(now - queue.oldest_ready_at, 0.0)
        out.sample("taskflare_queue_oldest_pending_age_seconds", round(age, 3), queue=queue.name)
    out.family("taskflare_queue_paused", "gauge", "1 when the queue is paused.")
    for queue in counts:
        out.sample("taskflare_queue_paused", int(queue.paused), queue=queue.name)
    out.family("taskflare_jobs", "gauge", "Jobs by queue, type and status.")
    for row in await backend.job_counts():
        from ..jobs import JobStatus

        status = JobStatus.from_state(row.state).value
        out.sample("taskflare_jobs", row.count, queue=row.queue, type=row.type, status=status)
    reports = await backend.worker_list(now - REPORT_WINDOW_SECONDS)
    out.family("taskflare_workers", "gauge", "Workers that reported in the last 30 seconds.")
    out.sample(
        "taskflare_workers", sum(1 for r in reports if now - r.last_seen <= WORKER_ALIVE_SECONDS)
    )
    _worker_counters(out, [orjson.loads(r.stats_json) for r in reports])
    return "\n".join(out.lines) + "\n"


def _worker_counters(out: _Writer, stats: list[dict[str, Any]]) -> None:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: list[float] = []
    histogram: dict[str, list[float]] = {}
    sums: dict[str, float] = defaultdict(float)
    for report in stats:
        for counter, per_queue in report.get("counters", {}).items():
            for queue, value in per_queue.items():
                totals[counter][queue] += value
        durations = report.get("durations", {})
        buckets = durations.get("buckets", buckets)
        for queue, values in durations.get("counts", {}).items():
            acc = histogram.setdefault(queue, [0.0] * len(values))
            for i, value in enumerate(values):
                acc[i] += value
        for queue, value in durations.get("sum", {}).items():
            sums[queue] += value
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
        for queue, value in sorted(totals.get(counter, {}).items()):
            out.sample(metric, value, queue=queue)
    metric = "taskflare_handler_duration_seconds"
    out.family(metric, "histogram", "Time consumers spent on a batch.")
    for queue, values in sorted(histogram.items()):
        running = 0.0
        for bound, value in zip([*buckets, float("inf")], values, strict=False):
            running += value
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out.sample(f"{metric}_bucket", running, queue=queue, le=le)
        out.sample(f"{metric}_sum", round(sums.get(queue, 0.0), 6), queue=queue)
        out.sample(f"{metric}_count", running, queue=queue)
