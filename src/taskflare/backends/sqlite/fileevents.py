"""Being told when another process writes a SQLite file, instead of looking for it.

On Linux the kernel reports every write to a file through inotify; a commit in WAL mode
appends frames to `<db>-wal`, so a watch on the database's folder (it survives the WAL
file being deleted and created again) hears every other process's commit the moment it
is written, at no cost while nothing happens. The `inotify_simple` package is the thin
wrapper over the system calls.

A write is only a hint: it also comes for this process's own writes, and for writes
that are not commits yet (a commit's frames are written before its fsync and before
other connections can see it; nothing is written to a file after that). So taskflare's
own writers also say when a commit that makes work ready (or asks for a cancel) is
visible: they set the WAL file's modification time (`os.utime`, no byte changes), which
the kernel reports as an attribute change, a "commit" event here. The waiter checks
`PRAGMA data_version` (which moves only for other connections' commits) before waking
anyone. Elsewhere (no inotify, or a file system that does not report writes, such as
some network and container mounts) `open` returns None and the backend falls back to
looking at the WAL-index header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

log = logging.getLogger("taskflare.sqlite")

try:  # Linux only
    from inotify_simple import INotify, flags  # type: ignore[import-untyped]
except (ImportError, OSError):  # pragma: no cover - not Linux
    INotify = None
    flags = None


WRITE = "write"
COMMIT = "commit"


def announce_commit(database_path: str) -> None:
    """Tell watchers of `database_path` that a commit they may wait for is visible now:
    set its WAL file's modification time (no file there: nothing to do)."""
    with contextlib.suppress(OSError):
        os.utime(database_path + "-wal")


class FileEvents:
    """Writes to one database file or its WAL, and announced commits, reported on an
    event loop.

    `wait(timeout)` returns `COMMIT` once a commit was announced since the last call (or
    since the watch started), else `WRITE` once a write was reported, None after
    `timeout` seconds without either; with `commits_only`, writes are forgotten and only
    a commit ends the wait.
    """

    def __init__(self, inotify: Any, names: frozenset[str], loop: asyncio.AbstractEventLoop):
        self._inotify = inotify
        self._names = names
        self._loop = loop
        self._event = asyncio.Event()
        self._written = False
        self._committed = False
        loop.add_reader(inotify.fileno(), self._read)

    @classmethod
    def open(cls, database_path: str) -> FileEvents | None:
        """Watch the folder of `database_path` for writes to it and its `-wal` file;
        None when this system cannot report them."""
        if INotify is None or flags is None:
            return None
        folder, name = os.path.split(os.path.abspath(database_path))
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:
            log.debug("no inotify (%s): looking for other processes' writes instead", exc)
            return None
        try:
            inotify.add_watch(folder, flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.ATTRIB)
            return cls(inotify, frozenset({name, f"{name}-wal"}), asyncio.get_running_loop())
        except OSError as exc:  # no such folder, or the watch limit is reached
            log.debug("cannot watch %s (%s): looking for writes instead", folder, exc)
            inotify.close()
            return None

    def _read(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        for event in events:
            if event.name in self._names:
                if event.mask & flags.ATTRIB:
                    self._committed = True
                else:
                    self._written = True
                self._event.set()

    async def wait(self, timeout: float, *, commits_only: bool = False) -> str | None:
        """`COMMIT` or `WRITE` once reported (and forget both), None after `timeout` [s]."""
        end = self._loop.time() + timeout
        while True:
            if commits_only:
                self._written = False
            if self._committed or self._written:
                kind = COMMIT if self._committed else WRITE
                self._committed = self._written = False
                return kind
            self._event.clear()
            left = end - self._loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see ChangeSignal.wait
                async with asyncio.timeout(left):
                    await self._event.wait()

    def close(self) -> None:
        """Stop watching (safe twice)."""
        if self._inotify.closed:
            return
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
