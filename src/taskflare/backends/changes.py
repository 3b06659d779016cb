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

# A waiter: its event loop and the future it sleeps on.
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class ChangeSignal:
    """Thread-safe per-topic sequence numbers plus wake-ups for waiters on any event loop."""

    def __init__(self) -> None:
        self._seqs: dict[str, int] = {}
        self._everything = 0  # raised by `raise_all`: added to every topic's number
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Waiter]] = {}

    def seq(self, topic: str) -> int:
        """How many changes of `topic` have been seen so far."""
        return self._seqs.get(topic, 0) + self._everything

    def raise_topics(self, topics: Iterable[str]) -> None:
        """Record a change of each topic and wake its waiters."""
        woken: list[_Waiter] = []
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
        # A bare future woken directly (no Event, no `wait_for` task around it): a wake-up
        # reaches the waiter in one turn of its loop.
        loop = asyncio.get_running_loop()
        entry = (loop, loop.create_future())
        with self._lock:
            self._waiters.setdefault(topic, set()).add(entry)
        try:
            if self.seq(topic) != since:
                return True
            timer = loop.call_later(timeout, _resolve, entry[1])
            try:
                await entry[1]
            finally:
                timer.cancel()
            return self.seq(topic) != since
        finally:
            with self._lock:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[topic]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake(waiters: list[_Waiter]) -> None:
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # a thread without a loop (SQLite's connection thread)
        here = None
    for loop, future in waiters:
        if loop is here:  # raised on the waiter's own loop: no hop through its self-pipe
            _resolve(future)
            continue
        with contextlib.suppress(RuntimeError):  # that loop has closed
            loop.call_soon_threadsafe(_resolve, future)
