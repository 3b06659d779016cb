"""A handler's error is stored clipped: its start and its end, and how much was cut.

An exception may echo a whole HTTP answer or SQL statement (the bug reports of
cakephp-queue, datajoint and Harmony: a failure too large for its column left the job
unrecorded). taskflare's columns take any length, so nothing failed; but each attempt kept
its own megabytes in the job row, its history, every jobs list and the log line. Errors
are now kept to `MAX_ERROR_CHARS` characters and tracebacks to `MAX_TRACEBACK_CHARS`,
as their first and last halves around a line saying how many characters were cut.
"""

from __future__ import annotations

from typing import Any

from helpers import get
from job_helpers import job_of
from taskflare import App, JobStatus, MessageBatch
from taskflare.testing import drain
from taskflare.text import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS

HUGE = 1_000_000


def _bounded(text: str | None, limit: int) -> str:
    assert text is not None
    assert len(text) < limit + 100, f"{len(text):,} characters stored"
    assert "characters cut ...]" in text
    return text


async def test_a_huge_job_error_is_stored_clipped_with_its_start_and_end(app: App) -> None:
    @app.job("echoes", max_attempts=2)
    async def echoes(payload: Any) -> None:
        raise RuntimeError("head " + "x" * HUGE + " tail")

    job = await app.enqueue("echoes")
    await drain(app)
    stored = await job_of(app, job.id)
    assert stored.status is JobStatus.PENDING  # retried: the first attempt failed
    error = _bounded(stored.error, MAX_ERROR_CHARS)
    assert error.startswith("RuntimeError: head x") and error.endswith("x tail")
    [attempt] = stored.history
    assert attempt.error == error
    trace = _bounded(attempt.traceback, MAX_TRACEBACK_CHARS)
    assert "Traceback (most recent call last)" in trace and trace.rstrip().endswith("x tail")
    assert len(stored.to_dict()["error"]) < MAX_ERROR_CHARS + 100


async def test_a_huge_consumer_error_is_stored_clipped(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=0)

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        raise ValueError("y" * HUGE + " the end")

    message_id = await q.send({"n": 1})
    await drain(app)
    record = await get(app, message_id)
    assert record is not None and record.state == "failed"
    error = _bounded(record.last_error, MAX_ERROR_CHARS)
    assert error.rstrip().endswith("yyy the end")
    assert "ValueError" in error


async def test_a_short_error_is_stored_whole(app: App) -> None:
    @app.job("short", max_attempts=1)
    async def short(payload: Any) -> None:
        raise RuntimeError("e" * (MAX_ERROR_CHARS - 100))

    job = await app.enqueue("short")
    await drain(app)
    stored = await job_of(app, job.id)
    assert stored.error == "RuntimeError: " + "e" * (MAX_ERROR_CHARS - 100)
