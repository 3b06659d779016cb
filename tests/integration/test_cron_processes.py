"""Cron across processes (issue 5, point 2): three `taskflare worker` processes on one SQLite
file, a trigger every 2 seconds, about 20 seconds: each tick ran exactly once, none skipped."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskflare import App
from taskflare.backends.base import CronNameParams
from taskflare.cron import CronSchedule

from .procs import WorkerProcess, complete_lines, wait_for

CRON = "*/2 * * * * *"
RUN_FOR = 20.0

APP_SOURCE = '''
"""Integration-test app: one cron trigger every 2 seconds; each tick is logged per process."""
import os
from taskflare import App
from taskflare.backends.base import CronNameParams

app = App(os.environ["TF_URL"])


@app.cron("*/2 * * * * *", name="every-two")
def every_two(event):
    path = os.path.join(os.environ["TF_LOG_DIR"], f"{os.getpid()}.ticks")
    with open(path, "a") as log:
        log.write(event.scheduled_time.isoformat() + "\\n")
'''


def logged_ticks(folder: Path) -> tuple[Counter[datetime], dict[str, int]]:
    """Every tick any process ran (with how often), and how many ticks each process ran."""
    seen: Counter[datetime] = Counter()
    per_process: dict[str, int] = {}
    for path in (folder / "logs").glob("*.ticks"):
        lines = complete_lines(path)
        per_process[path.stem] = len(lines)
        seen.update(datetime.fromisoformat(line) for line in lines)
    return seen, per_process


@pytest.mark.slow
def test_three_worker_processes_run_each_tick_exactly_once(tmp_path: Path, sqlite_url: str) -> None:
    spec_path = tmp_path / "cronapp.py"
    spec_path.write_text(APP_SOURCE)
    (tmp_path / "logs").mkdir()
    env = {"TF_URL": sqlite_url}
    workers = [WorkerProcess(f"{spec_path}:app", tmp_path, env) for _ in range(3)]
    try:
        for worker in workers:
            wait_for(lambda w=worker: " started on " in w.stderr, 60, "a worker to start")
        window_start = datetime.now(UTC)
        wait_for(
            lambda: (datetime.now(UTC) - window_start).total_seconds() > RUN_FOR,
            RUN_FOR + 10,
            f"{RUN_FOR:g} seconds to pass",
        )
        window_end = datetime.now(UTC) - timedelta(seconds=1)
        expected = CronSchedule.parse(CRON).between(window_start, window_end, 100)
        assert len(expected) >= 9

        wait_for(
            lambda: set(expected) <= set(logged_ticks(tmp_path)[0]),
            60,
            "every tick in the window to have run",
        )
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [worker.wait(30) for worker in workers]
    finally:
        for worker in workers:
            worker.stop()

    logs = [w.stderr_path.read_text(errors="replace") for w in workers]
    assert codes == [0, 0, 0], "\n".join(log[-2000:] for log in logs)
    seen, per_process = logged_ticks(tmp_path)
    twice = {t: n for t, n in seen.items() if n > 1}
    assert twice == {}, f"ticks run more than once: {twice}"
    # Every tick from the first to the last ran: none was skipped, in the window or outside it.
    ran = sorted(seen)
    assert ran == [ran[0] + timedelta(seconds=2 * n) for n in range(len(ran))]
    assert set(expected) <= set(ran)
    assert sum(per_process.values()) == len(ran)

    app = App(sqlite_url)
    try:

        async def statuses() -> Counter[str]:
            backend = await app.backend()
            return Counter(
                t.status for t in await backend.cron_recent(CronNameParams("every-two", 1000))
            )

        recorded = app.run_sync(statuses())
    finally:
        app.close_sync()
    assert recorded["skipped"] == 0
    # A tick enqueued just as the workers stopped may still be pending; none is lost.
    assert len(ran) <= recorded["enqueued"] <= len(ran) + 1
    assert all("skipped" not in log for log in logs)


FROZEN_APP = '''
"""Integration-test app: a trigger every second that may miss ticks by at most 2 s."""
import os
from taskflare import App

app = App(os.environ["TF_URL"])


@app.cron("* * * * * *", name="every-second", misfire_grace=2)
def every_second(event):
    path = os.path.join(os.environ["TF_LOG_DIR"], f"{os.getpid()}.ticks")
    with open(path, "a") as log:
        log.write(event.scheduled_time.isoformat() + "\\n")
'''


@pytest.mark.slow
def test_a_frozen_worker_skips_the_ticks_it_missed_past_the_grace(
    tmp_path: Path, sqlite_url: str
) -> None:
    """kill -STOP for 7 s, then -CONT: the scheduler applies the misfire rule it applies
    at start, so only ticks within `misfire_grace` of now run, not all seven at once."""
    spec_path = tmp_path / "frozen.py"
    spec_path.write_text(FROZEN_APP)
    (tmp_path / "logs").mkdir()
    worker = WorkerProcess(f"{spec_path}:app", tmp_path, {"TF_URL": sqlite_url})
    try:
        wait_for(lambda: len(logged_ticks(tmp_path)[0]) >= 2, 60, "the trigger to run")
        worker.signal(signal.SIGSTOP)
        stopped = datetime.now(UTC)
        wait_for(
            lambda: (datetime.now(UTC) - stopped).total_seconds() > 7, 60, "7 s to pass frozen"
        )
        resumed = datetime.now(UTC)
        worker.signal(signal.SIGCONT)
        wait_for(
            lambda: any(t > resumed for t in logged_ticks(tmp_path)[0]),
            60,
            "a tick after the worker resumed",
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr
    finally:
        worker.stop()

    seen, _ = logged_ticks(tmp_path)
    missed = [t for t in seen if stopped + timedelta(seconds=1) < t < resumed]
    assert len(missed) <= 3, f"{len(missed)} ticks of the frozen window ran: {sorted(missed)}"
    assert all(t >= resumed - timedelta(seconds=3) for t in missed), sorted(missed)

    app = App(sqlite_url)
    try:

        async def statuses() -> Counter[str]:
            backend = await app.backend()
            recent = await backend.cron_recent(CronNameParams("every-second", 1000))
            return Counter(t.status for t in recent)

        recorded = app.run_sync(statuses())
    finally:
        app.close_sync()
    assert recorded["skipped"] >= 3, recorded
