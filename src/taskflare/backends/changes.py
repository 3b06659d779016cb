"""A counter of "new work may be ready" events that waiters on any event loop can sleep on.

Backends bump it when this process makes work ready (a send, a retry, a resume) and when
they learn that another process did (SQLite: `PRAGMA data_version`; PostgreSQL: NOTIFY).
A waiter remembers the value it saw before looking for work, so a change that lands
between the look and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ChangeSignal:
    """A thread-safe sequence number plus wake-ups for waiters on any event loop."""

    def __init__(self) -> None:
        self._seq = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def seq(self) -> int:
        """The number of changes seen so far."""
        return self._seq

    def bump(self) -> None:
        """Record a change and wake every waiter."""
        with self._lock:
            self._seq += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, since: int, timeout: float) -> bool:
        """Wait until the sequence passes `since` or `timeout` elapses; True if it changed."""
        if self._seq != since:
            return True
        if timeout <= 0:
            return False
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            if self._seq != since:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry[1].wait(), timeout)
            return self._seq != since
        finally:
            with self._lock:
                self._waiters.discard(entry)
