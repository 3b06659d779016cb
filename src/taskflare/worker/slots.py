"""Worker slots: how many handlers may run at once, in all (the worker's `concurrency`) and
per queue (the queue's `max_concurrency`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..registry import QueueSpec


class Slots:
    """A counter per queue and one for the worker; a handler runs holding one of each."""

    def __init__(self, concurrency: int, queues: Mapping[str, QueueSpec]) -> None:
        self._free = concurrency
        self._queue_free = {name: spec.config.max_concurrency for name, spec in queues.items()}
        self._waiters: list[asyncio.Future[None]] = []

    def free(self, queue: str) -> int:
        """How many handlers of `queue` could start now."""
        limit = self._queue_free[queue]
        return self._free if limit is None else min(self._free, limit)

    def take(self, queue: str, count: int) -> int:
        """Take up to `count` slots of `queue` now (no waiting); return how many."""
        taken = min(count, self.free(queue))
        self._free -= taken
        limit = self._queue_free[queue]
        if limit is not None:
            self._queue_free[queue] = limit - taken
        return taken

    async def wait(self, queue: str) -> None:
        """Wait until at least one slot of `queue` is free."""
        while self.free(queue) <= 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def acquire(self, queue: str) -> None:
        """Wait for a slot of `queue` and take it (in one step: no one can take it between)."""
        await self.wait(queue)
        taken = self.take(queue, 1)
        assert taken == 1

    def give_back(self, queue: str, count: int = 1) -> None:
        """Return `count` slots of `queue` and wake whoever waits for one."""
        if count <= 0:
            return
        self._free += count
        limit = self._queue_free[queue]
        if limit is not None:
            self._queue_free[queue] = limit + count
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
