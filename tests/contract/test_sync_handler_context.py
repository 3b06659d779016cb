"""A plain `def` handler (run in a worker thread) can report progress and use `once`.

`ctx.progress` and `ctx.once` were coroutines only: in a thread, `ctx.progress(0.5)` made
a coroutine that never ran, so the progress was lost without a word, and `once` could
not be used at all. RQ's `job.save_meta()` and Celery's `self.update_state()`, what a
sync handler's author knows, are blocking calls. Now `ctx.progress(...)` blocks until
stored when called from a thread, `ctx.once_sync(...)` is `once` for threads, and
`ctx.once(...)` from a thread says to use it.
"""

from __future__ import annotations

import threading
from typing import Any

from helpers import running_worker, wait_until
from job_helpers import job_of
from taskflare import App, JobContext, JobStatus
from taskflare.testing import drain


async def test_a_def_handler_reports_progress_while_it_runs(app: App) -> None:
    release = threading.Event()

    @app.job("export")
    def export(payload: Any, ctx: JobContext) -> str:
        ctx.progress(0.5, "half way")  # no await: a thread blocks until it is stored
        release.wait(30)
        return "done"

    job = await app.enqueue("export")
    async with running_worker(app):

        async def halfway() -> Any:
            seen = await job_of(app, job.id)
            return seen if seen.progress == 0.5 else None

        running = await wait_until(halfway, what="progress 0.5 from the thread")
        assert running.status is JobStatus.PROCESSING
        assert running.progress_note == "half way"
        release.set()
        assert await job.wait(timeout=30) == "done"


async def test_once_sync_runs_its_function_once_across_jobs(app: App) -> None:
    calls: list[int] = []

    def charge_card() -> dict[str, str]:
        calls.append(threading.get_ident())
        return {"receipt": "r-1"}

    @app.job("charge")
    def charge(payload: Any, ctx: JobContext) -> list[Any]:
        first = ctx.once_sync("payment:42", charge_card)
        again = ctx.once_sync("payment:42", charge_card)
        return [first, again]

    jobs = [await app.enqueue("charge", {"n": n}) for n in range(2)]
    await drain(app)
    results = [await job.wait(timeout=60) for job in jobs]
    assert calls and len(calls) == 1
    assert calls[0] != threading.get_ident()  # ran in the handler's thread, not the loop's
    receipt = {"receipt": "r-1"}
    assert results == [[[receipt, False], [receipt, True]], [[receipt, True], [receipt, True]]]


async def test_the_wrong_once_for_the_handler_kind_is_refused_by_name(app: App) -> None:
    @app.job("sync-once", max_attempts=1)
    def sync_once(payload: Any, ctx: JobContext) -> None:
        ctx.once("k", lambda: 1)

    @app.job("async-once-sync", max_attempts=1)
    async def async_once_sync(payload: Any, ctx: JobContext) -> None:
        ctx.once_sync("k", lambda: 1)

    jobs = {name: await app.enqueue(name) for name in ("sync-once", "async-once-sync")}
    await drain(app)
    sync_error = (await job_of(app, jobs["sync-once"].id)).error or ""
    assert "in a plain def handler call ctx.once_sync" in sync_error
    async_error = (await job_of(app, jobs["async-once-sync"].id)).error or ""
    assert "in an async handler await ctx.once()" in async_error
