"""Jobs ending are notified on a channel of their own (PostgreSQL): worker processes, which
all listen for new work, do not wake for every settle of every other worker; what waits
for a job to end listens there and still hears it from another process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import state_counts, wait_until
from integration.procs import WorkerProcess, write_app
from taskflare import App, job_client
from taskflare.backends.postgres.backend import PostgresBackend

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def listening(url: str, channel: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url.split("?", 1)[0], autocommit=True)
    conn.execute(f'LISTEN "{channel}"')  # type: ignore[arg-type]
    return conn


def payloads(conn: psycopg.Connection[Any]) -> list[str]:
    """The notifications this connection has received so far."""
    return [n.payload for n in conn.notifies(timeout=0.5)]


@on_postgres
async def test_worker_processes_do_not_hear_the_job_ends_of_other_workers(
    app: App, database_url: str, tmp_path: Path
) -> None:
    backend = await app.backend()
    assert isinstance(backend, PostgresBackend)
    app.job("slow", queue="jobs")(lambda payload: None)
    # What every worker listens to (new work, cancels), and the channel of job ends.
    work = listening(database_url, backend.channel)
    done = listening(database_url, backend._db.done_channel)
    spec = write_app(tmp_path)
    workers = [
        WorkerProcess(spec, tmp_path, {"TF_URL": database_url}, "--queue", "jobs") for _ in range(3)
    ]
    try:
        jobs = await app.enqueue_many("slow", [{"sleep": 0} for _ in range(300)])

        async def all_completed() -> bool:
            return (await state_counts(app, "jobs")).get("completed", 0) >= len(jobs)

        await wait_until(all_completed, timeout=60, what="300 jobs completed by 3 workers")
        heard_by_workers = payloads(work)
        heard_by_waiters = payloads(done)
    finally:
        for worker in workers:
            worker.stop()
        work.close()
        done.close()
    assert heard_by_workers, "the enqueue's notification reached the workers' channel"
    assert "done" not in heard_by_workers, (
        f"{heard_by_workers.count('done')} job-end notifications woke every worker"
    )
    assert "done" in heard_by_waiters


@on_postgres
async def test_a_wait_hears_a_job_end_committed_by_a_worker_process(
    app: App, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No fallback poll within the test's time: only the notification can end the wait.
    monkeypatch.setattr(job_client, "WAIT_FALLBACK_POLL", 3600.0)
    backend = await app.backend()
    assert isinstance(backend, PostgresBackend)
    app.job("slow", queue="jobs")(lambda payload: None)
    job = await app.enqueue("slow", {"sleep": 0})
    waiting = asyncio.create_task(job.wait(timeout=3600))
    # The waiter now listens for job ends too (its listener started over to add them).
    await wait_until(
        lambda: any(
            r.listen_done and r.listen_conn is not None and r.listener is not None
            for r in backend._db._loops.values()
        ),
        timeout=30,
        what="the waiter to listen for job ends",
    )
    spec = write_app(tmp_path)
    worker = WorkerProcess(spec, tmp_path, {"TF_URL": database_url}, "--queue", "jobs")
    try:
        assert await asyncio.wait_for(waiting, 60) == "done"
    finally:
        worker.stop()
