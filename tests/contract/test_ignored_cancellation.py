"""Code that ignores its cancellation cannot hold a worker: asyncio cannot kill a
coroutine, so `cancel_grace` seconds after a cancel (a job's timeout, a requested cancel,
the worker's shutdown; a consumer's timeout) the worker gives up on it: the outcome is
recorded without it, its slot and lease are freed, and it runs on, detached, unable to
store anything more. Real workers, both backends; each rogue handler here stops only when
the test releases it, so that the test's event loop can close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from helpers import fate, get, wait_until
from job_helpers import job_of, wait_for_status
from taskflare import App, Backoff, JobContext, JobStatus, MessageBatch, Worker, WorkerConfig
from taskflare.errors import InvalidWorkerConfig

# Long enough for the facts a test waits for on a loaded machine; a worker that never
# gives up on a handler makes the test fail here instead of hanging.
DEADLINE = 30.0
IGNORED = "the handler ignored its cancellation for 0.2s and was abandoned"


def config(**more: Any) -> WorkerConfig:
    settings: dict[str, Any] = {"concurrency": 1, "cancel_grace": 0.2, "idle_wait": 0.05}
    return WorkerConfig(**(settings | more))


class Rogue:
    """A handler body that ignores every cancel until the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.cancels = 0

    async def __call__(self) -> None:
        self.started += 1
        while not self.release.is_set():
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:  # swallowed: the bug this file is about
                self.cancels += 1


@asynccontextmanager
async def worker_for(app: App, cfg: WorkerConfig, rogue: Rogue) -> AsyncIterator[Worker]:
    """A running worker, stopped at the end with a deadline (a worker that cannot stop
    fails the test); the rogue handlers are released last, whatever happened."""
    worker = Worker(app, cfg)
    task = asyncio.create_task(worker.run(), name="test-worker")
    try:
        yield worker
        worker.stop()
        done, _ = await asyncio.wait({task}, timeout=DEADLINE)
        assert task in done, "the worker did not stop: it waits for a handler ignoring its cancel"
        task.result()
    finally:
        rogue.release.set()
        worker.stop()
        await asyncio.wait({task}, timeout=DEADLINE)


def _stubborn_and_quick(app: App, **options: Any) -> Rogue:
    """Job types `stubborn` (its handler the returned `Rogue`, with `options`) and
    `quick` (returns "ran")."""
    rogue = Rogue()

    @app.job("stubborn", **options)
    async def stubborn(payload: Any) -> None:
        await rogue()

    @app.job("quick")
    async def quick(payload: Any) -> str:
        return "ran"

    return rogue


async def test_a_job_ignoring_its_timeout_frees_its_slot_and_fails_saying_so(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    rogue = _stubborn_and_quick(app, timeout=0.2, max_attempts=1)
    first = await app.enqueue("stubborn")
    async with worker_for(app, config(), rogue) as worker:
        await wait_until(lambda: rogue.started, DEADLINE, what="the stubborn job to start")
        second = await app.enqueue("quick")  # concurrency 1: only a freed slot runs it
        with caplog.at_level(logging.WARNING, logger="taskflare.worker"):
            done = await wait_for_status(app, second.id, JobStatus.COMPLETED, DEADLINE)
        assert done.result == "ran"
        failed = await job_of(app, first.id)
        assert rogue.started == 1 and not rogue.release.is_set()  # still running, detached
        assert worker.held_leases() == {}, "the given-up job's lease is no longer renewed"
    assert failed.status is JobStatus.FAILED
    error = f"TimeoutError: the job ran longer than its timeout of 0.2s; {IGNORED}"
    assert failed.error == error
    assert [(a.outcome, a.error) for a in failed.history] == [("failed", error)]
    assert f"job {first.id} (stubborn) ignored its timeout" in caplog.text


async def test_a_job_ignoring_its_timeout_is_retried_by_its_policy(app: App) -> None:
    rogue = Rogue()

    @app.job("stubborn", timeout=0.2, max_attempts=2, retry=Backoff(base=0, cap=0))
    async def stubborn(payload: Any) -> None:
        await rogue()

    job = await app.enqueue("stubborn")
    async with worker_for(app, config(concurrency=2), rogue):
        failed = await wait_for_status(app, job.id, JobStatus.FAILED, DEADLINE)
    assert rogue.started == 2, "the second attempt ran beside the first, detached, one"
    assert [(a.attempt, a.outcome) for a in failed.history] == [(1, "retried"), (2, "failed")]
    assert all(a.error is not None and IGNORED in a.error for a in failed.history)


async def test_a_given_up_job_can_store_nothing_more(app: App) -> None:
    rogue = Rogue()
    tried: list[str] = []

    @app.job("stubborn", timeout=0.2, max_attempts=1)
    async def stubborn(payload: Any, ctx: JobContext) -> str:
        await ctx.progress(0.1, "started")
        await rogue()
        await ctx.progress(0.9, "too late")  # its lease was settled: refused
        tried.append("progress")
        return "a result nobody may store"

    job = await app.enqueue("stubborn")
    async with worker_for(app, config(), rogue):
        await wait_for_status(app, job.id, JobStatus.FAILED, DEADLINE)
        rogue.release.set()
        await wait_until(lambda: tried, DEADLINE, what="the detached handler to end")
    after = await job_of(app, job.id)
    assert (after.status, after.result, after.progress) == (JobStatus.FAILED, None, 0.1)
    assert len(after.history) == 1


async def test_a_cancelled_job_that_ignores_its_cancel_ends_cancelled_and_frees_its_slot(
    app: App,
) -> None:
    rogue = _stubborn_and_quick(app)  # no timeout: only the cancel stops it
    first = await app.enqueue("stubborn")
    async with worker_for(app, config(), rogue):
        await wait_until(lambda: rogue.started, DEADLINE, what="the stubborn job to start")
        second = await app.enqueue("quick")
        await app.cancel(first.id)
        await wait_for_status(app, second.id, JobStatus.COMPLETED, DEADLINE)
        cancelled = await wait_for_status(app, first.id, JobStatus.CANCELLED, DEADLINE)
    assert rogue.cancels >= 1
    assert [a.outcome for a in cancelled.history] == ["cancelled"]


async def test_a_stopping_worker_gives_up_on_a_job_ignoring_its_cancellation(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    rogue = Rogue()

    @app.job("stubborn", max_attempts=3)
    async def stubborn(payload: Any) -> None:
        await rogue()

    job = await app.enqueue("stubborn")
    with caplog.at_level(logging.WARNING, logger="taskflare.worker"):
        async with worker_for(app, config(shutdown_grace=0.1), rogue):
            await wait_until(lambda: rogue.started, DEADLINE, what="the stubborn job to start")
    assert rogue.cancels >= 1
    stored = await job_of(app, job.id)
    assert (stored.status, stored.attempts) == (JobStatus.PENDING, 1), "retried at once"
    [attempt] = stored.history
    assert attempt.outcome == "retried"
    assert attempt.error == f"the worker shut down before the handler finished; {IGNORED}"
    assert f"job {job.id} (stubborn) ignored the shutdown" in caplog.text


async def test_a_consumer_ignoring_its_timeout_frees_its_slot_and_its_batch_is_retried(
    app: App,
) -> None:
    rogue = Rogue()
    seen: list[str] = []
    queue = app.queue("work", max_batch_size=1, max_batch_timeout=0, max_retries=0)

    @queue.consumer(timeout=0.2)
    async def consume(batch: MessageBatch[str]) -> None:
        seen.extend(m.body for m in batch.messages)
        if batch.messages[0].body == "stubborn":
            await rogue()

    first = await queue.send("stubborn")
    async with worker_for(app, config(), rogue):
        await wait_until(lambda: rogue.started, DEADLINE, what="the stubborn batch to start")
        await queue.send("quick")
        await wait_until(lambda: "quick" in seen, DEADLINE, what="the next batch to run")
        await wait_until(lambda: _failed(app, first), DEADLINE, what="the stubborn batch's outcome")
    record = await get(app, first)
    assert record is not None and record.last_error is not None
    assert record.last_error == (
        "consumer timed out after 0.2 seconds; "
        "the consumer ignored its cancellation for 0.2s and was abandoned"
    )


async def _failed(app: App, message_id: str) -> bool:
    return await fate(app, message_id) == "failed"


async def test_a_stopping_worker_gives_up_on_a_consumer_ignoring_its_cancellation(
    app: App,
) -> None:
    rogue = Rogue()
    queue = app.queue("work", max_batch_size=1, max_batch_timeout=0)

    @queue.consumer
    async def consume(batch: MessageBatch[str]) -> None:
        await rogue()

    sent = await queue.send("stubborn")
    async with worker_for(app, config(shutdown_grace=0.1), rogue):
        await wait_until(lambda: rogue.started, DEADLINE, what="the stubborn batch to start")
    record = await get(app, sent)
    assert record is not None
    assert (record.state, record.attempts) == ("ready", 1)
    assert record.last_error == (
        "the worker shut down before the handler finished; "
        "the consumer ignored its cancellation for 0.2s and was abandoned"
    )


async def test_a_stopping_worker_leaves_a_listener_that_never_ends(app: App) -> None:
    rogue = Rogue()

    @app.on("succeeded")
    async def follow(event: Any) -> None:
        await rogue()

    @app.job("quick")
    async def quick(payload: Any) -> None:
        return None

    await app.enqueue("quick")
    async with worker_for(app, config(shutdown_grace=0.1), rogue):
        await wait_until(lambda: rogue.started, DEADLINE, what="the listener to start")


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), "5", True])
def test_cancel_grace_must_be_a_finite_number_of_seconds(value: Any) -> None:
    with pytest.raises(InvalidWorkerConfig, match="cancel_grace must be a finite number"):
        WorkerConfig(cancel_grace=value)
