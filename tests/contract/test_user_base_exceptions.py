"""`SystemExit` and a `CancelledError` of the handler's own are that code's failure, in
the in-process runner (`taskflare.testing.drain`) as in a worker: recorded with a
truthful error, never raised out of the event loop nor read as a shutdown. (Real worker
processes, `KeyboardInterrupt` and signals: tests/integration/test_user_base_exceptions.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import wait_until
from job_helpers import job_of
from taskflare import App, Backoff, JobStatus, MessageBatch
from taskflare.backends.base import MessageGetParams
from taskflare.testing import drain

NOW = Backoff(base=0, jitter=False)
OWN_CANCEL = (
    "CancelledError: raised by the code itself (no cancel was requested; "
    "the worker was not stopping)"
)


async def test_drain_fails_jobs_raising_systemexit_or_their_own_cancellederror(app: App) -> None:
    @app.job("exit-sync", max_attempts=2, retry=NOW)
    def exit_sync(payload: Any) -> None:  # runs in a thread
        raise SystemExit(2)

    @app.job("exit-async", max_attempts=1)
    async def exit_async(payload: Any) -> None:
        raise SystemExit("usage: tool [-h]")

    @app.job("own-cancel", max_attempts=1)
    async def own_cancel(payload: Any) -> None:
        raise asyncio.CancelledError()

    @app.job("fine")
    async def fine(payload: Any) -> str:
        return "ok"

    jobs = {name: await app.enqueue(name) for name in ("exit-sync", "exit-async", "own-cancel")}
    ok = await app.enqueue("fine")
    await drain(app)
    errors = {
        "exit-sync": "SystemExit: 2",
        "exit-async": "SystemExit: usage: tool [-h]",
        "own-cancel": OWN_CANCEL,
    }
    for name, job in jobs.items():
        stored = await job_of(app, job.id)
        assert stored.status is JobStatus.FAILED, name
        assert stored.error == errors[name]
    history = (await job_of(app, jobs["exit-sync"].id)).history
    assert [a.outcome for a in history] == ["retried", "failed"]
    assert history[-1].traceback is not None and "raise SystemExit(2)" in history[-1].traceback
    assert (await job_of(app, ok.id)).status is JobStatus.COMPLETED


async def test_drain_retries_a_batch_whose_consumer_raises_systemexit(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=1, retry_delay=0)

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        raise SystemExit(0)

    message_id = await q.send({"n": 1})
    result = await drain(app)
    assert (result.batches, result.retried, result.failed) == (2, 1, 1)
    record = await (await app.backend()).message_get(MessageGetParams(message_id))
    assert record is not None and record.state == "failed"
    assert "SystemExit: 0" in (record.last_error or "")


async def test_a_wait_until_task_raising_systemexit_is_logged_not_raised(app: App) -> None:
    async def exits() -> None:
        raise SystemExit(4)

    app.wait_until(exits())
    await wait_until(lambda: app.background.pending == 0, what="the task to end")
