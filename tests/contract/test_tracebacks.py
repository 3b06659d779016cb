"""Tracebacks recorded for a failed handler start at the user's code, not at taskflare's
runner, asyncio or the thread pool."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import get
from taskflare import App, JobStatus, MessageBatch
from taskflare.testing import drain


def first_frame(trace: str) -> str:
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):", trace
    return lines[1]


def nested(payload: Any) -> None:
    raise ValueError(f"bad payload {payload}")


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_failed_job_traceback_starts_in_the_handler(app: App, kind: str) -> None:
    if kind == "async":

        @app.job("check", max_attempts=1)
        async def check(payload: Any) -> None:
            nested(payload)

    else:

        @app.job("check", max_attempts=1)
        def check_sync(payload: Any) -> None:
            nested(payload)

    job = await app.enqueue("check", 7)
    await drain(app)
    done = await app.get_job(job.id)
    assert done is not None and done.status is JobStatus.FAILED
    trace = done.history[0].traceback
    assert trace is not None
    assert __file__ in first_frame(trace), trace
    assert "taskflare" not in first_frame(trace).replace(__file__, "")
    assert "nested" in trace and "ValueError: bad payload 7" in trace


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_failed_batch_error_starts_in_the_consumer(app: App, kind: str) -> None:
    q = app.queue("q", max_retries=0, max_batch_timeout=0)
    if kind == "async":

        @q.consumer
        async def consume(batch: MessageBatch[Any]) -> None:
            nested(batch.messages[0].body)

    else:

        @q.consumer
        def consume_sync(batch: MessageBatch[Any]) -> None:
            nested(batch.messages[0].body)

    message_id = await q.send(3)
    await drain(app)
    record = await get(app, message_id)
    assert record is not None and record.state == "failed"
    assert __file__ in first_frame(record.last_error or ""), record.last_error
