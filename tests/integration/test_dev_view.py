"""`taskflare dev` on a real terminal (a pty read by a terminal emulator): the app's log
lines scroll above the live view, whole, and the view is drawn once, with its jobs."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte

from .procs import TASKFLARE

MESSAGES = 12
WIDTH, HEIGHT = 120, 40

APP = f"""
import asyncio, logging
from taskflare import App

log = logging.getLogger("noisyapp")
app = App()
work = app.queue("work", max_batch_size=3, max_batch_timeout=0)


@work.consumer
async def handle(batch):
    for message in batch.messages:
        log.warning("handled message %d of the producer", message.body["n"])


@app.job("report", max_attempts=1)
async def report(payload, ctx):
    log.warning("report %d written", payload["n"])
    return {{"ok": True}}


async def producer(app):
    for n in range({MESSAGES}):
        await work.send({{"n": n}})
        await app.enqueue("report", {{"n": n}})
        await asyncio.sleep(0.1)
    await asyncio.sleep(3600)
"""


def run_on_a_terminal(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    code: int = 0,
    interrupt_when: Callable[[bytes], bool] | None = None,
) -> bytes:
    """Run a command on a pseudo-terminal WIDTH x HEIGHT; everything it wrote (it must
    exit with `code`). `interrupt_when(output so far)`: once true, the command gets
    SIGINT, as Ctrl-C on the terminal sends it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if interrupt_when is not None and not interrupted and interrupt_when(output):
                    proc.send_signal(signal.SIGINT)
                    interrupted = True
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=30) == code, output.decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return bytes(output)


def screen_lines(output: bytes) -> list[str]:
    """What a terminal shows after `output`, scrollback included, line by line."""
    screen = pyte.HistoryScreen(WIDTH, HEIGHT, history=100_000)
    stream = pyte.ByteStream(screen)
    stream.feed(output.replace(b"\n", b"\r\n"))  # a terminal's ONLCR
    scrolled = ["".join(line[x].data for x in range(WIDTH)).rstrip() for line in screen.history.top]
    return scrolled + [line.rstrip() for line in screen.display]


def test_dev_prints_app_logs_above_the_live_view_with_jobs(tmp_path: Path) -> None:
    (tmp_path / "noisyapp.py").write_text(APP)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "TASKFLARE_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
    }

    def all_done(output: bytes) -> bool:
        # Ctrl-C once every message and job has been handled (a fixed --duration raced
        # the start-up of a loaded machine).
        handled = output.count(b"of the producer")
        return handled >= MESSAGES and output.count(b" written") >= MESSAGES

    output = run_on_a_terminal(
        [TASKFLARE, "dev", "noisyapp.py:app", "--no-api"],
        tmp_path,
        env,
        timeout=90,
        interrupt_when=all_done,
    )
    lines = screen_lines(output)
    text = "\n".join(lines)
    handled = {
        int(line.rsplit("handled message ", 1)[1].split()[0])
        for line in lines
        if "WARNING noisyapp: handled message " in line and line.endswith(" of the producer")
    }
    assert handled == set(range(MESSAGES)), text
    reports = [line for line in lines if line.endswith(" written") and "noisyapp: report" in line]
    assert len(reports) == MESSAGES, text
    # The view is drawn once (at the bottom), not once per log line.
    assert sum("taskflare dev:" in line for line in lines) == 1, text
    assert sum("jobs (stored now)" in line for line in lines) == 1, text
    last_log = max(i for i, line in enumerate(lines) if "WARNING noisyapp" in line)
    view = next(i for i, line in enumerate(lines) if "taskflare dev:" in line)
    assert last_log < view, text
    [report_row] = [line for line in lines[view:] if "│ report" in line]
    cells = [c.strip() for c in report_row.strip("│ ").split("│")]
    assert cells[0] == "report" and str(MESSAGES) in cells, report_row


BROKEN_PRODUCER = """
from taskflare import App

app = App()
work = app.queue("work")


@work.consumer
async def handle(batch):
    pass


async def producer(app):
    await work.send({"n": 1})
    raise RuntimeError("producer broke")
"""


def _terminal_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "TASKFLARE_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
    }


def test_a_crashing_producer_is_shown_above_the_view_and_stops_dev_with_exit_1(
    tmp_path: Path,
) -> None:
    (tmp_path / "brokenapp.py").write_text(BROKEN_PRODUCER)
    env = _terminal_env(tmp_path)
    # No --duration: dev must stop by itself when its producer dies.
    output = run_on_a_terminal(
        [TASKFLARE, "dev", "brokenapp.py:app", "--no-api"], tmp_path, env, timeout=90, code=1
    )
    lines = screen_lines(output)
    text = "\n".join(lines)
    [error] = [line for line in lines if line.startswith("error: ")]
    assert "RuntimeError: producer broke" in error, text
    assert "(at brokenapp.py:15)" in error, text
    assert "--debug" in text and "Traceback" not in text, text
    assert lines.index(error) < next(i for i, line in enumerate(lines) if "taskflare dev:" in line)

    debug = screen_lines(
        run_on_a_terminal(
            [TASKFLARE, "--debug", "dev", "brokenapp.py:app", "--no-api"],
            tmp_path,
            env,
            timeout=90,
            code=1,
        )
    )
    assert any("Traceback" in line for line in debug), "\n".join(debug)


THREADED_LOGS = """
import logging, sys, threading
from rich.table import Table
from taskflare.dev.view import LiveView, ViewConsole, logs_through

LINES = int(sys.argv[1])
console = ViewConsole()
log = logging.getLogger("noisy")


def view(n):
    # A view whose height changes on every draw, as `taskflare dev`'s does when a table
    # gains a row or its title wraps.
    table = Table(title="view")
    table.add_column("row")
    for i in range(1 + n % 5):
        table.add_row(str(i))
    return table


def logger(name):
    for n in range(LINES):
        log.warning("%s line %d end", name, n)


with logs_through(console), LiveView(console) as live:
    threads = [threading.Thread(target=logger, args=(f"t{k}",)) for k in range(2)]
    for thread in threads:
        thread.start()
    for n in range(LINES):
        live.update(view(n))
    for thread in threads:
        thread.join()
"""


def test_log_lines_from_other_threads_survive_a_view_that_changes_height(
    tmp_path: Path,
) -> None:
    """Rich's live view is not thread-safe (Textualize/rich#1530): a log line printed from
    another thread while the view was redrawn at a new height had its cursor move computed
    from the old height, erasing lines above the view (CI lost two of `dev`'s log lines).
    Two threads log while the main thread redraws; every line must be on the terminal."""
    import sys

    (tmp_path / "threaded.py").write_text(THREADED_LOGS)
    lines_each = 1000
    env = _terminal_env(tmp_path)
    output = run_on_a_terminal(
        [sys.executable, "threaded.py", str(lines_each)], tmp_path, env, timeout=120
    )
    lines = screen_lines(output)
    for name in ("t0", "t1"):
        seen = {
            int(line.split(" line ")[1].split()[0])
            for line in lines
            if f"WARNING noisy: {name} line " in line and line.endswith(" end")
        }
        assert seen == set(range(lines_each)), sorted(set(range(lines_each)) - seen)[:20]
