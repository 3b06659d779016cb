"""Jobs (issue 4, point 11): finished jobs are pruned after their retention, in bounded
chunks; pending jobs never are."""

from __future__ import annotations

from typing import Any

from helpers import running_worker, wait_until
from job_helpers import wait_past
from taskflare import App, PermanentError, Retention
from taskflare.testing import drain
from taskflare.worker.services import Pruner


async def make_jobs(app: App) -> dict[str, list[str]]:
    """5 completed, 3 failed, 1 cancelled, then 2 pending jobs."""
    app.job("ok")(lambda payload: None)

    @app.job("bad")
    def bad(payload: Any) -> None:
        raise PermanentError("no")

    made: dict[str, list[str]] = {"completed": [], "failed": [], "cancelled": [], "pending": []}
    for _ in range(5):
        made["completed"].append((await app.enqueue("ok")).id)
    for _ in range(3):
        made["failed"].append((await app.enqueue("bad")).id)
    cancelled = await app.enqueue("ok", delay_seconds=3600)
    await app.cancel(cancelled.id)
    made["cancelled"].append(cancelled.id)
    await drain(app)
    made["pending"] = [
        (await app.enqueue("ok")).id,
        (await app.enqueue("ok", delay_seconds=3600)).id,
    ]
    return made


async def remaining(app: App) -> set[str]:
    return {j.id for j in (await app.list_jobs(limit=1000)).jobs}


async def test_finished_jobs_past_retention_are_pruned_in_bounded_chunks(
    database_url: str,
) -> None:
    retention = Retention(completed=0.1, failed=0.2, chunk_size=2, max_chunks_per_run=1)
    app = App(database_url, retention=retention)
    try:
        made = await make_jobs(app)
        await wait_past(0.3)
        pruner = Pruner(await app.backend(), app.retention)
        deleted = [await pruner.prune() for _ in range(6)]
        assert deleted == [2, 2, 2, 2, 1, 0]
        assert await remaining(app) == set(made["pending"])
        for job_id in made["completed"] + made["failed"]:
            assert await app.get_job(job_id) is None
    finally:
        await app.close()


async def test_one_run_prunes_many_chunks(database_url: str) -> None:
    app = App(database_url, retention=Retention(completed=0.1, failed=0.2, chunk_size=2))
    try:
        made = await make_jobs(app)
        await wait_past(0.3)
        assert await Pruner(await app.backend(), app.retention).prune() == 9
        assert await remaining(app) == set(made["pending"])
    finally:
        await app.close()


async def test_completed_and_failed_have_their_own_ages(app: App) -> None:
    made = await make_jobs(app)
    await wait_past(0.15)
    backend = await app.backend()
    completed_only = Pruner(backend, Retention(completed=0.1, failed=3600))
    assert await completed_only.prune() == 5
    assert await remaining(app) == set(made["failed"] + made["cancelled"] + made["pending"])
    failed_only = Pruner(backend, Retention(completed=None, failed=0.1))
    assert await failed_only.prune() == 4
    assert await remaining(app) == set(made["pending"])


async def test_young_finished_jobs_and_pending_jobs_are_kept(app: App) -> None:
    made = await make_jobs(app)
    assert await Pruner(await app.backend(), Retention()).prune() == 0
    keep_forever = Retention(completed=None, failed=None)
    assert await Pruner(await app.backend(), keep_forever).prune() == 0
    assert len(await remaining(app)) == sum(len(ids) for ids in made.values())


async def test_a_running_worker_prunes_on_its_interval(database_url: str) -> None:
    # Kept 2 s: long enough for wait() to see the completed job even on a loaded machine
    # (with 0.05 s the pruner could delete it first and wait() find no job).
    retention = Retention(completed=2, failed=2, interval=0.05)
    app = App(database_url, retention=retention)
    try:
        app.job("ok")(lambda payload: "done")
        job = await app.enqueue("ok")
        async with running_worker(app):
            assert await job.wait(timeout=60) == "done"

            async def pruned() -> bool:
                return await app.get_job(job.id) is None

            await wait_until(pruned, what="the worker's pruner to delete the job")
    finally:
        await app.close()


async def test_default_retention_is_7_days_completed_and_30_days_failed() -> None:
    default = Retention()
    assert default.completed == 7 * 86_400 and default.failed == 30 * 86_400
