"""User code that raises `SystemExit`, `KeyboardInterrupt` or its own `CancelledError`
fails that code's job or batch; it never stops the worker (asyncio re-raised the first
two out of the event loop: the process exited at once, its other jobs left `processing`),
nor reads as the worker's shutdown. A real SIGTERM/SIGINT still stops it gracefully."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from taskflare import App, Job
from taskflare.backends.base import MessageGetParams, MessageListParams, MessageRecord

from .cli_run import tf, write_cli_app
from .procs import WorkerProcess, complete_lines, wait_for

T = TypeVar("T")

APP = """
import asyncio, os, sys
from taskflare import App, Backoff

app = App(os.environ["TF_URL"])
LOG_DIR = os.environ["TF_LOG_DIR"]
app.queue("q9", dead_letter_queue="q9-dlq", visibility_timeout=5)
NOW = Backoff(base=0, jitter=False)


def note(line):
    with open(os.path.join(LOG_DIR, "notes"), "a") as log:
        log.write(line + "\\n")


@app.job("exit", queue="q9", max_attempts=2, retry=NOW)
async def ex(p, ctx):
    raise SystemExit(3)


@app.job("kbi", queue="q9", max_attempts=2, retry=NOW)
def kbi(p, ctx):
    raise KeyboardInterrupt()


@app.job("own-cancel", queue="q9", max_attempts=2, retry=NOW)
async def own_cancel(p):
    raise asyncio.CancelledError()


async def background_exit():
    raise SystemExit(4)


@app.job("innocent", queue="q9", max_attempts=1)
async def innocent(p):
    note("innocent started")
    app.wait_until(background_exit())
    for _ in range(1200):
        if os.path.exists(p["until"]):
            return "done"
        await asyncio.sleep(0.05)


@app.on("retried")
def on_retried(event):
    raise SystemExit(5)


@app.on("failed")
async def on_failed(event):
    raise KeyboardInterrupt()


m9 = app.queue(
    "m9", max_batch_size=1, max_batch_timeout=0, max_retries=1, retry_delay=0,
    dead_letter_queue="m9-dlq", visibility_timeout=5,
)


@m9.consumer
def consume(batch):
    for m in batch.messages:
        note(f"message {m.id}")
        if m.body.get("exit"):
            sys.exit(0)
"""


def _start(folder: Path, url: str, *args: str) -> WorkerProcess:
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "app9.py").write_text(APP)
    return WorkerProcess(f"{folder / 'app9.py'}:app", folder, {"TF_URL": url}, *args)


def _alive(worker: WorkerProcess, predicate: Callable[[], T]) -> Callable[[], T]:
    """`predicate`, failing at once when the worker has exited meanwhile."""

    def check() -> T:
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.stderr}"
        return predicate()

    return check


def _notes(folder: Path) -> list[str]:
    path = folder / "logs" / "notes"
    return complete_lines(path) if path.exists() else []


def _finished(app: App, job_id: str) -> Job | None:
    job = app.get_job_sync(job_id)
    return job if job is not None and job.status.finished else None


def test_systemexit_keyboardinterrupt_and_own_cancel_fail_their_job_not_the_worker(
    tmp_path: Path, database_url: str
) -> None:
    app = App(database_url)
    for name in ("exit", "kbi", "own-cancel", "innocent"):
        app.job(name, queue="q9", max_attempts=2)(lambda payload: None)
    release = tmp_path / "release"
    try:
        innocent = app.enqueue_sync("innocent", {"until": str(release)})
        worker = _start(tmp_path, database_url, "--queue", "q9")
        try:
            wait_for(lambda: "innocent started" in _notes(tmp_path), 60, "the innocent job")
            bad = {name: app.enqueue_sync(name, {}).id for name in ("exit", "kbi", "own-cancel")}
            failed = {
                name: wait_for(
                    _alive(worker, functools.partial(_finished, app, job_id)), 60, f"{name} to fail"
                )
                for name, job_id in bad.items()
            }
            assert worker.proc.poll() is None, worker.stderr
            errors = {
                "exit": "SystemExit: 3",
                "kbi": "KeyboardInterrupt",
                "own-cancel": "CancelledError: raised by the code itself (no cancel was "
                "requested; the worker was not stopping)",
            }
            for name, job in failed.items():
                assert job.status.value == "failed", (name, job)
                assert job.error == errors[name]
                assert [(a.outcome, a.error) for a in job.history] == [
                    ("retried", errors[name]),
                    ("failed", errors[name]),
                ]
            release.touch()
            done = wait_for(
                _alive(worker, lambda: _finished(app, innocent.id)), 60, "the innocent job"
            )
            assert (done.status.value, done.attempts, done.result) == ("completed", 1, "done")
            assert worker.proc.poll() is None, worker.stderr
            worker.signal(signal.SIGINT)  # a real Ctrl-C still stops it gracefully
            assert worker.wait(30) == 0, worker.stderr
            assert "Task exception was never retrieved" not in worker.stderr
        finally:
            worker.stop()
    finally:
        app.close_sync()


def test_a_consumer_calling_sys_exit_fails_its_batch_not_the_worker(
    tmp_path: Path, database_url: str
) -> None:
    app = App(database_url)
    m9 = app.queue("m9")
    try:
        bad = m9.send_sync({"exit": True})
        worker = _start(tmp_path, database_url, "--queue", "m9")
        try:
            wait_for(
                _alive(worker, lambda: _state(app, bad) == "failed"),
                60,
                "the batch retried, then failed",
            )
            assert _notes(tmp_path).count(f"message {bad}") == 2
            assert worker.proc.poll() is None, worker.stderr
            good = m9.send_sync({"exit": False})
            wait_for(
                _alive(worker, lambda: _state(app, good) is None),
                60,
                "the next message to be acked",
            )
            worker.signal(signal.SIGTERM)
            assert worker.wait(30) == 0, worker.stderr
        finally:
            worker.stop()
        record = _message(app, bad)
        assert record is not None and "SystemExit: 0" in (record.last_error or "")
        dead = app.run_sync(_listed(app, "m9-dlq"))
        assert [d.origin_id for d in dead] == [bad]
    finally:
        app.close_sync()


def _message(app: App, message_id: str) -> MessageRecord | None:
    async def read() -> MessageRecord | None:
        return await (await app.backend()).message_get(MessageGetParams(message_id))

    return app.run_sync(read())


def _state(app: App, message_id: str) -> str | None:
    record = _message(app, message_id)
    return None if record is None else str(record.state)


async def _listed(app: App, queue: str) -> list[MessageRecord]:
    return await (await app.backend()).message_list(MessageListParams(queue, None, 100))


def test_a_dev_producer_calling_sys_exit_fails_loudly(tmp_path: Path) -> None:
    """`taskflare dev`: a producer's `sys.exit(0)` is its failure (exit 1, the error told),
    not a clean exit of the whole run."""
    app = write_cli_app(tmp_path)
    (tmp_path / "prod.py").write_text("import sys\n\nasync def producer(app):\n    sys.exit(0)\n")
    result = tf(
        "dev",
        app,
        "--no-api",
        "--producer",
        f"{tmp_path / 'prod.py'}:producer",
        url=f"sqlite:///{tmp_path / 't.db'}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "producer failed: SystemExit: 0" in output, output
