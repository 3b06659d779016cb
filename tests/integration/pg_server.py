"""A private PostgreSQL server for tests that stop and restart the database.

Restarting the machine's shared server (`pg_ctlcluster ... main restart`) would break
every other PostgreSQL test running at the same time (pytest-xdist, other checkouts),
so outage tests run their own throw-away cluster with the same binaries and restart
that one with `pg_ctl`: the same server, the same shutdown, isolated.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REQUIRE_PG = os.environ.get("TASKFLARE_REQUIRE_POSTGRES") == "1"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """An initdb'd cluster in a temporary folder on a free port; start/stop/restart it."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            reason = "no PostgreSQL server binaries (initdb) on this machine"
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL is required here: {reason}")
            pytest.skip(f"skipped: no PostgreSQL: {reason}")
        self.bin = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="taskflare-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        """A URL for the cluster's `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            action,
            *extra,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._ctl("start")

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, as on a real restart."""
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        """Stop (fast) and start again."""
        self._ctl("restart", "-m", "fast")

    def destroy(self) -> None:
        """Stop the server if running and remove its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
