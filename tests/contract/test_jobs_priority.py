"""Jobs (issue 4, point 2): higher priority runs first."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import running_worker, wait_until
from taskflare import App, JobContext, WorkerConfig

BATCH = 10  # the default batch size of a job queue


async def test_priority_10_job_starts_before_all_but_one_batch_of_200_earlier_ones(
    app: App,
) -> None:
    order: list[str] = []

    @app.job("work")
    async def work(payload: Any, ctx: JobContext) -> None:
        order.append(ctx.job_id)

    await app.enqueue_many("work", range(200))
    urgent = await app.enqueue("work", "urgent", priority=10)
    async with running_worker(app, WorkerConfig(concurrency=1)):
        await wait_until(lambda: len(order) == 201, what="201 jobs to run")
    assert order.index(urgent.id) <= BATCH


async def test_priority_job_arriving_at_a_busy_worker_overtakes_the_backlog(app: App) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    @app.job("work")
    async def work(payload: Any, ctx: JobContext) -> None:
        order.append(ctx.job_id)
        await gate.wait()

    await app.enqueue_many("work", range(200))
    async with running_worker(app, WorkerConfig(concurrency=1)):
        # The worker is busy with its one job (concurrency 1) and claims nothing ahead.
        await wait_until(lambda: len(order) == 1, what="the first job to start")
        urgent = await app.enqueue("work", "urgent", priority=10)
        gate.set()
        await wait_until(lambda: len(order) == 201, what="201 jobs to run")
    # A job is claimed only when a slot is free for it (no job ended while the others
    # waited, so nothing was buffered ahead): the urgent job runs next.
    assert order.index(urgent.id) == 1


async def test_equal_priorities_run_oldest_first(app: App) -> None:
    order: list[int] = []

    @app.job("work")
    async def work(payload: int) -> None:
        order.append(payload)

    for i in range(30):
        await app.enqueue("work", i, priority=3 if i % 2 else 0)
    async with running_worker(app, WorkerConfig(concurrency=1)):
        await wait_until(lambda: len(order) == 30, what="30 jobs")
    odd = [i for i in range(30) if i % 2]
    even = [i for i in range(30) if not i % 2]
    assert order == odd + even
