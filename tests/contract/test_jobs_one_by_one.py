"""Jobs run and finish one by one: a job's outcome is written the moment it ends, never held
back by a slower job claimed with it; a job holds one slot; `enqueue` is one round trip."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import running_worker, wait_until
from taskflare import App, JobContext, JobStatus, WorkerConfig


async def test_a_fast_job_claimed_with_a_slow_one_completes_without_waiting_for_it(
    app: App,
) -> None:
    started: set[str] = set()
    release_slow = asyncio.Event()  # the slow job ends only once the test says so

    @app.job("work")
    async def work(kind: str, ctx: JobContext) -> str:
        started.add(ctx.job_id)
        if kind == "slow":
            await release_slow.wait()
        return kind

    slow = await app.enqueue("work", "slow")
    fast = await app.enqueue("work", "fast")
    async with running_worker(app, WorkerConfig(concurrency=4)):
        await wait_until(lambda: started == {slow.id, fast.id}, what="both jobs to start")
        # The slow job cannot end before `release_slow`: the fast one's result (and its
        # stored completion) arriving first shows it was not held back for the slow one.
        assert await fast.wait(timeout=60) == "fast"
        fast_now, slow_now = await app.get_job(fast.id), await app.get_job(slow.id)
        assert fast_now is not None and fast_now.status is JobStatus.COMPLETED
        assert slow_now is not None and slow_now.status is JobStatus.PROCESSING
        release_slow.set()
        assert await slow.wait(timeout=60) == "slow"


async def test_one_slot_per_job_a_worker_runs_at_most_concurrency_jobs(app: App) -> None:
    running: set[str] = set()
    peak = 0
    gate = asyncio.Event()

    @app.job("hold")
    async def hold(payload: Any, ctx: JobContext) -> None:
        nonlocal peak
        running.add(ctx.job_id)
        peak = max(peak, len(running))
        await gate.wait()
        running.discard(ctx.job_id)

    jobs = [await app.enqueue("hold", i) for i in range(12)]
    async with running_worker(app, WorkerConfig(concurrency=3)):
        await wait_until(lambda: len(running) == 3, what="three jobs to run")
        pending = [await app.get_job(j.id) for j in jobs]
        assert sum(1 for j in pending if j and j.status is JobStatus.PENDING) == 9, (
            "jobs are claimed only for free slots while none end: nothing is held in advance"
        )
        gate.set()
        for job in jobs:
            await job.wait(timeout=60)
    assert peak == 3


async def test_enqueue_is_one_round_trip(app: App) -> None:
    @app.job("noop")
    async def noop(payload: Any) -> None:
        pass

    await app.enqueue("noop", 0)  # opens the database and checks its schema
    backend = await app.backend()
    before = backend.statements_run  # type: ignore[attr-defined]
    job = await app.enqueue("noop", 1)
    assert backend.statements_run - before == 1  # type: ignore[attr-defined]
    assert job.status is JobStatus.PENDING and job.payload == 1 and job.attempts == 0
