"""`GET /metrics`: Prometheus exposition built with `prometheus-client`.

A custom collector turns one snapshot of the read model into metric families: gauges
from the database (messages by queue and state, oldest pending age, pause flags, jobs by
status, live workers); counters and handler-duration histograms are the sums of every
worker's last report (workers report every 5 s), so they cover all processes on all
machines. The client library writes the text: Prometheus 0.0.4 by default, OpenMetrics
1.0 when the scraper asks for it (`Accept: application/openmetrics-text`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from ..app import App
from ..readmodel import WorkerCounters

# Worker counters: (report name, metric name without `_total`, help).
COUNTERS = (
    ("delivered", "taskflare_delivered", "Messages delivered to consumers."),
    ("acked", "taskflare_processed", "Messages acked (jobs completed)."),
    ("retried", "taskflare_retried", "Messages retried."),
    ("failed", "taskflare_failed", "Messages failed after their last attempt."),
    ("cancelled", "taskflare_cancelled", "Jobs cancelled while running."),
)


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape reads: queues, job counts and the workers' summed reports."""

    queues: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    counters: WorkerCounters
    limits: list[dict[str, Any]]

    @classmethod
    async def read(cls, app: App) -> Snapshot:
        """Read everything a scrape shows (four reads of the database)."""
        return cls(
            await app.read.queues(),
            await app.read.job_counts(),
            await app.read.worker_counters(),
            await app.read.limits(),
        )


class SnapshotCollector(Collector):
    """A `prometheus_client` collector over one `Snapshot` (built per scrape: the values
    live in the database and in the workers' reports, not in this process)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every metric family of the exposition."""
        yield from self._queues()
        jobs = GaugeMetricFamily(
            "taskflare_jobs", "Jobs by queue, type and status.", labels=["queue", "type", "status"]
        )
        for row in self.snapshot.jobs:
            jobs.add_metric([row["queue"], row["type"], row["status"]], row["count"])
        yield jobs
        counters = self.snapshot.counters
        yield GaugeMetricFamily(
            "taskflare_workers", "Workers that reported in the last 30 seconds.", counters.alive
        )
        yield from _worker_counters(counters)
        yield from self._limits()

    def _limits(self) -> Iterator[Metric]:
        """Per flow limit: keys in use, running, waiting, recent starts per second."""
        for name, field, help_text in _LIMIT_GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["queue", "limit"])
            for row in self.snapshot.limits:
                family.add_metric([row["queue"], row["limit"]], row[field])
            yield family

    def _queues(self) -> Iterator[Metric]:
        queues = self.snapshot.queues
        messages = GaugeMetricFamily(
            "taskflare_messages", "Stored messages by queue and state.", labels=["queue", "state"]
        )
        age = GaugeMetricFamily(
            "taskflare_queue_oldest_pending_age",
            "Age of the oldest ready message.",
            labels=["queue"],
            unit="seconds",
        )
        paused = GaugeMetricFamily(
            "taskflare_queue_paused", "1 when the queue is paused.", labels=["queue"]
        )
        for queue in queues:
            for state, count in sorted(queue["depth"].items()):
                messages.add_metric([queue["name"], state], count)
            age.add_metric([queue["name"]], queue["oldestPendingAgeSeconds"] or 0.0)
            paused.add_metric([queue["name"]], int(queue["paused"]))
        yield from (messages, age, paused)


def _worker_counters(counters: WorkerCounters) -> Iterator[Metric]:
    for report_name, metric, help_text in COUNTERS:
        family = CounterMetricFamily(metric, help_text, labels=["queue"])
        for queue, value in sorted(counters.totals.get(report_name, {}).items()):
            family.add_metric([queue], value)
        yield family
    durations = HistogramMetricFamily(
        "taskflare_handler_duration",
        "Time consumers spent on a batch (or a job).",
        labels=["queue"],
        unit="seconds",
    )
    bounds = [*counters.histogram_buckets, float("inf")]
    for queue, values in sorted(counters.histogram.items()):
        running, buckets = 0.0, []
        for bound, value in zip(bounds, values, strict=False):
            running += value
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        if buckets[-1][0] != "+Inf":
            buckets.append(("+Inf", running))
        total = round(counters.histogram_sum.get(queue, 0.0), 6)
        durations.add_metric([queue], buckets, total)
    yield durations


async def render_metrics(app: App, accept: str = "") -> tuple[bytes, str]:
    """The exposition and its content type, in the format `accept` asks for (Prometheus
    text 0.0.4 unless it names `application/openmetrics-text`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(await Snapshot.read(app)))
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
