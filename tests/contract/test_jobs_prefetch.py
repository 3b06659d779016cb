"""Jobs claimed ahead of free slots (`WorkerConfig.prefetch`): while a job queue has a
backlog, a worker keeps a small buffer of claimed jobs that fill slots the moment they
free. A buffered job is leased like a running one and must behave like a job nobody
started: handed back at once on a graceful stop, overtaken by a higher-priority job
after at most the buffer, its lease kept alive, its cancel honoured without running it."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import get, running_worker, state_counts, wait_until
from taskflare import App, Concurrency, JobContext, JobStatus, Worker, WorkerConfig


def gated(app: App, order: list[str], gate: asyncio.Event, queue: str = "default") -> None:
    @app.job("work", queue=queue)
    async def work(payload: Any, ctx: JobContext) -> None:
        order.append(ctx.job_id)
        await gate.wait()


async def leased(app: App, queue: str, count: int) -> bool:
    return (await state_counts(app, queue)).get("leased", 0) == count


async def test_buffered_jobs_are_handed_back_at_once_on_a_graceful_stop(app: App) -> None:
    order: list[str] = []
    gate = asyncio.Event()
    gated(app, order, gate)
    jobs = [await app.enqueue("work", i) for i in range(5)]
    worker = Worker(app, WorkerConfig(concurrency=1, prefetch=2))
    run = asyncio.create_task(worker.run())
    # One job runs; two more are claimed into the buffer.
    await wait_until(lambda: len(order) == 1, what="the first job to start")
    await wait_until(lambda: leased(app, "default", 3), what="two jobs to be buffered")
    worker.stop()
    gate.set()
    await asyncio.wait_for(run, 30)
    # Right after the worker returns (no lease expiry in between): the buffered jobs are
    # back in the queue, their attempt uncounted; only the started job ran.
    assert order == [jobs[0].id]
    for job in jobs[1:]:
        record = await get(app, job.id)
        assert record is not None and record.state == "ready" and record.attempts == 0
    first = await app.get_job(jobs[0].id)
    assert first is not None and first.status is JobStatus.COMPLETED
    assert worker.held_leases() == {}


async def test_a_higher_priority_job_overtakes_all_but_the_buffer(app: App) -> None:
    order: list[str] = []
    gate = asyncio.Event()
    gated(app, order, gate)
    backlog = [await app.enqueue("work", i) for i in range(5)]
    async with running_worker(app, WorkerConfig(concurrency=1, prefetch=1)):
        await wait_until(lambda: len(order) == 1, what="the first job to start")
        await wait_until(lambda: leased(app, "default", 2), what="one job to be buffered")
        urgent = await app.enqueue("work", "urgent", priority=10)
        gate.set()
        await wait_until(lambda: len(order) == 6, what="six jobs to run")
    # The running job, then the one buffered job, then the urgent one.
    assert order[:3] == [backlog[0].id, backlog[1].id, urgent.id]


async def test_a_buffered_job_keeps_its_lease_while_it_waits(app: App) -> None:
    app.queue("short", visibility_timeout=0.5)
    order: list[str] = []
    gate = asyncio.Event()
    gated(app, order, gate, queue="short")
    first = await app.enqueue("work", 1)
    buffered = await app.enqueue("work", 2)
    more = await app.enqueue("work", 3)
    async with running_worker(app, WorkerConfig(concurrency=1, prefetch=1)):
        await wait_until(lambda: leased(app, "short", 2), what="one job to be buffered")
        record = await get(app, buffered.id)
        assert record is not None and record.lease_expires_at is not None
        claimed_until = record.lease_expires_at

        async def extended_twice() -> bool:
            now = await get(app, buffered.id)
            assert now is not None and now.state == "leased", "the buffered job's lease lapsed"
            return (now.lease_expires_at or 0) > claimed_until + 1.0

        # Longer than two visibility timeouts: the heartbeat extends the buffered lease.
        await wait_until(extended_twice, what="the buffered job's lease to be extended")
        gate.set()
        for job in (first, buffered, more):
            await job.wait(timeout=60)
    assert order == [first.id, buffered.id, more.id]
    record = await get(app, buffered.id)
    assert record is not None and record.attempts == 1  # delivered once, never rescued


async def test_a_buffered_job_whose_cancel_is_requested_ends_cancelled_unrun(app: App) -> None:
    order: list[str] = []
    gate = asyncio.Event()
    gated(app, order, gate)
    first = await app.enqueue("work", 1)
    buffered = await app.enqueue("work", 2)
    await app.enqueue("work", 3)
    async with running_worker(app, WorkerConfig(concurrency=1, prefetch=1)):
        await wait_until(lambda: leased(app, "default", 2), what="one job to be buffered")
        await app.cancel(buffered.id)

        async def cancelled() -> bool:
            job = await app.get_job(buffered.id)
            return job is not None and job.status is JobStatus.CANCELLED

        await wait_until(cancelled, what="the buffered job to end cancelled")
        assert order == [first.id]  # it never ran, and the running job was left alone
        gate.set()
        await first.wait(timeout=60)
        await wait_until(lambda: len(order) == 2, what="the third job to run")
    assert buffered.id not in order


async def test_a_queue_with_a_concurrency_limit_claims_nothing_ahead(app: App) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    @app.job("limited", concurrency=Concurrency(1))
    async def limited(payload: Any, ctx: JobContext) -> None:
        order.append(ctx.job_id)
        await gate.wait()

    for i in range(4):
        await app.enqueue("limited", i)
    async with running_worker(app, WorkerConfig(concurrency=4, prefetch=4)):
        await wait_until(lambda: len(order) == 1, what="the first job to start")
        # A buffered job would hold the limit's one slot without running.
        assert await leased(app, "default", 1)
        gate.set()
        await wait_until(lambda: len(order) == 4, what="four jobs to run")


async def test_two_busy_job_queues_with_buffers_share_the_slots(app: App) -> None:
    order: list[str] = []

    @app.job("a", queue="qa")
    async def a(payload: Any) -> None:
        order.append("a")
        await asyncio.sleep(0)

    @app.job("b", queue="qb")
    async def b(payload: Any) -> None:
        order.append("b")
        await asyncio.sleep(0)

    await app.enqueue_many("a", list(range(100)))
    await app.enqueue_many("b", list(range(100)))
    async with running_worker(app, WorkerConfig(concurrency=2, prefetch=2)):
        await wait_until(lambda: len(order) == 200, what="200 jobs to run")
    # Neither queue's buffer takes every freed slot while the other has jobs waiting.
    assert order[:100].count("a") >= 25 and order[:100].count("b") >= 25
