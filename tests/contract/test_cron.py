"""Cron triggers (issue 5, points 1-5): ticks run as jobs, once per tick across schedulers,
coalesced misfires, `fire_now`, and declaration errors that name the field."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from helpers import running_worker, wait_until
from taskflare import App, JobStatus, Retry
from taskflare.backends.base import CronNameParams, CronTick, CronTickRecordParams
from taskflare.cron import InvalidCronExpression
from taskflare.registry import ScheduledEvent
from taskflare.testing import drain
from taskflare.worker.cron import CronScheduler

T0 = datetime(2024, 1, 1, tzinfo=UTC)


async def scheduler_of(app: App) -> CronScheduler:
    """A scheduler on the app's backend, driven by the test through `run_once`."""
    return CronScheduler(app.registry, await app.backend(), app.jobs)


async def ticks_of(app: App, name: str, limit: int = 1000) -> list[CronTick]:
    """The trigger's recorded ticks, oldest first."""
    backend = await app.backend()
    return list(reversed(await backend.cron_recent(CronNameParams(name, limit))))


def at(tick: CronTick) -> datetime:
    return datetime.fromtimestamp(tick.tick, UTC)


async def test_a_tick_runs_as_a_job_with_the_ticks_scheduled_time(app: App) -> None:
    seen: list[ScheduledEvent] = []

    @app.cron("0 0 * * *", name="daily", queue="maintenance")
    async def daily(event: ScheduledEvent) -> str:
        seen.append(event)
        return "cleaned"

    scheduler = await scheduler_of(app)
    await scheduler.run_once(T0 + timedelta(hours=12))  # first start: nothing is due yet
    assert await ticks_of(app, "daily") == []
    await scheduler.run_once(T0 + timedelta(days=1, seconds=1))  # midnight has just passed

    [tick] = await ticks_of(app, "daily")
    assert (at(tick), tick.status) == (T0 + timedelta(days=1), "enqueued")
    assert tick.job_id is not None
    job = await app.get_job(tick.job_id)
    assert job is not None
    assert (job.type, job.queue, job.status) == ("cron:daily", "maintenance", JobStatus.PENDING)

    await drain(app)
    assert seen == [ScheduledEvent("0 0 * * *", "daily", T0 + timedelta(days=1))]
    job = await app.get_job(tick.job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED and job.result == "cleaned"
    assert [a.outcome for a in job.history] == ["completed"]
    # The tick's time, not the time it started (which is now, years later).
    assert job.started_at is not None and job.started_at > seen[0].scheduled_time + timedelta(1)


async def test_a_plain_def_handler_gets_the_event_too(app: App) -> None:
    seen: list[datetime] = []

    @app.cron("*/30 * * * * *", name="sync-handler")
    def handler(event: ScheduledEvent) -> None:
        seen.append(event.scheduled_time)

    scheduler = await scheduler_of(app)
    await scheduler.run_once(T0)
    await scheduler.run_once(T0 + timedelta(seconds=30.5))  # wakes just after each tick
    await scheduler.run_once(T0 + timedelta(seconds=60.5))
    await drain(app)
    assert sorted(seen) == [T0 + timedelta(seconds=30), T0 + timedelta(minutes=1)]


async def test_a_failing_tick_is_retried_like_any_job(app: App) -> None:
    calls: list[datetime] = []

    @app.cron("0 * * * *", name="flaky", max_attempts=3)
    async def flaky(event: ScheduledEvent) -> None:
        calls.append(event.scheduled_time)
        if len(calls) < 2:
            raise Retry(0)

    scheduler = await scheduler_of(app)
    await scheduler.run_once(T0)
    await scheduler.run_once(T0 + timedelta(minutes=61))
    await drain(app)
    [tick] = await ticks_of(app, "flaky")
    assert tick.job_id is not None
    job = await app.get_job(tick.job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert [a.outcome for a in job.history] == ["retried", "completed"]
    assert calls == [T0 + timedelta(hours=1)] * 2  # both attempts see the tick's time


async def test_two_schedulers_given_the_same_now_enqueue_each_tick_once(database_url: str) -> None:
    apps = [App(database_url), App(database_url)]
    try:
        for application in apps:

            @application.cron("*/2 * * * * *", name="often")
            async def often(event: ScheduledEvent) -> None:
                pass

        schedulers = [await scheduler_of(a) for a in apps]
        await asyncio.gather(*(s.run_once(T0) for s in schedulers))
        for step in range(1, 11):  # each scheduler wakes just after every tick
            now = T0 + timedelta(seconds=2 * step, milliseconds=300)
            await asyncio.gather(*(s.run_once(now) for s in schedulers))

        ticks = await ticks_of(apps[0], "often")
        expected = [T0 + timedelta(seconds=2 * n) for n in range(1, 11)]
        assert [at(t) for t in ticks] == expected
        assert {t.status for t in ticks} == {"enqueued"}
        page = await apps[0].list_jobs(type="cron:often", limit=100)
        assert len(page.jobs) == 10
        assert sorted(j.id for j in page.jobs) == sorted(t.job_id for t in ticks if t.job_id)
    finally:
        for application in apps:
            await application.close()


async def test_misfires_within_grace_run_the_latest_once_and_skip_the_rest(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[datetime] = []

    @app.cron("*/10 * * * * *", name="beat", misfire_grace=60)
    async def beat(event: ScheduledEvent) -> None:
        seen.append(event.scheduled_time)

    backend = await app.backend()
    await backend.cron_tick_record(
        CronTickRecordParams(CronTick("beat", T0.timestamp(), "enqueued"))
    )
    now = T0 + timedelta(seconds=95)  # ticks at 10..90 were missed; 90 is 5 s old
    with caplog.at_level(logging.WARNING, logger="taskflare.cron"):
        await (await scheduler_of(app)).run_once(now)

    ticks = await ticks_of(app, "beat")
    assert [(at(t) - T0).seconds for t in ticks] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert [t.status for t in ticks[1:-1]] == ["skipped"] * 8
    assert ticks[-1].status == "enqueued" and ticks[-1].job_id is not None
    assert all(t.job_id is None for t in ticks[1:-1])
    assert (
        "8 ticks missed (the scheduler was not running or fell behind) were skipped; "
        "the latest runs now" in caplog.text
    )

    await drain(app)
    assert seen == [T0 + timedelta(seconds=90)]


async def test_misfires_older_than_grace_are_all_skipped(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.cron("0 * * * *", name="hourly", misfire_grace=60)
    async def hourly(event: ScheduledEvent) -> None:
        raise AssertionError("no tick is recent enough to run")

    backend = await app.backend()
    await backend.cron_tick_record(
        CronTickRecordParams(CronTick("hourly", T0.timestamp(), "enqueued"))
    )
    now = T0 + timedelta(hours=5, minutes=30)  # 01:00..05:00 missed; 05:00 is 30 min old
    scheduler = await scheduler_of(app)
    with caplog.at_level(logging.WARNING, logger="taskflare.cron"):
        await scheduler.run_once(now)
    ticks = await ticks_of(app, "hourly")
    assert [t.status for t in ticks] == ["enqueued"] + ["skipped"] * 5
    assert (await app.list_jobs(type="cron:hourly")).jobs == []
    assert (
        "5 ticks missed (the scheduler was not running or fell behind) were skipped" in caplog.text
    )
    # The scheduler carries on from there: the next tick is enqueued normally.
    await scheduler.run_once(T0 + timedelta(hours=6, seconds=1))
    assert [t.status for t in await ticks_of(app, "hourly")][-1] == "enqueued"


async def test_two_workers_catching_up_together_run_the_missed_tick_once(database_url: str) -> None:
    apps = [App(database_url), App(database_url)]
    try:
        for application in apps:

            @application.cron("*/10 * * * * *", name="beat", misfire_grace=60)
            async def beat(event: ScheduledEvent) -> None:
                pass

        backend = await apps[0].backend()
        await backend.cron_tick_record(
            CronTickRecordParams(CronTick("beat", T0.timestamp(), "enqueued"))
        )
        schedulers = [await scheduler_of(a) for a in apps]
        now = T0 + timedelta(seconds=35)
        await asyncio.gather(*(s.run_once(now) for s in schedulers))
        ticks = await ticks_of(apps[0], "beat")
        assert [t.status for t in ticks] == ["enqueued", "skipped", "skipped", "enqueued"]
        assert len((await apps[0].list_jobs(type="cron:beat")).jobs) == 1
    finally:
        for application in apps:
            await application.close()


async def test_first_start_ever_runs_no_past_ticks(app: App) -> None:
    @app.cron("* * * * * *", name="every-second")
    async def every_second(event: ScheduledEvent) -> None:
        pass

    await (await scheduler_of(app)).run_once(T0 + timedelta(days=3))
    assert await ticks_of(app, "every-second") == []


async def test_fire_now_runs_the_trigger_once_now(app: App) -> None:
    seen: list[ScheduledEvent] = []

    @app.cron("0 0 1 1 *", name="yearly")
    async def yearly(event: ScheduledEvent) -> None:
        seen.append(event)

    before = datetime.now(UTC)
    first = await app.jobs.fire_cron("yearly")
    second = await app.jobs.fire_cron("yearly")
    assert first != second
    ticks = await ticks_of(app, "yearly")
    assert [(t.status, t.job_id) for t in ticks] == [("manual", first), ("manual", second)]
    await drain(app)
    assert len(seen) == 2
    assert {e.name for e in seen} == {"yearly"} and {e.cron for e in seen} == {"0 0 1 1 *"}
    assert all(before <= e.scheduled_time <= datetime.now(UTC) for e in seen)
    job = await app.get_job(first)
    assert job is not None and job.status is JobStatus.COMPLETED and job.type == "cron:yearly"


async def test_fire_now_with_an_unknown_name_lists_the_declared_ones(app: App) -> None:
    @app.cron("0 0 * * *", name="nightly")
    async def nightly(event: ScheduledEvent) -> None:
        pass

    with pytest.raises(InvalidCronExpression, match=r"no cron trigger named 'nope' \(declared: "):
        await app.jobs.fire_cron("nope")


async def test_a_running_worker_enqueues_and_runs_ticks_on_time(app: App) -> None:
    seen: list[tuple[datetime, datetime]] = []

    @app.cron("* * * * * *", name="every-second")
    async def every_second(event: ScheduledEvent) -> None:
        seen.append((event.scheduled_time, datetime.now(UTC)))

    async with running_worker(app):
        await wait_until(lambda: len(seen) >= 3, timeout=20, what="three ticks")
    times = [scheduled for scheduled, _ in seen]
    assert all(t.microsecond == 0 for t in times)
    assert times == sorted(set(times))
    assert all(started >= scheduled for scheduled, started in seen)  # never early
    ticks = await ticks_of(app, "every-second")
    # Consecutive seconds: no tick was skipped while the worker ran.
    seconds = [at(t) for t in ticks]
    assert seconds == [seconds[0] + timedelta(seconds=n) for n in range(len(seconds))]
    assert {t.status for t in ticks} == {"enqueued"}


def test_a_bad_expression_fails_at_declaration_naming_the_field() -> None:
    app = App("sqlite:///unused.db")
    with pytest.raises(InvalidCronExpression, match="hour field: 25 is out of range 0-23"):

        @app.cron("0 25 * * *")
        def never(event: ScheduledEvent) -> None:
            pass

    with pytest.raises(InvalidCronExpression, match="never fires: day-of-month field"):
        app.cron("0 0 31 2 *")(lambda event: None)
    with pytest.raises(InvalidCronExpression, match="unknown time zone 'Nowhere/City'"):
        app.cron("0 0 * * *", tz="Nowhere/City")(lambda event: None)
    with pytest.raises(InvalidCronExpression, match="misfire_grace must be seconds"):
        app.cron("0 0 * * *", misfire_grace="soon")(lambda event: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidCronExpression, match="misfire_grace must be seconds, got nan"):
        app.cron("0 0 * * *", misfire_grace=float("nan"))(lambda event: None)
    assert app.cron_triggers == {}


def test_trigger_names_default_to_the_function_and_must_be_unique() -> None:
    app = App("sqlite:///unused.db")

    @app.cron("0 0 * * *")
    def cleanup(event: ScheduledEvent) -> None:
        pass

    assert list(app.cron_triggers) == ["cleanup"]
    assert app.cron_triggers["cleanup"].job_type == "cron:cleanup"
    with pytest.raises(InvalidCronExpression, match="named 'cleanup' already exists"):
        app.cron("0 1 * * *", name="cleanup")(lambda event: None)
