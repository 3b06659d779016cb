"""Jobs (issue 4, point 10): one JSON log line per job event, never the payload."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from helpers import running_worker
from job_helpers import wait_for_status
from taskflare import App, Backoff, JobContext, JobStatus, PermanentError
from taskflare.testing import drain

SECRET = "sk_live_51SECRETcard4242"
FIELDS = {"event", "job_id", "type", "queue", "attempt", "correlation_id"}


def job_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "taskflare.jobs"]


def events_of(lines: list[dict[str, Any]], job_id: str) -> list[str]:
    return [line["event"] for line in lines if line["job_id"] == job_id]


async def test_each_job_event_is_one_json_line_with_its_fields(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskflare.jobs")

    @app.job("charge", max_attempts=3, retry=Backoff(base=0, cap=0))
    async def charge(payload: dict[str, Any], ctx: JobContext) -> str:
        if payload["mode"] == "flaky" and ctx.attempt == 1:
            raise RuntimeError("gateway down")
        if payload["mode"] == "fail":
            raise PermanentError("card declined")
        return "ok"

    ok = await app.enqueue("charge", {"mode": "ok", "card": SECRET}, correlation_id="req-ok")
    flaky = await app.enqueue("charge", {"mode": "flaky", "card": SECRET})
    fail = await app.enqueue("charge", {"mode": "fail", "card": SECRET})
    await drain(app)

    lines = job_lines(caplog)
    assert events_of(lines, ok.id) == ["enqueued", "started", "completed"]
    assert events_of(lines, flaky.id) == [
        "enqueued",
        "started",
        "retried",
        "started",
        "completed",
    ]
    assert events_of(lines, fail.id) == ["enqueued", "started", "failed"]
    for line in lines:
        assert set(line) >= FIELDS, line
        assert line["type"] == "charge" and line["queue"] == "default"
        if line["event"] in ("completed", "retried", "failed"):
            assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    ok_lines = [line for line in lines if line["job_id"] == ok.id]
    assert {line["correlation_id"] for line in ok_lines} == {"req-ok"}
    assert [line["attempt"] for line in ok_lines] == [0, 1, 1]
    retried = next(line for line in lines if line["event"] == "retried")
    assert retried["error"] == "RuntimeError: gateway down" and retried["attempt"] == 1
    failed = next(line for line in lines if line["event"] == "failed")
    assert failed["error"] == "PermanentError: card declined" and failed["permanent"] is True
    records = [r for r in caplog.records if r.name == "taskflare.jobs"]
    assert {r.levelname for r in records if "retried" in r.getMessage()} == {"WARNING"}
    assert {r.levelname for r in records if '"completed"' in r.getMessage()} == {"DEBUG"}


async def test_at_info_a_busy_worker_logs_nothing_per_successful_job(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskflare.jobs")

    @app.job("ok", max_attempts=1)
    async def ok(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise PermanentError("no")

    await app.enqueue_many("ok", [{} for _ in range(20)])
    bad = await app.enqueue("ok", {"fail": True})
    await drain(app)
    assert [(line["event"], line["job_id"]) for line in job_lines(caplog)] == [("failed", bad.id)]


async def test_cancel_events_are_logged_for_pending_and_running_jobs(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskflare.jobs")
    started = asyncio.Event()

    @app.job("long")
    async def long(payload: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    pending = await app.enqueue("long", delay_seconds=3600, correlation_id="c1")
    await app.cancel(pending.id)
    running = await app.enqueue("long")
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        await app.cancel(running.id)
        await wait_for_status(app, running.id, JobStatus.CANCELLED)

    lines = job_lines(caplog)
    assert events_of(lines, pending.id) == ["enqueued", "cancelled"]
    assert events_of(lines, running.id) == ["enqueued", "started", "cancelled"]
    pending_cancel = [x for x in lines if x["job_id"] == pending.id][-1]
    assert set(pending_cancel) >= FIELDS and pending_cancel["correlation_id"] == "c1"
    running_cancel = [x for x in lines if x["job_id"] == running.id][-1]
    assert set(running_cancel) >= FIELDS and running_cancel["duration_ms"] >= 0


async def test_payload_secrets_never_reach_any_log_record(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    @app.job("charge", max_attempts=2, retry=Backoff(base=0, cap=0))
    async def charge(payload: dict[str, Any], ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("try again")
        return "ok"

    job = await app.enqueue("charge", {"card": SECRET}, idempotency_key="order-1")
    await app.enqueue("charge", {"card": SECRET}, idempotency_key="order-1")
    await drain(app)
    await app.stats()
    await app.list_jobs()
    assert (await app.get_job(job.id)).payload == {"card": SECRET}  # type: ignore[union-attr]
    assert caplog.records
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


async def test_a_duplicate_enqueue_logs_nothing(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="taskflare.jobs")
    app.job("x")(lambda payload: None)
    await app.enqueue("x", idempotency_key="k")
    await app.enqueue("x", idempotency_key="k")
    assert [line["event"] for line in job_lines(caplog)] == ["enqueued"]
