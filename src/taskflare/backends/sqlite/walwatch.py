"""Noticing other processes' commits to a SQLite file cheaply: the WAL-index header.

In WAL mode every connection maps the `<db>-shm` file; its first 48 bytes are the
WAL-index header, which a committing connection rewrites (its `iChange` counter moves on
every transaction, `mxFrame` with every frame appended). The format is documented and
stable since SQLite 3.7.0 (https://www.sqlite.org/walformat.html, "The WAL-Index
Header"). Reading those bytes with one `pread` costs a system call of about a
microsecond on the calling thread, against a hop to the connection's thread for
`PRAGMA data_version`, so a waiter can look every few milliseconds.

The header is only a hint: a change triggers the authoritative `PRAGMA data_version`
check, and that check still runs at its slower interval whatever the header says, so a
header that cannot be read (no `-shm` file yet, another locking mode, a file replaced
after every connection closed) only makes wake-ups slower, never lost.
"""

from __future__ import annotations

import contextlib
import os

HEADER_BYTES = 48


class WalIndexWatch:
    """Reads the WAL-index header of one database file (the file opened once, reopened
    when it was replaced)."""

    def __init__(self, database_path: str) -> None:
        self._path = database_path + "-shm"
        self._fd: int | None = None
        self._inode: int | None = None

    def header(self) -> bytes | None:
        """The header's bytes now, or None when they cannot be read. Two reads that differ
        mean a commit (by any connection) came in between."""
        if self._fd is None and not self._open():
            return None
        assert self._fd is not None
        try:
            return os.pread(self._fd, HEADER_BYTES, 0)
        except OSError:
            self.close()
            return None

    def recheck(self) -> None:
        """Reopen the file on the next read if it was replaced (after every connection to
        it had closed)."""
        try:
            inode = os.stat(self._path).st_ino
        except OSError:
            self.close()
            return
        if inode != self._inode:
            self.close()

    def close(self) -> None:
        """Forget the file (it is opened again on the next read)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._inode = None

    def _open(self) -> bool:
        try:
            self._fd = os.open(self._path, os.O_RDONLY)
        except OSError:
            return False
        self._inode = os.fstat(self._fd).st_ino
        return True
