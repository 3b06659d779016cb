"""A private PgBouncer (Debian's package) in transaction pooling mode, for tests.

Each test starts its own `pgbouncer` on a free port with a generated ini that points at
the test PostgreSQL server's database; a tiny server pool (`default_pool_size`) makes
consecutive statements of one client land on different server connections, which is
what breaks session state (prepared statements, SET, LISTEN) behind a real bouncer.
`scripts/bootstrap --test` installs the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import PG_URL, REQUIRE_PG, postgres_skip_reason

REQUIRE_PGBOUNCER = os.environ.get("TASKFLARE_REQUIRE_PGBOUNCER") == "1" or REQUIRE_PG


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable (Debian installs it in /usr/sbin), or None."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """`pgbouncer` on 127.0.0.1:<free port>, pool_mode=transaction, auth trust, in front of
    the test server's database. `url(schema)` is a taskflare URL through it."""

    def __init__(self, *, pool_size: int = 2) -> None:
        reason = postgres_skip_reason()
        binary = pgbouncer_binary()
        if reason is None and binary is None:
            reason = "pgbouncer is not installed (scripts/bootstrap --test installs it)"
        if reason is not None:
            if REQUIRE_PGBOUNCER:
                pytest.fail(f"PgBouncer tests are required here: {reason}")
            pytest.skip(f"skipped: {reason}")
        assert binary is not None
        server = urlsplit(PG_URL)
        self.database = server.path.lstrip("/") or "postgres"
        self.user = server.username or "postgres"
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="taskflare-pgbouncer-"))
        self.log = self.dir / "pgbouncer.log"
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        host, port = server.hostname or "127.0.0.1", server.port or 5432
        self.ini = self.dir / "pgbouncer.ini"
        self.ini.write_text(
            "[databases]\n"
            f"{self.database} = host={host} port={port} dbname={self.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"logfile = {self.log}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            "server_reset_query =\n"
        )
        command = [binary, str(self.ini)]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            command[1:1] = ["-u", "postgres"]
            os.chmod(self.dir, 0o777)
            for path in self.dir.iterdir():
                os.chmod(path, 0o666)
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"pgbouncer exited: {err} {self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"pgbouncer did not listen within {timeout}s")
            time.sleep(0.05)

    def url(self, schema: str, **options: str) -> str:
        """A taskflare URL for `schema` through the bouncer (plus URL options)."""
        query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}?{query}"

    def log_text(self) -> str:
        """What pgbouncer logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the process and remove its folder."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
