"""Run the real `taskflare` executable for the CLI tests: one-shot calls, followers, an app."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from taskflare import App
from taskflare.backends.base import ClaimParams, EnqueueParams, FailOutcome, NewMessage, Settlement
from taskflare.ids import uuid7

from .procs import TASKFLARE, complete_lines, wait_for

CLI_APP_SOURCE = '''
"""CLI test app: a message queue with a DLQ, and job types on their own queue."""
import json, os
from taskflare import App

app = App(os.environ["TF_URL"])
LOG_DIR = os.environ.get("TF_LOG_DIR", ".")
work = app.queue(
    "work", max_batch_size=10, max_batch_timeout=0, max_retries=0,
    dead_letter_queue="work-dlq",
)


@work.consumer
async def handle(batch):
    with open(os.path.join(LOG_DIR, f"{os.getpid()}.log"), "a") as log:
        for m in batch.messages:
            log.write(json.dumps([m.id, m.body]) + "\\n")


@app.job("double", queue="jobs", priority=3)
async def double(payload, ctx):
    await ctx.progress(0.5, "halfway")
    return {"n": payload["n"] * 2}


@app.job("boom", queue="jobs", max_attempts=1)
async def boom(payload, ctx):
    raise RuntimeError("kaboom " + str(payload.get("n")))
'''


def write_cli_app(folder: Path) -> str:
    """Write the CLI test app into `folder`; return its 'path:attr' spec."""
    path = folder / "cliapp.py"
    path.write_text(CLI_APP_SOURCE)
    (folder / "logs").mkdir(exist_ok=True)
    return f"{path}:app"


def cli_env(url: str | None, folder: Path | None = None, **extra: str) -> dict[str, str]:
    """A small, explicit environment: the database URL (for the CLI and the app), wide tables."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    if os.environ.get("PYTHONPATH"):  # a worktree's tests run its own code, not the venv's
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if url is not None:
        env["TASKFLARE_DATABASE_URL"] = url
        env["TF_URL"] = url
    if folder is not None:
        env["TF_LOG_DIR"] = str(folder / "logs")
    env.update(extra)
    return env


def tf(
    *args: str,
    url: str | None,
    input: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run `taskflare ARGS` to completion."""
    return subprocess.run(
        [TASKFLARE, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(url, **env),
        cwd=cwd,
    )


def tf_many(
    commands: Sequence[Sequence[str]], url: str | None, timeout: float = 180, **env: str
) -> list[subprocess.CompletedProcess[str]]:
    """Run several `taskflare` commands at once (they are independent); results in order.

    `timeout` [s] guards against a hang, for all of them together: each process imports
    taskflare (about a CPU-second), so several at once on a loaded 2-CPU machine can take
    a minute."""
    procs = [
        subprocess.Popen(
            [TASKFLARE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=cli_env(url, **env),
        )
        for args in commands
    ]
    results = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess([TASKFLARE, *args], proc.returncode, out, err))
    return results


def ok(*args: str, url: str | None, **kw: Any) -> str:
    """Run a command that must succeed; return its stdout."""
    result = tf(*args, url=url, **kw)
    assert result.returncode == 0, f"taskflare {' '.join(args)} -> {result.returncode}\n" + (
        result.stderr
    )
    return result.stdout


def tf_json(*args: str, url: str | None, **kw: Any) -> Any:
    """Run a reading command with --json; its stdout must be exactly one JSON document."""
    return json.loads(ok(*args, "--json", url=url, **kw))


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Assert the command failed with `code` and exactly one 'error: ...' line; return it."""
    where = f"{' '.join(map(str, result.args[1:]))} -> {result.returncode}\n{result.stderr}"
    assert result.returncode == code, where
    assert "Traceback" not in result.stderr, where
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, where
    assert lines[0].startswith("error: "), where
    return lines[0]


# Starts a command with SIGINT and SIGTERM as a terminal gives them (default disposition,
# not blocked): a child inherits an ignored SIGINT and the signal mask of the process that
# starts it, and a suite started as a background job of a non-interactive shell (as
# `cmd &` is) has SIGINT ignored, so the command would never see the test's Ctrl-C.
AS_FROM_A_TERMINAL = (
    "import os, signal, sys;"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM});"
    "signal.signal(signal.SIGINT, signal.SIG_DFL);"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL);"
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Follower:
    """A long-running `taskflare` process (worker, supervisor, tail) with its output in files."""

    def __init__(self, folder: Path, *args: str, url: str, **env: str) -> None:
        stamp = time.monotonic_ns()
        self.out_path = folder / f"{args[0]}-{stamp}.out"
        self.err_path = folder / f"{args[0]}-{stamp}.err"
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AS_FROM_A_TERMINAL, TASKFLARE, *args],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env=cli_env(url, folder, **env),
            cwd=folder,
        )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for_output(
        self, pattern: str, timeout: float, stream: str = "stdout"
    ) -> re.Match[str]:
        """Poll the output until `pattern` matches; fail early if the process exits first."""

        def seen() -> re.Match[str] | None:
            text = self.stdout if stream == "stdout" else self.stderr
            found = re.search(pattern, text)
            if found is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"process exited ({self.proc.returncode}) before {pattern!r} appeared:\n"
                    f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-3000:]}"
                )
            return found

        match: re.Match[str] = wait_for(seen, timeout, f"{pattern!r} on {stream}")
        return match

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()
            self._err.close()

    def kill(self) -> None:
        """Make sure the process is gone (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()


def migrated(url: str) -> str:
    """Create and migrate the database at `url`, as a worker's first start does (the
    commands that read or change stored state never create one); return `url`."""
    app = App(url)

    async def work() -> None:
        await (await app.backend()).migrate()

    try:
        app.run_sync(work())
    finally:
        app.close_sync()
    return url


def declared_app(url: str) -> App:
    """An in-process App declaring the test app's queue settings (so the CLI finds the DLQ)."""
    app = App(url)
    app.queue("work", max_retries=0, dead_letter_queue="work-dlq")
    return app


def make_dead_letters(url: str, count: int) -> list[str]:
    """Put `count` messages on 'work', claim them and fail them into 'work-dlq'; DLQ ids."""
    app = declared_app(url)

    async def work() -> list[str]:
        await app.declare_queues()  # as the app's workers do when they start
        backend = await app.backend()
        await backend.message_enqueue_many(
            EnqueueParams(
                [NewMessage(uuid7(), "work", orjson.dumps({"i": i}), "json") for i in range(count)]
            )
        )
        claimed = (
            await backend.message_claim_many(
                ClaimParams("work", count, lease_id=uuid7(), owner="test", visibility_timeout=60)
            )
        ).messages
        fails = [FailOutcome(c.id, c.lease_id, "boom", "work-dlq", uuid7()) for c in claimed]
        await backend.message_settle_many(Settlement(fails=fails))
        return [f.dlq_message_id for f in fails if f.dlq_message_id]

    try:
        return app.run_sync(work())
    finally:
        app.close_sync()


def send_in_process(url: str, queue: str, bodies: Sequence[Any]) -> list[str]:
    """Store messages directly (a fast producer beside the CLI); their ids."""
    app = App(url)
    messages = [NewMessage(uuid7(), queue, orjson.dumps(b), "json") for b in bodies]

    async def work() -> None:
        await (await app.backend()).message_enqueue_many(EnqueueParams(messages))

    try:
        app.run_sync(work())
    finally:
        app.close_sync()
    return [m.id for m in messages]


def logged_ids(folder: Path) -> list[str]:
    """Ids of the messages the test app's consumer saw (any process)."""
    ids = []
    for path in sorted((folder / "logs").glob("*.log")):
        ids += [json.loads(line)[0] for line in complete_lines(path)]
    return ids


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
