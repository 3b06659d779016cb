"""A job past its type's `timeout` fails that attempt with `TimeoutError` and is retried by
its policy, however its code ends: a handler (or a middleware) that swallows the
cancellation and returns a result, or raises something else, still ran too long (as
Celery, Oban and River record it). Real workers, both backends."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from helpers import running_worker, wait_until
from job_helpers import job_of, wait_for_status
from taskflare import App, Backoff, HandlerCall, JobStatus
from taskflare.worker.job_runner import JobTimedOut, within_timeout

TIMED_OUT = "TimeoutError: the job ran longer than its timeout of 0.2s"


async def test_handler_that_swallows_its_timeout_and_returns_fails_and_is_retried(
    app: App,
) -> None:
    runs: list[int] = []

    @app.job("stubborn", timeout=0.2, max_attempts=2, retry=Backoff(base=0, cap=0))
    async def stubborn(payload: Any) -> str:
        runs.append(1)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "done"
        return "slept"

    job = await app.enqueue("stubborn")
    async with running_worker(app):
        failed = await wait_for_status(app, job.id, JobStatus.FAILED)
    assert len(runs) == 2, "the timed-out attempt was not retried"
    assert failed.result is None
    assert failed.error == TIMED_OUT
    assert [(a.attempt, a.outcome, a.error) for a in failed.history] == [
        (1, "retried", TIMED_OUT),
        (2, "failed", TIMED_OUT),
    ]


async def test_handler_that_swallows_its_timeout_and_raises_fails_with_the_timeout(
    app: App,
) -> None:
    @app.job("stubborn", timeout=0.2, max_attempts=1)
    async def stubborn(payload: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ValueError("cleanup went wrong") from None

    job = await app.enqueue("stubborn")
    async with running_worker(app):
        failed = await wait_for_status(app, job.id, JobStatus.FAILED)
    assert failed.error == TIMED_OUT
    assert failed.history[0].traceback is not None
    assert "ValueError: cleanup went wrong" in failed.history[0].traceback


async def test_middleware_that_swallows_the_timeout_does_not_complete_the_job(app: App) -> None:
    @app.middleware
    async def forgiving(call: HandlerCall, call_next: Any) -> Any:
        try:
            return await call_next()
        except asyncio.CancelledError:
            return "forgiven"

    @app.job("slow", timeout=0.2, max_attempts=1)
    async def slow(payload: Any) -> None:
        await asyncio.sleep(10)

    job = await app.enqueue("slow")
    async with running_worker(app):
        failed = await wait_for_status(app, job.id, JobStatus.FAILED)
    assert failed.error == TIMED_OUT


async def test_a_timeout_error_the_handler_raises_itself_is_not_called_the_jobs_timeout(
    app: App,
) -> None:
    @app.job("own", timeout=30, max_attempts=1)
    async def own(payload: Any) -> None:
        raise TimeoutError("the upstream API did not answer")

    job = await app.enqueue("own")
    async with running_worker(app):
        failed = await wait_for_status(app, job.id, JobStatus.FAILED)
    assert failed.error == "TimeoutError: the upstream API did not answer"


async def test_plain_def_handler_past_its_timeout_fails_and_its_late_return_is_ignored(
    app: App,
) -> None:
    release = threading.Event()
    returned = threading.Event()

    @app.job("blocking", timeout=0.2, max_attempts=1)
    def blocking(payload: Any) -> str:
        try:
            release.wait(10)  # a thread cannot be interrupted: it runs on past the timeout
            return "late"
        finally:
            returned.set()

    job = await app.enqueue("blocking")
    try:
        async with running_worker(app):
            failed = await wait_for_status(app, job.id, JobStatus.FAILED)
            assert failed.error == TIMED_OUT
            release.set()
            await wait_until(returned.is_set, what="the handler's thread to return")
    finally:
        release.set()
    after = await job_of(app, job.id)
    assert (after.status, after.result, after.error) == (JobStatus.FAILED, None, TIMED_OUT)


async def test_a_cancel_during_the_timeout_window_stays_a_cancel() -> None:
    async def run() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(within_timeout(5, run))
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the cancel was not propagated")
    assert task.cancelled()


async def test_within_timeout_names_its_seconds() -> None:
    async def run() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    try:
        await within_timeout(0.05, run)
    except JobTimedOut as exc:
        assert str(exc) == "the job ran longer than its timeout of 0.05s"
        assert isinstance(exc, TimeoutError)
    else:  # pragma: no cover
        raise AssertionError("a swallowed timeout returned a result")
