"""The supervisor's stop: SIGTERM to every child, and a kill for one that ignores it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from helpers import wait_until
from taskflare.supervisor import Supervisor, SupervisorConfig

IGNORES_SIGTERM = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pathlib.Path(sys.argv[1]).write_text('ready')\n"
    "time.sleep(120)\n"
)


async def test_a_child_that_ignores_sigterm_is_killed_after_stop_timeout(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    supervisor = Supervisor([], SupervisorConfig(processes=1, stop_timeout=0.5))
    supervisor.command = [sys.executable, "-c", IGNORES_SIGTERM, str(ready)]
    caplog.set_level(logging.INFO, logger="taskflare.supervisor")
    running = asyncio.create_task(supervisor.run())
    await wait_until(ready.exists, 10, what="the child to ignore SIGTERM")
    child = supervisor._children[0]
    supervisor.stop()
    assert await asyncio.wait_for(running, 10) == 0
    assert child.returncode == -9
    assert "did not stop in time; killing it" in caplog.text
