"""Jobs (issue 4, point 1): the status lifecycle and every field a job shows, plain-def
handlers, the job `timeout=`, and `job.wait()`."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

import pytest

from helpers import running_worker, wait_until
from job_helpers import job_of, wait_for_status
from taskflare import (
    App,
    Backoff,
    JobCancelled,
    JobContext,
    JobFailed,
    JobStatus,
    PermanentError,
    WorkerConfig,
)
from taskflare.testing import drain


async def test_job_goes_pending_processing_completed_with_every_field(app: App) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    @app.job("report", max_attempts=4)
    async def report(payload: dict[str, int], ctx: JobContext) -> dict[str, int]:
        started.set()
        await ctx.progress(0.5, "half way")
        await gate.wait()
        return {"rows": payload["n"] * 2}

    job = await app.enqueue("report", {"n": 21}, correlation_id="req-1")
    assert job.status is JobStatus.PENDING
    assert (job.type, job.queue, job.payload) == ("report", "default", {"n": 21})
    assert (job.attempts, job.max_attempts, job.priority) == (0, 4, 0)
    assert job.started_at is None and job.completed_at is None
    assert job.result is None and job.progress is None and job.error is None
    assert job.history == () and job.duplicate is False
    assert job.correlation_id == "req-1"

    async with running_worker(app) as worker:
        await asyncio.wait_for(started.wait(), 10)

        async def progressed() -> Any:
            seen = await job_of(app, job.id)
            return seen if seen.progress == 0.5 else None

        running = await wait_until(progressed, what="progress 0.5")
        assert running.status is JobStatus.PROCESSING
        assert running.attempts == 1
        assert running.progress_note == "half way"
        assert running.started_at is not None and running.completed_at is None
        gate.set()
        assert await job.wait(timeout=60) == {"rows": 42}

    done = await job_of(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"rows": 42}
    assert done.attempts == 1 and done.max_attempts == 4
    assert done.progress == 1.0 and done.error is None
    assert done.started_at is not None and done.completed_at is not None
    assert done.created_at <= done.started_at <= done.completed_at
    [attempt] = done.history
    assert attempt.attempt == 1 and attempt.outcome == "completed"
    assert attempt.worker_id == worker.id
    assert attempt.error is None and attempt.traceback is None
    assert attempt.started_at is not None and attempt.finished_at is not None

    shape = done.to_dict()
    assert shape["status"] == "completed"
    assert shape["maxAttempts"] == 4 and shape["attempts"] == 1
    assert shape["result"] == {"rows": 42}
    assert shape["progress"] == 1.0 and shape["progressNote"] == "half way"
    assert shape["correlationId"] == "req-1"
    for key in ("createdAt", "startedAt", "completedAt"):
        assert shape[key].endswith("Z")
        datetime.fromisoformat(shape[key].replace("Z", "+00:00"))
    assert shape["history"][0]["workerId"] == worker.id


async def test_failed_attempt_history_keeps_error_traceback_and_worker(app: App) -> None:
    calls: list[int] = []

    @app.job("flaky", max_attempts=3, retry=Backoff(base=0, cap=0))
    async def flaky(payload: Any, ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("boom on the first try")
        return "ok"

    job = await app.enqueue("flaky")
    async with running_worker(app) as worker:
        assert await job.wait(timeout=60) == "ok"
    done = await job_of(app, job.id)
    assert calls == [1, 2]
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    first, second = done.history
    assert first.outcome == "retried"
    assert first.error == "ValueError: boom on the first try"
    assert first.traceback is not None
    assert "Traceback" in first.traceback and "boom on the first try" in first.traceback
    assert first.worker_id == worker.id and second.worker_id == worker.id
    assert second.outcome == "completed" and second.error is None
    assert first.finished_at is not None and second.started_at is not None
    assert first.finished_at <= second.started_at


async def test_job_that_runs_out_of_attempts_ends_failed_with_its_last_error(app: App) -> None:
    @app.job("doomed", max_attempts=2, retry=Backoff(base=0, cap=0))
    async def doomed(payload: Any, ctx: JobContext) -> None:
        raise RuntimeError(f"attempt {ctx.attempt} broke")

    job = await app.enqueue("doomed")
    await drain(app)
    failed = await job_of(app, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2 and failed.max_attempts == 2
    assert failed.error == "RuntimeError: attempt 2 broke"
    assert failed.completed_at is not None
    assert [a.outcome for a in failed.history] == ["retried", "failed"]
    assert [a.error for a in failed.history] == [
        "RuntimeError: attempt 1 broke",
        "RuntimeError: attempt 2 broke",
    ]


async def test_scheduled_job_is_pending_until_its_run_at(app: App) -> None:
    ran: list[Any] = []
    app.job("later")(ran.append)
    job = await app.enqueue("later", 1, delay_seconds=3600)
    assert job.status is JobStatus.PENDING
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(3600, abs=5)
    await drain(app)
    assert ran == [] and (await job_of(app, job.id)).status is JobStatus.PENDING


async def test_enqueue_options_override_the_job_type_defaults(app: App) -> None:
    @app.job("send", max_attempts=3, priority=1)
    async def send(payload: Any) -> None:
        return None

    job = await app.enqueue("send", {}, priority=7, max_attempts=9, correlation_id="c")
    assert (job.priority, job.max_attempts, job.correlation_id) == (7, 9, "c")
    plain = await app.enqueue("send", {})
    assert (plain.priority, plain.max_attempts) == (1, 3)


async def test_plain_def_handler_runs_in_a_thread_and_returns_its_result(app: App) -> None:
    threads: list[str] = []

    @app.job("add")
    def add(payload: dict[str, int]) -> int:
        threads.append(threading.current_thread().name)
        return payload["a"] + payload["b"]

    job = await app.enqueue("add", {"a": 2, "b": 3})
    await drain(app)
    done = await job_of(app, job.id)
    assert done.status is JobStatus.COMPLETED and done.result == 5
    assert threads and threads[0] != threading.main_thread().name


async def test_plain_def_handler_can_take_the_context(app: App) -> None:
    @app.job("who")
    def who(payload: Any, ctx: JobContext) -> list[Any]:
        return [ctx.job_id, ctx.attempt, ctx.correlation_id]

    job = await app.enqueue("who", None, correlation_id="corr")
    await drain(app)
    assert (await job_of(app, job.id)).result == [job.id, 1, "corr"]


async def test_job_timeout_fails_the_attempt_with_a_clear_error(app: App) -> None:
    @app.job("stuck", timeout=0.2, max_attempts=1)
    async def stuck(payload: Any) -> None:
        await asyncio.Event().wait()

    job = await app.enqueue("stuck")
    await drain(app)
    failed = await job_of(app, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error == "TimeoutError: the job ran longer than its timeout of 0.2s"
    assert failed.history[0].outcome == "failed"


async def test_job_with_a_result_that_is_not_json_fails_permanently(app: App) -> None:
    @app.job("odd", max_attempts=3)
    async def odd(payload: Any) -> object:
        return object()

    job = await app.enqueue("odd")
    await drain(app)
    failed = await job_of(app, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and "result is not JSON" in failed.error


async def test_wait_returns_the_result(app: App) -> None:
    app.job("echo")(lambda payload: payload)
    job = await app.enqueue("echo", {"x": [1, 2]})
    async with running_worker(app, WorkerConfig(concurrency=1)):
        assert await job.wait(timeout=60) == {"x": [1, 2]}


async def test_wait_raises_job_failed_with_the_job(app: App) -> None:
    @app.job("bad")
    async def bad(payload: Any) -> None:
        raise PermanentError("card declined")

    job = await app.enqueue("bad")
    await drain(app)
    with pytest.raises(JobFailed, match="card declined") as info:
        await job.wait(timeout=5)
    assert getattr(info.value.job, "status", None) is JobStatus.FAILED


async def test_wait_raises_job_cancelled(app: App) -> None:
    app.job("never")(lambda payload: None)
    job = await app.enqueue("never")
    await app.cancel(job.id)
    with pytest.raises(JobCancelled):
        await job.wait(timeout=5)


async def test_wait_raises_timeout_error_when_the_job_does_not_finish(app: App) -> None:
    app.job("idle")(lambda payload: None)
    job = await app.enqueue("idle")
    with pytest.raises(TimeoutError):
        await job.wait(timeout=0.2)
    assert (await job_of(app, job.id)).status is JobStatus.PENDING


async def test_wait_for_status_sees_a_worker_finish_a_job(app: App) -> None:
    app.job("quick")(lambda payload: "done")
    job = await app.enqueue("quick")
    async with running_worker(app):
        done = await wait_for_status(app, job.id, JobStatus.COMPLETED)
    assert done.result == "done"
