"""Flow control across real worker processes, on both backends: four workers competing for
rate-limited jobs stay within the limit plus its burst over every 1 s window; a worker
killed (kill -9) while holding a concurrency slot gives it back when its lease is rescued."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from taskflare import App, Concurrency, JobStatus, RateLimit

from .procs import WorkerProcess, complete_lines, wait_for

APP = """
import asyncio, json, os
from taskflare import App, Concurrency, RateLimit

app = App(os.environ["TF_URL"])
LOG = os.environ["TF_LOG_DIR"]
app.queue("seq", visibility_timeout=1.0)


@app.job("call", queue="api", rate_limit=RateLimit("20/s", burst=5))
async def call(payload):
    return None


@app.job("hold", queue="seq", concurrency=Concurrency(1, key=lambda p: p["key"]))
async def hold(payload, ctx):
    with open(os.path.join(LOG, f"{os.getpid()}.starts"), "a") as log:
        log.write(json.dumps([payload["n"], ctx.attempt]) + "\\n")
    await asyncio.sleep(payload["sleep"])
"""

LIMIT, BURST = 20, 5


def _app(folder: Path) -> str:
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "flowapp.py").write_text(APP)
    return f"{folder / 'flowapp.py'}:app"


def _starts(folder: Path) -> list[tuple[int, int]]:
    found = []
    for path in sorted((folder / "logs").glob("*.starts")):
        found += [tuple(json.loads(line)) for line in complete_lines(path)]
    return found


def test_four_workers_stay_within_the_rate_plus_burst_in_every_second(
    database_url: str, tmp_path: Path
) -> None:
    spec = _app(tmp_path)
    app = App(database_url)
    # The producer declares the limit too: a job's buckets are set when it is enqueued.
    app.job("call", queue="api", rate_limit=RateLimit(f"{LIMIT}/s", burst=BURST))(lambda p: None)
    workers: list[WorkerProcess] = []
    try:
        app.enqueue_many_sync("call", range(120))
        env = {"TF_URL": database_url}
        workers = [
            WorkerProcess(spec, tmp_path, env, "--queue", "api", "--concurrency", "8")
            for _ in range(4)
        ]

        def drained() -> bool:
            page = app.list_jobs_sync(status="completed", limit=1000)
            return len(page.jobs) == 120

        wait_for(drained, 90, "120 rate-limited jobs to complete")
        starts = sorted(
            job.started_at.timestamp()
            for job in app.list_jobs_sync(limit=1000).jobs
            if job.started_at is not None
        )
        assert len(starts) == 120
        busiest = max(
            sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts)
        )
        span = starts[-1] - starts[0]
        print(f"busiest 1 s window: {busiest} starts; mean rate {119 / span:.1f}/s")
        assert busiest <= LIMIT + BURST
        assert all(job.attempts == 1 for job in app.list_jobs_sync(limit=1000).jobs)
    finally:
        for worker in workers:
            worker.stop()
        app.close_sync()


def test_a_killed_workers_concurrency_slot_is_freed_when_its_lease_is_rescued(
    database_url: str, tmp_path: Path
) -> None:
    spec = _app(tmp_path)
    app = App(database_url)
    app.queue("seq", visibility_timeout=1.0)
    app.job("hold", queue="seq", concurrency=Concurrency(1, key=lambda p: p["key"]))(lambda p: None)
    env = {"TF_URL": database_url}
    first = WorkerProcess(spec, tmp_path, env, "--queue", "seq")
    second: WorkerProcess | None = None
    try:
        stuck = app.enqueue_sync("hold", {"key": "k", "n": 1, "sleep": 60})
        wait_for(lambda: _starts(tmp_path) == [(1, 1)], 60, "the first job to start")
        nxt = app.enqueue_sync("hold", {"key": "k", "n": 2, "sleep": 0})
        first.signal(signal.SIGKILL)
        first.wait(10)
        assert app.get_job_sync(stuck.id).status is JobStatus.PROCESSING  # slot still held
        second = WorkerProcess(spec, tmp_path, env, "--queue", "seq")
        # The lease (1 s) runs out, the rescuer puts job 1 back: the key's slot is free.
        wait_for(lambda: (2, 1) in _starts(tmp_path), 60, "the second job of the key to run")
        wait_for(lambda: app.get_job_sync(nxt.id).status is JobStatus.COMPLETED, 60, "job 2 to end")
        starts = _starts(tmp_path)
        # One at a time: job 1's second delivery and job 2 never ran together with the
        # first delivery (which died with its worker).
        assert starts[0] == (1, 1)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        app.close_sync()
