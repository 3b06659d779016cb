"""Helpers for users' own tests: run consumers in-process until their queues are empty."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .app import App
from .worker import Worker, WorkerConfig


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What `drain` did: batches run and messages acked, retried and failed."""

    batches: int
    acked: int
    retried: int
    failed: int


async def drain(
    app: App, queues: Sequence[str] | None = None, *, max_batches: int = 100_000
) -> DrainResult:
    """Run the consumers of `queues` (default: every queue with one) until nothing is ready.

    Batches are delivered at once, without waiting for `max_batch_timeout`; messages
    delayed into the future are left alone. Retries with no delay are delivered again
    in the same call, so a message that always fails ends failed (and dead-lettered).
    """
    worker = Worker(app, WorkerConfig(queues=tuple(queues or ()), concurrency=1))
    batches = 0
    try:
        progressed = True
        while progressed and batches < max_batches:
            progressed = False
            for queue in worker.queues:
                if await worker.drain_once(queue):
                    batches += 1
                    progressed = True
    finally:
        worker.close_pool()
    await app.registry.hooks.drain()  # async lifecycle listeners started meanwhile
    stats = worker.stats
    return DrainResult(
        batches=batches,
        acked=sum(stats.acked.values()),
        retried=sum(stats.retried.values()),
        failed=sum(stats.failed.values()),
    )
