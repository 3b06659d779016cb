"""Real worker processes for integration tests: an app module on disk and `taskflare worker`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

TASKFLARE = str(Path(sys.executable).with_name("taskflare"))

APP_SOURCE = '''
"""Integration-test app: behaviour is chosen by the message body."""
import asyncio, json, os
from taskflare import App

app = App(os.environ["TF_URL"], wait_until_limit=float(os.environ.get("TF_WAIT_UNTIL", "30")))
LOG_DIR = os.environ["TF_LOG_DIR"]
work = app.queue(
    "work",
    max_batch_size=int(os.environ.get("TF_BATCH", "10")),
    max_batch_timeout=0,
    max_retries=int(os.environ.get("TF_RETRIES", "3")),
    visibility_timeout=float(os.environ.get("TF_VT", "30")),
    dead_letter_queue=os.environ.get("TF_DLQ") or None,
)


@work.consumer
async def handle(batch):
    with open(os.path.join(LOG_DIR, f"{os.getpid()}.log"), "a") as log:
        for m in batch.messages:
            log.write(json.dumps([m.id, m.body, m.attempts]) + "\\n")
        log.flush()
    for m in batch.messages:
        body = m.body if isinstance(m.body, dict) else {}
        if body.get("ack"):
            m.ack()
        if body.get("crash"):
            os._exit(1)
        if body.get("sleep"):
            await asyncio.sleep(body["sleep"])
        if body.get("block"):
            import time
            time.sleep(body["block"])  # a blocking call in an async handler: the loop stalls
        if body.get("stubborn"):
            await _ignore_cancellation()
        if body.get("until"):
            # Run until the test creates this file (at most a minute).
            for _ in range(1200):
                if os.path.exists(body["until"]):
                    break
                await asyncio.sleep(0.05)


app.queue("jobs", visibility_timeout=float(os.environ.get("TF_JOBS_VT", "30")))


def _started(kind, payload):
    with open(os.path.join(LOG_DIR, f"{os.getpid()}.jobs"), "a") as log:
        log.write(json.dumps([kind, payload]) + "\\n")


@app.job("slow", queue="jobs", max_attempts=int(os.environ.get("TF_JOB_ATTEMPTS", "3")))
async def slow(payload):
    _started("slow", payload)
    await asyncio.sleep(payload["sleep"])
    return "done"


@app.job("blocking", queue="jobs", max_attempts=int(os.environ.get("TF_JOB_ATTEMPTS", "3")))
async def blocking(payload):
    import time
    _started("blocking", payload)
    time.sleep(payload["sleep"])  # blocks the worker's event loop
    return "done"


async def _ignore_cancellation():
    """Run for ever, swallowing every cancel (code asyncio cannot stop)."""
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass


@app.job("stubborn", queue="jobs", max_attempts=int(os.environ.get("TF_JOB_ATTEMPTS", "3")))
async def stubborn(payload):
    _started("stubborn", payload)
    await _ignore_cancellation()


@app.job("leave-behind", queue="jobs")
async def leave_behind(payload):
    _started("leave-behind", payload)
    app.wait_until(_ignore_cancellation())


@app.job("slow-sync", queue="jobs", max_attempts=int(os.environ.get("TF_JOB_ATTEMPTS", "3")))
def slow_sync(payload):
    import time
    _started("slow-sync", payload)
    time.sleep(payload["sleep"])
    return "done"
'''


def write_app(folder: Path) -> str:
    """Write the test app module into `folder`; return its 'path:attr' spec."""
    path = folder / "itapp.py"
    path.write_text(APP_SOURCE)
    (folder / "logs").mkdir(exist_ok=True)
    return f"{path}:app"


class WorkerProcess:
    """A `taskflare worker` subprocess with its stderr captured to a file."""

    def __init__(self, spec: str, folder: Path, env: dict[str, str], *args: str) -> None:
        self.stderr_path = folder / f"worker-{time.monotonic_ns()}.err"
        self._stderr = self.stderr_path.open("wb")
        full_env = {**os.environ, **env, "TF_LOG_DIR": str(folder / "logs")}
        self.proc = subprocess.Popen(
            [TASKFLARE, "worker", spec, *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            cwd=folder,
        )

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the worker."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit; return the exit code."""
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.flush()

    def stop(self) -> None:
        """Make sure the process is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()

    @property
    def stderr(self) -> str:
        """What the worker has written to stderr so far."""
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")


def complete_lines(path: Path) -> list[str]:
    """The lines of a log another process may be appending to right now.

    A worker writes each record as one line; a reader can see the file while
    the last line is half written. Only lines that end in a newline are whole,
    so the tail after the last newline is left for the next read.
    """
    text = path.read_text()
    return [line for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def deliveries(folder: Path) -> list[tuple[str, Any, int]]:
    """Every delivery logged by any worker: (message id, body, attempts)."""
    out = []
    for path in sorted((folder / "logs").glob("*.log")):
        for line in complete_lines(path):
            message_id, body, attempts = json.loads(line)
            out.append((message_id, body, attempts))
    return out


def job_starts(folder: Path) -> list[tuple[str, Any]]:
    """(type, payload) of every job a test worker started, in order per process."""
    found: list[tuple[str, Any]] = []
    for path in sorted((folder / "logs").glob("*.jobs")):
        for line in complete_lines(path):
            kind, payload = json.loads(line)
            found.append((kind, payload))
    return found


def delivery_counts(folder: Path) -> Counter[str]:
    """How many times each message id was delivered."""
    return Counter(d[0] for d in deliveries(folder))


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
