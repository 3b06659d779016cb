"""Jobs (issue 4, points 4 and 5): cancelling pending and running jobs, and manual retry of
failed or cancelled ones."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

from helpers import running_worker
from job_helpers import job_of, wait_for_status
from taskflare import (
    App,
    Backoff,
    InvalidJobState,
    JobCancelled,
    JobContext,
    JobNotFound,
    JobStatus,
    PermanentError,
)
from taskflare.ids import uuid7
from taskflare.testing import drain


async def test_cancelling_a_pending_job_means_it_never_runs(app: App) -> None:
    ran: list[Any] = []
    app.job("email")(ran.append)
    job = await app.enqueue("email", "hello")
    cancelled = await app.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.completed_at is not None and cancelled.attempts == 0
    await drain(app)
    assert ran == []
    assert (await job_of(app, job.id)).status is JobStatus.CANCELLED


async def test_cancelling_a_scheduled_job(app: App) -> None:
    app.job("later")(lambda payload: None)
    job = await app.enqueue("later", delay_seconds=3600)
    assert (await app.cancel(job.id)).status is JobStatus.CANCELLED


async def test_running_async_job_is_cancelled_cooperatively_and_not_retried(app: App) -> None:
    started = asyncio.Event()
    contexts: list[JobContext] = []
    saw_cancel: list[bool] = []

    @app.job("long", max_attempts=3, retry=Backoff(base=0, cap=0))
    async def long(payload: Any, ctx: JobContext) -> None:
        contexts.append(ctx)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.append(ctx.cancelled)
            raise

    job = await app.enqueue("long")
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        requested = await app.cancel(job.id)
        assert requested.status is JobStatus.PROCESSING  # the worker stops it shortly
        done = await wait_for_status(app, job.id, JobStatus.CANCELLED)
    assert saw_cancel == [True]
    assert [c.cancelled for c in contexts] == [True]
    assert done.attempts == 1
    assert [a.outcome for a in done.history] == ["cancelled"]
    assert done.completed_at is not None
    await drain(app)
    assert len(contexts) == 1
    assert (await job_of(app, job.id)).status is JobStatus.CANCELLED


async def test_running_plain_def_job_sees_ctx_cancelled_and_ends_cancelled(app: App) -> None:
    started = threading.Event()

    @app.job("loop")
    def loop(payload: Any, ctx: JobContext) -> str:
        started.set()
        deadline = time.monotonic() + 20
        while not ctx.cancelled and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        return "stopped"

    job = await app.enqueue("loop")
    async with running_worker(app):
        assert await asyncio.to_thread(started.wait, 10)
        await app.cancel(job.id)
        done = await wait_for_status(app, job.id, JobStatus.CANCELLED)
    assert done.result is None and done.attempts == 1


async def test_async_job_raising_while_it_stops_for_a_cancel_ends_cancelled(app: App) -> None:
    started = asyncio.Event()
    runs: list[int] = []

    @app.job("cleanup", max_attempts=3, retry=Backoff(base=0, cap=0))
    async def cleanup(payload: Any, ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup failed")

    job = await app.enqueue("cleanup")
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        await app.cancel(job.id)
        done = await wait_for_status(app, job.id, JobStatus.CANCELLED)
    assert runs == [1] and [a.outcome for a in done.history] == ["cancelled"]


async def test_manual_retry_keeps_the_earlier_attempts_in_the_history(app: App) -> None:
    calls: list[int] = []

    @app.job("sync", max_attempts=2, retry=Backoff(base=0, cap=0))
    def sync(payload: Any) -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError(f"failure {len(calls)}")
        return "synced"

    job = await app.enqueue("sync")
    await drain(app)
    await app.retry(job.id)
    await drain(app)
    history = (await job_of(app, job.id)).history
    assert [(a.outcome, a.error) for a in history] == [
        ("retried", "RuntimeError: failure 1"),
        ("failed", "RuntimeError: failure 2"),
        ("completed", None),
    ]


async def test_cancelling_a_finished_job_is_refused(app: App) -> None:
    app.job("ok")(lambda payload: "fine")

    @app.job("bad")
    def bad(payload: Any) -> None:
        raise PermanentError("no")

    done = await app.enqueue("ok")
    failed = await app.enqueue("bad")
    cancelled = await app.enqueue("ok")
    await app.cancel(cancelled.id)
    await drain(app)
    with pytest.raises(InvalidJobState, match="completed"):
        await app.cancel(done.id)
    with pytest.raises(InvalidJobState, match="failed"):
        await app.cancel(failed.id)
    with pytest.raises(InvalidJobState, match="cancelled"):
        await app.cancel(cancelled.id)
    assert (await job_of(app, done.id)).status is JobStatus.COMPLETED


async def test_cancelling_an_unknown_job_raises_job_not_found(app: App) -> None:
    app.job("ok")(lambda payload: None)
    with pytest.raises(JobNotFound):
        await app.cancel(uuid7())


async def test_retrying_a_failed_job_runs_it_again_with_fresh_attempts(app: App) -> None:
    calls: list[int] = []

    @app.job("sync", max_attempts=2, retry=Backoff(base=0, cap=0))
    async def sync(payload: Any, ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if len(calls) <= 2:
            raise RuntimeError("still down")
        return "synced"

    job = await app.enqueue("sync")
    await drain(app)
    assert (await job_of(app, job.id)).status is JobStatus.FAILED
    again = await app.retry(job.id)
    assert again.status is JobStatus.PENDING
    assert again.attempts == 0 and again.max_attempts == 2
    assert again.completed_at is None and again.result is None
    await drain(app)
    done = await job_of(app, job.id)
    assert done.status is JobStatus.COMPLETED and done.result == "synced"
    assert calls == [1, 2, 1]
    assert done.attempts == 1


async def test_retrying_a_cancelled_job_runs_it(app: App) -> None:
    ran: list[Any] = []
    app.job("email")(ran.append)
    job = await app.enqueue("email", "hi")
    await app.cancel(job.id)
    assert (await app.retry(job.id)).status is JobStatus.PENDING
    await drain(app)
    assert ran == ["hi"]
    assert (await job_of(app, job.id)).status is JobStatus.COMPLETED


async def test_retrying_a_pending_running_or_completed_job_is_refused(app: App) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    @app.job("wait")
    async def wait(payload: Any) -> None:
        started.set()
        await gate.wait()

    pending = await app.enqueue("wait", delay_seconds=3600)
    with pytest.raises(InvalidJobState, match="pending"):
        await app.retry(pending.id)
    running = await app.enqueue("wait")
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(InvalidJobState, match="processing"):
            await app.retry(running.id)
        gate.set()
        await running.wait(timeout=60)
    with pytest.raises(InvalidJobState, match="completed"):
        await app.retry(running.id)
    with pytest.raises(JobNotFound):
        await app.retry(uuid7())


async def test_an_accepted_cancel_wins_over_a_completion_that_lands_after_it(app: App) -> None:
    """The decision is made once, in the database: a handler that ignores the cancel
    and returns still ends `cancelled`, and `wait()` says so."""
    started = threading.Event()
    release = threading.Event()

    @app.job("stubborn")
    def stubborn(payload: Any) -> str:
        started.set()
        release.wait(20)
        return "finished anyway"

    job = await app.enqueue("stubborn")
    async with running_worker(app):
        assert await asyncio.to_thread(started.wait, 10)
        requested = await app.cancel(job.id)
        assert requested.status is JobStatus.PROCESSING  # accepted
        release.set()
        with pytest.raises(JobCancelled):
            await app.wait_for_job(job.id, timeout=20)
    done = await job_of(app, job.id)
    assert done.status is JobStatus.CANCELLED and done.result is None
    assert [a.outcome for a in done.history] == ["cancelled"]


async def test_cancel_racing_a_completion_is_either_accepted_or_refused_never_both(
    app: App,
) -> None:
    @app.job("quick")
    async def quick(payload: float) -> str:
        await asyncio.sleep(payload)
        return "done"

    outcomes: set[tuple[str, JobStatus]] = set()
    async with running_worker(app):
        for n in range(16):
            job = await app.enqueue("quick", 0.02 + (n % 4) * 0.01)
            await asyncio.sleep(0.02 + (n % 5) * 0.01)
            try:
                await app.cancel(job.id)
                said = "accepted"
            except InvalidJobState:
                said = "refused"
            with contextlib.suppress(JobCancelled):
                await app.wait_for_job(job.id, timeout=20)
            outcomes.add((said, (await job_of(app, job.id)).status))
    assert outcomes <= {("accepted", JobStatus.CANCELLED), ("refused", JobStatus.COMPLETED)}
