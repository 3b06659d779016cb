"""The throughput and latency history: workers add per-minute deltas to the database with
their report, the read model turns them into per-minute rates and p50/p95, and old
minutes are pruned. Both backends."""

from __future__ import annotations

import time

from taskflare import App
from taskflare.backends.base import (
    ACKED,
    SettleResult,
    State,
    StatsAddParams,
    StatsHistoryParams,
    StatsMinute,
    WorkerReport,
)
from taskflare.readmodel import quantile
from taskflare.worker.services import HISTORY_SECONDS, WorkerReporter
from taskflare.worker.stats import WorkerStats


def report() -> WorkerReport:
    return WorkerReport("w-1", "host", 1, time.time(), time.time(), "{}")


async def test_reports_add_deltas_that_the_read_model_shows_per_minute(app: App) -> None:
    backend = await app.backend()
    stats = WorkerStats()
    reporter = WorkerReporter(backend, report, 5.0, stats.take_minutes)
    for n in range(10):  # ten calls: 8 acked fast, 2 failed slow
        state = ACKED if n < 8 else State.FAILED
        stats.record("emails", SettleResult({f"m{n}": state}), [f"m{n}"], 0.02 if n < 8 else 3.0)
    await reporter.run_once()
    await reporter.run_once()  # nothing new: adds nothing
    stats.record("emails", SettleResult({"m10": ACKED}), ["m10"], 0.02)
    await reporter.run_once()
    (minute,) = await backend.stats_history(StatsHistoryParams(time.time() - 120))
    assert (minute.queue, minute.processed, minute.failed) == ("emails", 9, 2)
    history = await app.read.history(3600, 60)
    points = [p for p in history["queues"]["emails"] if p["processed"]]
    assert points[-1]["processed"] == 9.0 and points[-1]["failed"] == 2.0
    assert 0.01 < points[-1]["p50"] <= 0.025 and 2.5 < points[-1]["p95"] <= 5.0


async def test_history_survives_a_new_app_and_old_minutes_are_pruned(app: App) -> None:
    backend = await app.backend()
    now = time.time()
    old = int((now - HISTORY_SECONDS - 3600) // 60 * 60)
    recent = int(now // 60 * 60)
    await backend.stats_add(StatsAddParams([StatsMinute(old, "q", 5), StatsMinute(recent, "q", 7)]))
    again = App(app.database_url)  # as after a restart: a new process reads the same rows
    try:
        history = await again.read.history(86_400, 900)
        # 7 in one minute: 7/15 per minute averaged over its 15-minute bucket.
        assert sum(p["processed"] for p in history["queues"]["q"]) == round(7 / 15, 2)
    finally:
        await again.close()
    await WorkerReporter(backend, report, 5.0, WorkerStats().take_minutes).run_once()
    left = await backend.stats_history(StatsHistoryParams(0))
    assert [m.minute for m in left] == [recent]


def test_quantiles_interpolate_within_the_histogram_buckets() -> None:
    assert quantile((0,) * 14, 0.5) is None
    assert quantile((10,) + (0,) * 13, 0.5) == 0.0025  # half of the first bucket (5 ms)
    assert quantile((0,) * 13 + (4,), 0.95) == 60.0  # above every bucket: its bound
