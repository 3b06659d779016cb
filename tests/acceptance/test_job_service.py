"""The job service as documented: statuses, attempts, manual retry and cancel, progress,
statistics while work runs, and a long job on a short visibility timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers import running_worker
from taskflare import App, Backoff, JobCancelled, JobContext, JobStatus, PermanentError
from taskflare.testing import drain


async def test_a_job_type_retries_three_attempts_by_default(app: App) -> None:
    runs: list[int] = []

    @app.job("always-broken", retry=Backoff(base=0, cap=0, jitter=False))
    async def broken(payload: Any, ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt}")

    job = await app.enqueue("always-broken")
    assert job.max_attempts == 3
    await drain(app)
    failed = await app.get_job(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert runs == [1, 2, 3]
    assert failed.attempts == 3
    assert [a.attempt for a in failed.history] == [1, 2, 3]


async def test_a_manually_retried_job_starts_clean_and_keeps_its_earlier_history(
    app: App,
) -> None:
    fail = [True]

    @app.job("flaky", max_attempts=1)
    async def flaky(payload: Any, ctx: JobContext) -> str:
        await ctx.progress(0.4, "working")
        if fail[0]:
            raise PermanentError("down")
        return "ok"

    job = await app.enqueue("flaky")
    await drain(app)
    failed = await app.get_job(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == "PermanentError: down" and failed.completed_at is not None

    retried = await app.retry(job.id)
    shown = retried.to_dict()
    assert shown["status"] == "pending"
    assert (shown["attempts"], shown["maxAttempts"]) == (0, 1)
    assert shown["completedAt"] is None
    assert shown["result"] is None and shown["progress"] is None and shown["error"] is None
    assert retried.to_dict() == (await app.get_job(job.id)).to_dict()  # type: ignore[union-attr]

    fail[0] = False
    await drain(app)
    done = await app.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == "ok"
    assert done.attempts == 1 and done.error is None and done.progress == 1.0
    assert [(a.attempt, a.outcome) for a in done.history] == [(1, "failed"), (1, "completed")]


async def test_cancelling_a_job_that_waits_for_its_retry_stops_it_for_good(app: App) -> None:
    runs: list[int] = []

    @app.job("slow-retry", retry=Backoff(base=0.3, cap=0.3, jitter=False))
    async def slow_retry(payload: Any, ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise RuntimeError("try later")

    job = await app.enqueue("slow-retry")
    await drain(app)  # the first attempt fails; the retry is 0.3 s away
    waiting = await app.get_job(job.id)
    assert waiting is not None and waiting.status is JobStatus.PENDING and waiting.attempts == 1
    cancelled = await app.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.completed_at is not None
    # It did run once: the error does not say it never ran.
    assert cancelled.error == "cancelled while waiting for its next attempt"
    async with running_worker(app):
        await asyncio.sleep(0.8)  # well past the retry's due time: it must not run
    assert runs == [1]
    final = await app.get_job(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED
    with pytest.raises(JobCancelled):
        await final.wait(timeout=1)


async def test_progress_outside_zero_to_one_is_refused_and_the_job_goes_on(app: App) -> None:
    seen: list[str] = []

    @app.job("progressing")
    async def progressing(payload: Any, ctx: JobContext) -> str:
        for value in (0.25, 1.5, -0.1):
            try:
                await ctx.progress(value, f"at {value}")
                seen.append(f"ok {value}")
            except ValueError as exc:
                assert "progress" in str(exc)
                seen.append(f"refused {value}")
        return "done"

    job = await app.enqueue("progressing")
    await drain(app)
    assert seen == ["ok 0.25", "refused 1.5", "refused -0.1"]
    done = await app.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.progress == 1.0 and done.progress_note == "at 0.25"


async def test_stats_and_lists_show_a_running_job_as_processing(app: App) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    @app.job("held")
    async def held(payload: Any) -> None:
        started.set()
        await gate.wait()

    job = await app.enqueue("held")
    other = await app.enqueue("held", delay_seconds=3600)
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        stats = await app.stats()
        assert (stats["total"], stats["processing"], stats["pending"]) == (2, 1, 1)
        page = await app.list_jobs(status="processing")
        assert [j.id for j in page.jobs] == [job.id]
        page = await app.list_jobs(status="pending")
        assert [j.id for j in page.jobs] == [other.id]
        gate.set()
        await job.wait(timeout=60)
    stats = await app.stats()
    assert (stats["completed"], stats["pending"], stats["processing"]) == (1, 1, 0)
    assert stats["completionRate"] == "50.00%" and stats["failureRate"] == "0.00%"


async def test_a_job_running_longer_than_its_visibility_timeout_runs_once(app: App) -> None:
    app.queue("default", visibility_timeout=0.5)
    runs: list[int] = []

    @app.job("long")
    async def long(payload: Any, ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        await asyncio.sleep(2.0)  # four visibility timeouts; the heartbeat keeps the lease
        return "finished"

    job = await app.enqueue("long")
    async with running_worker(app):
        assert await job.wait(timeout=30) == "finished"
    assert runs == [1]
    done = await app.get_job(job.id)
    assert done is not None and done.attempts == 1
    assert [a.outcome for a in done.history] == ["completed"]


async def test_a_job_delayed_by_retry_is_not_claimed_by_a_second_worker_early(app: App) -> None:
    """Two workers on one database: a retry's delay holds for both (no drift, no double run)."""
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    @app.job("once-more", max_attempts=2, retry=Backoff(base=0.5, cap=0.5, jitter=False))
    async def once_more(payload: Any, ctx: JobContext) -> int:
        starts.append(loop.time())
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    job = await app.enqueue("once-more")
    async with running_worker(app), running_worker(app):
        assert await job.wait(timeout=30) == 2
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.5
