"""Worker slots: how many handlers may run at once, in all (the worker's `concurrency`) and
per queue (the queue's `max_concurrency`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from ..registry import QueueSpec


class Slots:
    """A counter per queue and one for the worker; a handler runs holding one of each.

    `acquire` is first come, first served: a freed slot is handed to the longest waiting
    acquirer that may use it, so a batch claimed later never starts before one claimed
    earlier (without the hand-over, a newcomer that looked at the counter between the
    slot's release and the waiter's wake-up took it first).

    A listener (a job queue's buffer of claimed jobs) is called the moment a slot frees
    that no acquirer took, unless a fetcher waits for one: a waiting fetcher is served
    first, and listeners take turns being first, so a queue with a buffer never starves
    another queue of slots.
    """

    def __init__(self, concurrency: int, queues: Mapping[str, QueueSpec]) -> None:
        self._free = concurrency
        self._queue_free = {name: spec.config.max_concurrency for name, spec in queues.items()}
        self._waiters: list[asyncio.Future[None]] = []
        self._acquirers: list[tuple[str, asyncio.Future[None]]] = []
        self._listeners: list[Callable[[], None]] = []
        self._turn = 0  # the listener offered freed slots first next time

    def listen(self, listener: Callable[[], None]) -> None:
        """Call `listener` (which may `take` slots) whenever a slot frees and no fetcher
        waits for one."""
        self._listeners.append(listener)

    def _offer(self) -> None:
        """Offer the free slots to the listeners, each in turn first (two busy job
        queues with buffers share the freed slots instead of the first taking all)."""
        count = len(self._listeners)
        for k in range(count):
            if self._free <= 0:
                break
            self._listeners[(self._turn + k) % count]()
        if count:
            self._turn = (self._turn + 1) % count

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
        """Wait until at least one slot of `queue` is free (taking nothing)."""
        while self.free(queue) <= 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def acquire(self, queue: str) -> None:
        """Take a slot of `queue`, waiting behind earlier acquirers for one."""
        if self.free(queue) > 0 and not any(q == queue for q, _ in self._acquirers):
            self.take(queue, 1)
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (queue, handed)
        self._acquirers.append(entry)
        try:
            await handed
        except asyncio.CancelledError:
            if entry in self._acquirers:
                self._acquirers.remove(entry)
            elif handed.done() and not handed.cancelled():
                self.give_back(queue)  # handed a slot just as we were cancelled
            raise

    def give_back(self, queue: str, count: int = 1) -> None:
        """Return `count` slots of `queue`: hand them to waiting acquirers first, then wake
        whoever waits for a free slot."""
        if count <= 0:
            return
        self._free += count
        limit = self._queue_free[queue]
        if limit is not None:
            self._queue_free[queue] = limit + count
        for entry in list(self._acquirers):
            wanted, handed = entry
            if handed.done():  # cancelled, its task not resumed yet
                self._acquirers.remove(entry)
            elif self.free(wanted) > 0:
                self._acquirers.remove(entry)
                self.take(wanted, 1)
                handed.set_result(None)
        if self._free <= 0:
            return
        if not self._waiters:
            self._offer()
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
