"""`StopIteration` and `GeneratorExit` raised by user code fail its job or batch like any
error, instead of leaving it `processing` for ever.

A plain `def` handler's `next(iter([]))` (the commonest way to raise `StopIteration`)
reached asyncio from the worker thread, which cannot set it on a future: asyncio
logged a `TypeError`, the job stayed `processing`, and the worker could not even stop
(it waited for the job). A `GeneratorExit` the code raised (in a thread or in an async
handler) was taken for the runner's own coroutine being closed: it killed the job's
runner task, the job again stayed `processing` with no history. The same held for a
plain `def` consumer of a message queue.
"""

from __future__ import annotations

from typing import Any

from helpers import get, running_worker
from job_helpers import job_of, wait_for_status
from taskflare import App, JobStatus, MessageBatch
from taskflare.testing import drain


def _register(app: App) -> None:
    @app.job("empty-next", max_attempts=1)
    def empty_next(payload: Any) -> Any:
        return next(iter([]))

    @app.job("sync-exit", max_attempts=1)
    def sync_exit(payload: Any) -> None:
        raise GeneratorExit("thread")

    @app.job("async-exit", max_attempts=1)
    async def async_exit(payload: Any) -> None:
        raise GeneratorExit("loop")


ERRORS = {
    "empty-next": "StopIteration",
    "sync-exit": "GeneratorExit: thread",
    "async-exit": "GeneratorExit: loop",
}


async def test_drain_fails_jobs_raising_stopiteration_or_generatorexit(app: App) -> None:
    _register(app)
    jobs = {name: await app.enqueue(name) for name in ERRORS}
    await drain(app)
    for name, job in jobs.items():
        stored = await job_of(app, job.id)
        assert (stored.status, stored.error) == (JobStatus.FAILED, ERRORS[name]), name
    trace = (await job_of(app, jobs["empty-next"].id)).history[0].traceback or ""
    assert "return next(iter([]))" in trace


async def test_a_worker_fails_them_and_still_stops(app: App) -> None:
    _register(app)
    jobs = {name: await app.enqueue(name) for name in ERRORS}
    async with running_worker(app):  # its stop waited for ever on the stuck jobs
        for name, job in jobs.items():
            stored = await wait_for_status(app, job.id, JobStatus.FAILED)
            assert stored.error == ERRORS[name]


async def test_a_plain_consumer_raising_stopiteration_fails_its_batch(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=0)

    @q.consumer
    def consume(batch: MessageBatch[Any]) -> None:
        next(iter(batch.messages[1:]))

    message_id = await q.send({"n": 1})
    await drain(app)
    record = await get(app, message_id)
    assert record is not None and record.state == "failed"
    assert "StopIteration" in (record.last_error or "")
