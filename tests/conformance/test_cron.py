"""CronStore: one row per trigger and tick decides that a tick runs once."""

from __future__ import annotations

import asyncio

from taskflare.backends import Backend
from taskflare.backends.base import (
    CronNameParams,
    CronTick,
    CronTickRecordParams,
    MessageListParams,
    State,
)

from .conftest import OpenBackend, gone, job, record


def tick(at: float, status: str = "enqueued", name: str = "nightly") -> CronTick:
    return CronTick(name=name, tick=at, status=status)


async def test_of_two_concurrent_callers_exactly_one_records_a_tick_and_stores_its_job(
    open_more: OpenBackend,
) -> None:
    schedulers = [await open_more(), await open_more()]
    for at in (1000.0, 2000.0, 3000.0):
        jobs = [job("report", "cron"), job("report", "cron")]
        won = await asyncio.gather(
            *(
                s.cron_tick_record(CronTickRecordParams(tick(at), j))
                for s, j in zip(schedulers, jobs, strict=True)
            )
        )
        assert sorted(won) == [False, True]
        winner, loser = (jobs[0], jobs[1]) if won[0] else (jobs[1], jobs[0])
        reader = schedulers[0]
        assert (await record(reader, winner.id)).state == State.READY
        assert await gone(reader, loser.id)
        (latest,) = await reader.cron_recent(CronNameParams("nightly", limit=1))
        assert (latest.tick, latest.status, latest.job_id) == (at, "enqueued", winner.id)
    assert len(await schedulers[0].message_list(MessageListParams("cron"))) == 3


async def test_a_tick_recorded_again_is_refused_and_its_job_not_stored(backend: Backend) -> None:
    first, again = job("report", "cron"), job("report", "cron")
    assert await backend.cron_tick_record(CronTickRecordParams(tick(1000.0), first)) is True
    assert await backend.cron_tick_record(CronTickRecordParams(tick(1000.0), again)) is False
    stored = await record(backend, first.id)
    assert (stored.queue, stored.type, stored.state) == ("cron", "report", State.READY)
    assert await gone(backend, again.id)


async def test_a_skipped_tick_is_recorded_without_a_job(backend: Backend) -> None:
    skipped = CronTickRecordParams(tick(1000.0, "skipped"))
    assert await backend.cron_tick_record(skipped) is True
    assert await backend.cron_tick_record(skipped) is False
    (recorded,) = await backend.cron_recent(CronNameParams("nightly", limit=5))
    assert (recorded.status, recorded.job_id) == ("skipped", None)
    assert await backend.message_list(MessageListParams("cron")) == []


async def test_last_tick_is_the_latest_scheduled_tick_manual_fires_excluded(
    backend: Backend,
) -> None:
    assert await backend.cron_last_tick(CronNameParams("nightly")) is None
    await backend.cron_tick_record(CronTickRecordParams(tick(1000.0), job("report", "cron")))
    await backend.cron_tick_record(CronTickRecordParams(tick(2000.0, "skipped")))
    await backend.cron_tick_record(
        CronTickRecordParams(tick(3000.0, "manual"), job("report", "cron"))
    )
    await backend.cron_tick_record(CronTickRecordParams(tick(9000.0, name="hourly")))
    assert await backend.cron_last_tick(CronNameParams("nightly")) == 2000.0
    assert await backend.cron_last_tick(CronNameParams("hourly")) == 9000.0


async def test_recent_ticks_come_newest_first_up_to_limit(backend: Backend) -> None:
    jobs = {}
    for at in (3000.0, 1000.0, 2000.0):
        jobs[at] = job("report", "cron")
        await backend.cron_tick_record(CronTickRecordParams(tick(at), jobs[at]))
    await backend.cron_tick_record(CronTickRecordParams(tick(5000.0, name="other")))

    recent = await backend.cron_recent(CronNameParams("nightly", limit=2))
    assert [(t.name, t.tick, t.status, t.job_id) for t in recent] == [
        ("nightly", 3000.0, "enqueued", jobs[3000.0].id),
        ("nightly", 2000.0, "enqueued", jobs[2000.0].id),
    ]
    assert all(t.created_at is not None for t in recent)
    assert len(await backend.cron_recent(CronNameParams("nightly", limit=10))) == 3
    assert await backend.cron_recent(CronNameParams("nobody", limit=10)) == []
