"""`taskflare worker health` against a real worker process, on both backends: healthy
while it runs; exit 1 once its heartbeat is stale (SIGSTOP), healthy again after
SIGCONT; exit 1 at once when it was killed (kill -9)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from taskflare.worker.health import MIN_MAX_AGE

from .conftest import Harness
from .procs import TASKFLARE, wait_for


def probe(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the probe on the harness's app (its database comes from the app)."""
    return subprocess.run(
        [TASKFLARE, "worker", "health", harness.spec, *args],
        env={**os.environ, **harness.env, "TF_LOG_DIR": str(harness.folder / "logs")},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=harness.folder,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The probe's only line (stdout when healthy, stderr when not)."""
    text = result.stdout if result.returncode == 0 else result.stderr
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, (result.stdout, result.stderr)
    return lines[0]


@pytest.mark.timeout(600)  # a dozen probe processes and a 10 s stale wait, on a loaded machine
def test_health_follows_a_real_workers_heartbeat(tmp_path: Path, database_url: str) -> None:
    harness = Harness(tmp_path, database_url)
    try:
        harness.work.send_sync({"n": 1})  # the database exists before the probe reads it
        nobody = probe(harness)
        assert nobody.returncode == 1 and "no running worker" in one_line(nobody)

        worker = harness.start_worker()
        pid = worker.proc.pid
        healthy = wait_for(
            lambda: (r := probe(harness)).returncode == 0 and r, 60, "a healthy probe"
        )
        line = one_line(healthy)
        assert line.startswith("ok: 1 worker on ") and f"pid {pid} " in line
        assert probe(harness, "--pid", str(pid)).returncode == 0
        missing = probe(harness, "--pid", str(pid + 100_000))
        assert missing.returncode == 1 and "has reported" in one_line(missing)

        worker.signal(signal.SIGSTOP)  # alive, but its heartbeat stops
        try:
            limit = str(MIN_MAX_AGE)
            stale = wait_for(
                lambda: (r := probe(harness, "--max-age", limit)).returncode == 1 and r,
                120,
                "the probe to see the stale heartbeat",
            )
            line = one_line(stale)
            assert "heartbeat stale" in line and f"pid {pid} " in line, line
        finally:
            worker.signal(signal.SIGCONT)
        wait_for(lambda: probe(harness).returncode == 0, 60, "healthy again after SIGCONT")

        worker.signal(signal.SIGKILL)
        worker.wait(10)
        dead = probe(harness)
        assert dead.returncode == 1 and "no running worker" in one_line(dead)
        by_pid = probe(harness, "--pid", str(pid))
        assert by_pid.returncode == 1 and f"pid {pid} on " in one_line(by_pid)
        assert "is not running" in one_line(by_pid)
    finally:
        harness.close()


def test_bad_max_age_and_unreachable_database_are_one_line_errors(tmp_path: Path) -> None:
    too_small = subprocess.run(
        [TASKFLARE, "worker", "health", "--max-age", "1", "--database-url", "sqlite:///x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert too_small.returncode == 2  # a usage error
    assert too_small.stderr.strip().startswith("error: --max-age must be at least")
    missing = subprocess.run(
        [TASKFLARE, "worker", "health", "--database-url", f"sqlite:///{tmp_path / 'no.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.startswith("unhealthy: "), missing.stderr  # as deployment.md says
    assert not (tmp_path / "no.db").exists(), "a probe never creates a database"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    unreachable = subprocess.run(
        [
            TASKFLARE,
            "worker",
            "health",
            "--database-url",
            f"postgresql://u:sekrit@127.0.0.1:{port}/x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert unreachable.returncode == 1, unreachable.stderr
    [line] = unreachable.stderr.strip().splitlines()
    assert line.startswith("unhealthy: ") and "sekrit" not in line, line
