"""`taskflare stats` rates: every live worker's report summed; right at every sample."""

from __future__ import annotations

import time

import orjson

from taskflare import App
from taskflare.backends.base import WorkerReport


def report(worker_id: str, acked_rate: float, acked_total: int) -> WorkerReport:
    stats = {
        "counters": {"acked": {"emails": acked_total}},
        "rates": {"acked": {"emails": acked_rate}},
        "durations": {"buckets": [], "counts": {}, "sum": {}},
    }
    now = time.time()
    return WorkerReport(worker_id, "host", 1, now, now, orjson.dumps(stats).decode())


async def test_stats_sum_the_rates_of_every_live_worker(app: App) -> None:
    app.queue("emails")
    backend = await app.backend()
    await backend.worker_report(report("w1", 12.5, 500))
    await backend.worker_report(report("w2", 7.5, 300))
    stats = await app.read.stats()
    (emails,) = [q for q in stats["queues"] if q["name"] == "emails"]
    assert emails["processedPerSecond"] == 20.0
    assert stats["workers"] == 2
    counters = await app.read.worker_counters()
    assert counters.totals["acked"] == {"emails": 800}

    await backend.worker_report(report("w1", 0.0, 500))  # w1 went idle
    stats = await app.read.stats()
    (emails,) = [q for q in stats["queues"] if q["name"] == "emails"]
    assert emails["processedPerSecond"] == 7.5
