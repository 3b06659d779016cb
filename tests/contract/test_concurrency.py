"""Semantic 11: `max_concurrency` bounds a queue's running batches; `concurrency` the worker's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from helpers import running_worker
from taskflare import App, MessageBatch, WorkerConfig


class Gauge:
    """Counts handlers running at once and remembers the highest count."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.done = 0

    def make_handler(
        self, total: int, finished: asyncio.Event, seconds: float = 0.15
    ) -> Callable[[MessageBatch[int]], object]:
        async def consume(batch: MessageBatch[int]) -> None:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(seconds)  # simulated work, so batches overlap
            finally:
                self.now -= 1
                self.done += len(batch)
                if self.done >= total:
                    finished.set()

        return consume


async def test_max_concurrency_bounds_batches_of_a_queue_running_at_once(app: App) -> None:
    q = app.queue("q", max_batch_size=1, max_batch_timeout=0, max_concurrency=2)
    gauge, finished = Gauge(), asyncio.Event()
    q.consumer(gauge.make_handler(8, finished))
    await q.send_batch([{"body": i} for i in range(8)])
    async with running_worker(app, WorkerConfig(concurrency=10)):
        await asyncio.wait_for(finished.wait(), 20)
    assert gauge.peak == 2


async def test_without_max_concurrency_a_queue_runs_batches_in_parallel(app: App) -> None:
    q = app.queue("q", max_batch_size=1, max_batch_timeout=0)
    gauge, finished = Gauge(), asyncio.Event()
    q.consumer(gauge.make_handler(6, finished, seconds=0.3))
    await q.send_batch([{"body": i} for i in range(6)])
    async with running_worker(app, WorkerConfig(concurrency=10)):
        await asyncio.wait_for(finished.wait(), 20)
    assert gauge.peak >= 3


async def test_worker_concurrency_bounds_batches_running_across_queues(app: App) -> None:
    gauge, finished = Gauge(), asyncio.Event()
    for name in ("a", "b", "c"):
        q = app.queue(name, max_batch_size=1, max_batch_timeout=0)
        q.consumer(gauge.make_handler(15, finished))
        await q.send_batch([{"body": i} for i in range(5)])
    async with running_worker(app, WorkerConfig(concurrency=3)):
        await asyncio.wait_for(finished.wait(), 20)
    assert gauge.peak == 3


async def test_worker_concurrency_one_runs_batches_one_at_a_time(app: App) -> None:
    gauge, finished = Gauge(), asyncio.Event()
    for name in ("a", "b"):
        q = app.queue(name, max_batch_size=1, max_batch_timeout=0)
        q.consumer(gauge.make_handler(6, finished, seconds=0.05))
        await q.send_batch([{"body": i} for i in range(3)])
    async with running_worker(app, WorkerConfig(concurrency=1)):
        await asyncio.wait_for(finished.wait(), 20)
    assert gauge.peak == 1
