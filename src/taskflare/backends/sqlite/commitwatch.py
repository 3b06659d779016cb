"""Noticing other connections' commits to a SQLite file while anyone waits for them.

`PRAGMA data_version` decides (it moves only for other connections' commits) but costs a
hop to the connection's thread, so it is asked every `poll_interval` and whenever a
cheaper hint says a commit may have come: the kernel reporting a write to the file
(`FileEvents`), then the WAL-index header showing the commit (`WalIndexWatch`; a
commit's frames are written before its fsync and before the header shows it), cut short
when a taskflare writer announces the commit (`announce_commit`). Where the
kernel cannot report writes, the header is read every `header_interval` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .fileevents import COMMIT, WRITE, FileEvents
from .walwatch import WalIndexWatch

# How long, after the kernel reported a write, the header is read for the commit to show
# [s], and how often [s].
WRITE_SETTLE = 0.1
WRITE_STEP = 0.002


class CommitWatch:
    """One watch of one file for one event loop: `run(waiting)` until nobody has waited
    for `linger` seconds; `check()` asks `PRAGMA data_version` (True: another connection
    committed, and every topic was raised)."""

    def __init__(
        self,
        events: FileEvents | None,
        header: WalIndexWatch | None,
        check: Callable[[], Awaitable[bool]],
        *,
        poll_interval: float,
        header_interval: float,
        linger: float,
    ) -> None:
        self._events = events
        self._header = header
        self._check = check
        self._poll_interval = poll_interval
        self._header_interval = header_interval if events is None else WRITE_STEP
        self._linger = linger
        self._seen = None if header is None else header.header()
        self._hot_until = 0.0  # reading the header until then: a write was reported
        self._next_poll = 0.0

    async def run(self, waiting: Callable[[], bool]) -> None:
        """Watch while `waiting()` is true, and `linger` seconds after it last was."""
        loop = asyncio.get_running_loop()
        try:
            # A commit made just before the watch began would otherwise wait for a poll.
            await self._check()
            self._next_poll = loop.time() + self._poll_interval
            idle_until = loop.time() + self._linger
            while waiting() or loop.time() < idle_until:
                if waiting():
                    idle_until = loop.time() + self._linger
                if not await self._hint(loop):
                    continue
                if await self._check():
                    self._hot_until = 0.0
                self._next_poll = loop.time() + self._poll_interval
                if self._header is not None:
                    self._header.recheck()
                    if self._seen is None:
                        self._seen = self._header.header()
        finally:
            if self._events is not None:
                self._events.close()

    async def _hint(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait for the next reason to ask `data_version`; False: no reason yet."""
        if self._events is not None and loop.time() >= self._hot_until:
            kind = await self._events.wait(max(self._next_poll - loop.time(), 0.0))
            if kind == WRITE:  # the commit may show in a moment: read the header meanwhile
                self._hot_until = loop.time() + WRITE_SETTLE
            return kind is not None or loop.time() >= self._next_poll
        if self._header is None or self._seen is None:
            await self._pause(self._poll_interval)
            return True
        if await self._pause(self._header_interval):
            return True
        header = self._header.header()
        if header == self._seen and loop.time() < self._next_poll:
            return False
        self._seen = header
        return True

    async def _pause(self, seconds: float) -> bool:
        """Sleep `seconds`, cut short by a commit another taskflare process announced
        (True)."""
        if self._events is None:
            await asyncio.sleep(seconds)
            return False
        return await self._events.wait(seconds, commits_only=True) == COMMIT
