"""Being told when another process writes a SQLite file, instead of looking for it.

On Linux the kernel reports every write to a file through inotify; a commit in WAL mode
appends frames to `<db>-wal`, so a watch on the database's folder (it survives the WAL
file being deleted and created again) hears every other process's commit the moment it
is written, at no cost while nothing happens. The `inotify_simple` package is the thin
wrapper over the system calls.

An event is only a hint: it also comes for this process's own writes, and for writes
that are not commits yet. The waiter checks `PRAGMA data_version` (which moves only for
other connections' commits) before waking anyone. Elsewhere (no inotify, or a file
system that does not report writes, such as some network and container mounts) `open`
returns None and the backend falls back to looking at the WAL-index header.
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


class FileEvents:
    """Writes to one database file or its WAL, reported on an event loop.

    `wait(timeout)` returns True once a write was reported since the last call (or
    since the watch started), False after `timeout` seconds without one.
    """

    def __init__(self, inotify: Any, names: frozenset[str], loop: asyncio.AbstractEventLoop):
        self._inotify = inotify
        self._names = names
        self._loop = loop
        self._written = asyncio.Event()
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
            inotify.add_watch(folder, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
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
        if any(event.name in self._names for event in events):
            self._written.set()

    async def wait(self, timeout: float) -> bool:
        """True once a write was reported (and forget it); False after `timeout` [s]."""
        if not self._written.is_set():
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see ChangeSignal.wait
                async with asyncio.timeout(timeout):
                    await self._written.wait()
        written = self._written.is_set()
        self._written.clear()
        return written

    def close(self) -> None:
        """Stop watching (safe twice)."""
        if self._inotify.closed:
            return
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
