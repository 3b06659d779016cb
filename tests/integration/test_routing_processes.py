"""`enqueue(..., queue=)` across real `taskflare worker` processes, on both backends: a
job of a type declared on queue `reports`, routed to the job queue `bulk`, runs on a
worker started with `--queue bulk` (with the type's attempts and backoff); a worker of
an app that lacks the type leaves it pending; `--queue` naming a queue that runs no
jobs is one clear line and exit code 1."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from taskflare import App, Backoff, JobStatus

from .cli_run import tf
from .procs import WorkerProcess, complete_lines, wait_for

APP = """
import json, os
from taskflare import App, Backoff

app = App(os.environ["TF_URL"])
LOG = os.environ["TF_LOG_DIR"]
app.queue("bulk", jobs=True)
app.queue("produced-to")  # declared to send to; consumed elsewhere


@app.job("report", queue="reports", max_attempts=2, retry=Backoff(base=0, cap=0, jitter=False))
async def report(payload, ctx):
    with open(os.path.join(LOG, f"{os.getpid()}.runs"), "a") as log:
        log.write(json.dumps([payload["name"], ctx.queue, ctx.attempt]) + "\\n")
    if payload["fail"] >= ctx.attempt:
        raise RuntimeError("attempt %d failed" % ctx.attempt)
    return "done on " + ctx.queue
"""

OTHER = """
import os
from taskflare import App

app = App(os.environ["TF_URL"])
app.queue("bulk", jobs=True)
app.job("unrelated", queue="elsewhere")(lambda payload: "unrelated done")
"""


def _write(folder: Path) -> tuple[str, str]:
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "routeapp.py").write_text(APP)
    (folder / "otherapp.py").write_text(OTHER)
    return f"{folder / 'routeapp.py'}:app", f"{folder / 'otherapp.py'}:app"


def _runs(folder: Path) -> list[tuple[str, str, int]]:
    found = []
    for path in sorted((folder / "logs").glob("*.runs")):
        found += [tuple(json.loads(line)) for line in complete_lines(path)]
    return sorted(found)


def _status(app: App, job_id: str) -> JobStatus | None:
    job = app.get_job_sync(job_id)
    return None if job is None else job.status


def test_a_routed_job_runs_on_a_worker_process_of_its_queue_only_if_its_app_has_the_type(
    database_url: str, tmp_path: Path
) -> None:
    spec, other_spec = _write(tmp_path)
    producer = App(database_url)
    producer.queue("bulk", jobs=True)
    no_wait = Backoff(base=0, cap=0, jitter=False)
    producer.job("report", queue="reports", max_attempts=2, retry=no_wait)(lambda p: None)
    producer.job("unrelated", queue="elsewhere")(lambda p: None)
    env = {"TF_URL": database_url}
    workers: list[WorkerProcess] = []
    try:
        flaky = producer.enqueue_sync("report", {"name": "flaky", "fail": 1}, queue="bulk")
        broken = producer.enqueue_sync("report", {"name": "broken", "fail": 9}, queue="bulk")
        side = producer.enqueue_sync("unrelated", 1, queue="bulk")

        # A worker of bulk whose app lacks `report`: it runs its own type, not the others.
        workers.append(WorkerProcess(other_spec, tmp_path, env, "--queue", "bulk"))
        wait_for(lambda: _status(producer, side.id) is JobStatus.COMPLETED, 60, "unrelated")
        for job in (flaky, broken):
            pending = producer.get_job_sync(job.id)
            assert pending is not None
            assert (pending.status, pending.attempts) == (JobStatus.PENDING, 0)
        workers[0].signal(signal.SIGTERM)
        assert workers[0].wait(30) == 0

        # A worker of the app that has it, consuming bulk only.
        workers.append(WorkerProcess(spec, tmp_path, env, "--queue", "bulk"))
        wait_for(lambda: _status(producer, flaky.id) is JobStatus.COMPLETED, 60, "flaky")
        wait_for(lambda: _status(producer, broken.id) is JobStatus.FAILED, 60, "broken")
        done = producer.get_job_sync(flaky.id)
        assert done is not None and done.result == "done on bulk"
        failed = producer.get_job_sync(broken.id)
        assert failed is not None and failed.attempts == 2  # the type's max_attempts
        assert _runs(tmp_path) == [
            ("broken", "bulk", 1),
            ("broken", "bulk", 2),
            ("flaky", "bulk", 1),
            ("flaky", "bulk", 2),
        ]
    finally:
        for worker in workers:
            worker.stop()
        producer.close_sync()


def test_worker_queue_that_runs_no_jobs_is_one_line_and_exit_1(
    sqlite_url: str, tmp_path: Path
) -> None:
    spec, _ = _write(tmp_path)
    for queue, words in (("produced-to", "jobs=True"), ("nowhere", "nowhere")):
        result = tf(
            "worker",
            spec,
            "--queue",
            queue,
            url=sqlite_url,
            TF_URL=sqlite_url,
            TF_LOG_DIR=str(tmp_path / "logs"),
        )
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
