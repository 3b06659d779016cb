"""Change signals by topic that waiters on any event loop can sleep on.

A backend raises a topic when a write that matters commits: `ready:<queue>` (work may
be ready), `done` (a job finished), `cancel` (a cancellation was requested). It learns
of its own process's writes from the statements themselves (PostgreSQL: the NOTIFY they
send, which reaches this process's listener too; SQLite: temporary triggers that call
back into Python), and of other processes' writes from NOTIFY or, on SQLite, from
`PRAGMA data_version`, which says only that *something* changed: that raises every
topic. A waiter remembers the value it saw before looking at the database, so a change
that lands between the look and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable


class ChangeSignal:
    """Thread-safe per-topic sequence numbers plus wake-ups for waiters on any event loop."""

    def __init__(self) -> None:
        self._seqs: dict[str, int] = {}
        self._everything = 0  # raised by `raise_all`: added to every topic's number
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def seq(self, topic: str) -> int:
        """How many changes of `topic` have been seen so far."""
        return self._seqs.get(topic, 0) + self._everything

    def raise_topics(self, topics: Iterable[str]) -> None:
        """Record a change of each topic and wake its waiters."""
        woken: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        with self._lock:
            for topic in topics:
                self._seqs[topic] = self._seqs.get(topic, 0) + 1
                woken.extend(self._waiters.get(topic, ()))
        _wake(woken)

    def raise_all(self) -> None:
        """Something changed, no one knows what: every topic moves, every waiter wakes."""
        with self._lock:
            self._everything += 1
            woken = [w for waiters in self._waiters.values() for w in waiters]
        _wake(woken)

    async def wait(self, topic: str, since: int, timeout: float) -> bool:
        """Wait until `seq(topic)` passes `since` or `timeout` elapses; True if it moved."""
        if self.seq(topic) != since:
            return True
        if timeout <= 0:
            return False
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(topic, set()).add(entry)
        try:
            if self.seq(topic) != since:
                return True
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when
            # the event is set in the same loop iteration as a cancellation (the loop
            # ending), and the waiter would wait again instead of ending.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await entry[1].wait()
            return self.seq(topic) != since
        finally:
            with self._lock:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[topic]


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    for loop, event in waiters:
        with contextlib.suppress(RuntimeError):  # that loop has closed
            loop.call_soon_threadsafe(event.set)
