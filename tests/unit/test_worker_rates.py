"""A worker's report carries rates measured over the interval since its previous report,
so a reader sampling at any moment sees the current rate, not 0.0 between reports."""

from __future__ import annotations

import orjson

from taskflare.backends.base import ACKED, SettleResult, State
from taskflare.worker.stats import WorkerStats


def settle(stats: WorkerStats, queue: str, n: int, state: str = ACKED) -> None:
    ids = [f"{queue}-{i}" for i in range(n)]
    stats.record(queue, SettleResult({i: state for i in ids}), ids, 0.01)


def test_first_report_has_no_rates_then_each_report_measures_its_own_interval() -> None:
    stats = WorkerStats()
    settle(stats, "emails", 10)
    first = orjson.loads(stats.to_json(now=100.0))
    assert first["counters"]["acked"] == {"emails": 10}
    assert first["rates"] == {}, "no interval yet: no rate rather than a made-up one"

    settle(stats, "emails", 50)
    settle(stats, "emails", 5, State.READY)
    second = orjson.loads(stats.to_json(now=105.0))
    assert second["rates"]["acked"] == {"emails": 10.0}  # 50 in 5 s
    assert second["rates"]["retried"] == {"emails": 1.0}
    assert second["counters"]["acked"] == {"emails": 60}

    third = orjson.loads(stats.to_json(now=110.0))
    assert third["rates"]["acked"] == {"emails": 0.0}, "nothing happened in this interval"
    assert third["counters"]["acked"] == {"emails": 60}


def test_a_queue_first_seen_after_the_previous_report_gets_its_whole_count_as_rate() -> None:
    stats = WorkerStats()
    stats.to_json(now=0.0)
    settle(stats, "late", 20)
    report = orjson.loads(stats.to_json(now=2.0))
    assert report["rates"]["acked"] == {"late": 10.0}
