"""Precise scheduling (issue 5, point 6): `run_at=` / `delay_seconds=` jobs are never
delivered early and are delivered eventually; a delay of days is stored, not held by the
worker. Timing upper bounds are the benchmark's business, not the tests'."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from helpers import running_worker, wait_until
from job_helpers import job_of
from taskflare import App, InvalidDelay, JobContext, JobStatus
from taskflare.worker import WorkerConfig


async def test_run_at_and_delay_seconds_jobs_are_never_delivered_early(app: App) -> None:
    started: dict[str, float] = {}

    @app.job("timed")
    async def timed(payload: dict[str, Any], ctx: JobContext) -> None:
        started.setdefault(ctx.job_id, time.time())

    async with running_worker(app):
        await app.backend()
        asked: dict[str, float] = {}
        now = time.time()
        for n in range(10):
            run_at = datetime.fromtimestamp(now + 0.1 + n * 0.15, UTC)
            job = await app.enqueue("timed", {"n": n}, run_at=run_at)
            asked[job.id] = run_at.timestamp()
        for n in range(10):
            sent = time.time()
            job = await app.enqueue("timed", {"d": n}, delay_seconds=0.05 + n * 0.1)
            asked[job.id] = sent + 0.05 + n * 0.1
        await wait_until(lambda: len(started) == len(asked), timeout=30, what="every job to run")

    for job_id, wanted in asked.items():
        job = await job_of(app, job_id)
        assert job.status is JobStatus.COMPLETED
        stored = job.run_at.timestamp()
        assert stored >= wanted - 1e-6, f"stored run_at {stored} is before the asked {wanted}"
        assert started[job_id] >= stored, f"job {job_id} started {stored - started[job_id]}s early"


async def test_a_run_at_with_a_time_zone_is_honoured(app: App) -> None:
    started: list[float] = []

    @app.job("zoned")
    async def zoned(payload: None, ctx: JobContext) -> None:
        started.append(time.time())

    run_at = datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(seconds=0.5)
    async with running_worker(app):
        job = await app.enqueue("zoned", None, run_at=run_at)
        await wait_until(lambda: started, timeout=20, what="the job to run")
    assert started[0] >= run_at.timestamp()
    # The zone is honoured: a zone read wrong would be off by hours. The stored time is the
    # requested one plus the enqueue's own latency (run_at becomes a delay on the
    # database's clock), which a loaded machine stretches past half a second.
    assert abs((await job_of(app, job.id)).run_at.timestamp() - run_at.timestamp()) < 60


async def test_a_run_at_in_the_past_runs_now(app: App) -> None:
    @app.job("late")
    async def late(payload: None, ctx: JobContext) -> str:
        return "ran"

    async with running_worker(app):
        job = await app.enqueue("late", None, run_at=datetime.now(UTC) - timedelta(days=1))
        assert job.run_at >= job.created_at  # clamped to now, never in the past
        assert await app.wait_for_job(job.id, timeout=20) == "ran"


async def test_run_at_and_delay_seconds_together_are_refused(app: App) -> None:
    @app.job("either")
    async def either(payload: None, ctx: JobContext) -> None:
        pass

    # A bad time is a delay error (it was misreported as a queue-config error before).
    with pytest.raises(InvalidDelay, match="either run_at or delay_seconds"):
        await app.enqueue("either", None, run_at=datetime.now(UTC), delay_seconds=5)
    with pytest.raises(InvalidDelay, match="run_at must be a datetime or epoch seconds"):
        await app.enqueue("either", None, run_at="tomorrow")  # type: ignore[arg-type]


async def test_a_delay_of_days_is_stored_pending_and_not_held_by_the_worker(app: App) -> None:
    ran: list[str] = []

    @app.job("reminder")
    async def reminder(payload: str, ctx: JobContext) -> None:
        ran.append(payload)

    async with running_worker(app) as worker:
        before = time.time()
        later = await app.enqueue("reminder", "in three days", delay_seconds=3 * 86400)
        # A job enqueued after it runs: the worker is awake and claiming, and passes it by.
        now_job = await app.enqueue("reminder", "now")
        await app.wait_for_job(now_job.id, timeout=20)
        for _ in range(3):  # a few more claim rounds, each proving the delayed job stays put
            probe = await app.enqueue("reminder", "probe")
            await app.wait_for_job(probe.id, timeout=20)
            assert (await job_of(app, later.id)).status is JobStatus.PENDING
        # Nothing claimed is kept: no lease on the delayed job once the probes are recorded.
        await wait_until(lambda: not worker.held_leases().get("default"), what="no lease held")
        stored = await job_of(app, later.id)
    assert ran == ["now", "probe", "probe", "probe"]
    assert stored.status is JobStatus.PENDING
    assert (stored.attempts, stored.started_at, stored.history) == (0, None, ())
    delay = stored.run_at.timestamp() - before
    assert 3 * 86400 <= delay <= 3 * 86400 + 60


async def test_a_worker_woken_by_a_delayed_job_sleeps_until_it_is_due_not_its_idle_wait(
    app: App,
) -> None:
    """A fetcher woken by new work claims expecting some (see `ClaimParams.describe_empty`);
    when that takes nothing because the new job is delayed, it still learns when the job
    is due. With a 60 s idle wait, a job due in 0.3 s runs long before the wait ends."""
    ran: list[str] = []

    @app.job("later")
    async def later(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    async with running_worker(app, WorkerConfig(idle_wait=60.0)):
        first = await app.enqueue("later", {})
        await wait_until(lambda: first.id in ran, timeout=30, what="the first job to run")
        # The worker is idle again; the next change it hears of is a delayed job.
        delayed = await app.enqueue("later", {}, delay_seconds=0.3)
        await wait_until(lambda: delayed.id in ran, timeout=30, what="the delayed job to run")


async def test_after_a_claim_that_took_jobs_the_next_claim_expects_work(app: App) -> None:
    """The claim a job queue sends after one that took jobs expects work (see
    `ClaimParams.describe_empty`), as after a wake-up: an idle worker's pickup does not
    describe the queue in a claim statement (on PostgreSQL that description, planned
    anew each time, was most of the database's work for a pickup); the queue is described
    only when a claim takes nothing, so the worker still sleeps until a delayed job is
    due."""
    ran: list[str] = []

    @app.job("ping")
    async def ping(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    backend = await app.backend()
    claims: list[tuple[bool, int]] = []  # (described an empty queue, jobs taken)
    claim = backend.message_claim_many

    async def noted(params: Any) -> Any:
        result = await claim(params)
        claims.append((params.describe_empty, len(result.messages)))
        return result

    backend.message_claim_many = noted  # type: ignore[method-assign]
    async with running_worker(app, WorkerConfig(idle_wait=60.0)):
        for _ in range(3):
            job_id = (await app.enqueue("ping", {})).id
            await wait_until(lambda j=job_id: j in ran, timeout=30, what="the job to run")
            # The claim after the pickup has been answered: the worker is idle again.
            await wait_until(lambda: claims[-1][1] == 0, timeout=30, what="the next claim")
        later = await app.enqueue("ping", {}, delay_seconds=0.3)
        await wait_until(lambda: later.id in ran, timeout=30, what="the delayed job to run")
        await wait_until(lambda: claims[-1][1] == 0, timeout=30, what="the next claim")
    after_a_take = [claims[i + 1] for i, (_, taken) in enumerate(claims[:-1]) if taken]
    assert len(after_a_take) == 4, claims
    assert not any(described for described, _ in after_a_take), claims
