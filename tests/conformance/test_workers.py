"""WorkerStore: workers report themselves; admin tools list who was seen lately."""

from __future__ import annotations

import orjson

from job_helpers import wait_past
from taskflare.backends import Backend
from taskflare.backends.base import WorkerListParams, WorkerReport

from .conftest import backend_now


def report(worker_id: str, stats_json: str = "{}", started_at: float = 100.0) -> WorkerReport:
    # last_seen is what the worker believes; the backend stamps its own clock instead.
    return WorkerReport(worker_id, "host-a", 4242, started_at, last_seen=0.0, stats_json=stats_json)


async def test_report_upserts_one_row_per_worker_stamped_by_the_backends_clock(
    backend: Backend,
) -> None:
    before = await backend_now(backend)
    await backend.worker_report(report("w-1", '{"acked": 1}'))
    await backend.worker_report(report("w-1", '{"acked": 5}'))
    after = await backend_now(backend)

    (seen,) = await backend.worker_list(WorkerListParams(since=0))
    assert (seen.id, seen.hostname, seen.pid, seen.started_at) == ("w-1", "host-a", 4242, 100.0)
    assert seen.stats_json == '{"acked": 5}'
    assert before <= seen.last_seen <= after


async def test_a_worker_that_is_gone_stays_listed_marked_stopped(backend: Backend) -> None:
    """A cleanly stopped worker is no longer alive at once, but its row (and so its
    counters, which the totals and /metrics sum) stays: a counter must never go down
    because a worker stopped."""
    await backend.worker_report(report("w-stays"))
    await backend.worker_report(report("w-stops", '{"counters": {"acked": {"q": 4}}}'))
    await backend.worker_gone("w-stops")
    await backend.worker_gone("w-never-seen")
    listed = {
        w.id: orjson.loads(w.stats_json)
        for w in await backend.worker_list(WorkerListParams(since=0))
    }
    assert set(listed) == {"w-stays", "w-stops"}
    assert listed["w-stops"] == {"counters": {"acked": {"q": 4}}, "stopped": True}
    assert "stopped" not in listed["w-stays"]


async def test_list_gives_the_workers_seen_since_a_time_oldest_started_first(
    backend: Backend,
) -> None:
    await backend.worker_report(report("w-old", started_at=200.0))
    await backend.worker_report(report("w-new", started_at=300.0))
    await wait_past(0.01)
    cutoff = await backend_now(backend)
    await wait_past(0.01)
    await backend.worker_report(report("w-first", started_at=50.0))
    await backend.worker_report(report("w-new", '{"still": "alive"}', started_at=300.0))

    recent = await backend.worker_list(WorkerListParams(since=cutoff))
    assert [w.id for w in recent] == ["w-first", "w-new"]
    everyone = await backend.worker_list(WorkerListParams(since=0))
    assert [w.id for w in everyone] == ["w-first", "w-old", "w-new"]
    assert await backend.worker_list(WorkerListParams(since=cutoff + 3600)) == []
