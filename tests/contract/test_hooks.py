"""Hooks around execution: middleware wraps every handler call (jobs and message batches);
lifecycle listeners hear enqueued, started, succeeded, retried, failed, dead_lettered and
cancelled once each is stored; no hook, however broken, loses a job or a message."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

import pytest

from helpers import running_worker, wait_until
from job_helpers import wait_for_status
from taskflare import (
    App,
    Backoff,
    CallNext,
    HandlerCall,
    InvalidHook,
    JobContext,
    JobStatus,
    LifecycleEvent,
    MessageBatch,
    PermanentError,
)
from taskflare.testing import drain

SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("session", default=None)


async def test_middleware_wraps_every_job_call_and_sees_what_runs(app: App) -> None:
    calls: list[tuple[str, str | None, int, Any]] = []
    seen_inside: list[str | None] = []

    @app.middleware
    async def session_per_job(call: HandlerCall, call_next: CallNext) -> Any:
        token = SESSION.set(f"session-for-{call.job_id}")
        try:
            calls.append((call.kind, call.type, call.attempt, call.payload))
            result = await call_next()
            return f"{result}+wrapped"
        finally:
            SESSION.reset(token)

    @app.job("greet")
    async def greet(payload: dict[str, Any]) -> str:
        seen_inside.append(SESSION.get())
        return f"hi {payload['name']}"

    job = await app.enqueue("greet", {"name": "ada"})
    await drain(app)
    assert await job.wait(timeout=60) == "hi ada+wrapped"
    assert calls == [("job", "greet", 1, {"name": "ada"})]
    assert seen_inside == [f"session-for-{job.id}"]


async def test_middleware_runs_in_order_the_first_added_outermost(app: App) -> None:
    order: list[str] = []

    def named(name: str) -> Any:
        async def mw(call: HandlerCall, call_next: CallNext) -> Any:
            order.append(f"{name} in")
            result = await call_next()
            order.append(f"{name} out")
            return result

        return mw

    app.middleware(named("outer"))
    app.middleware(named("inner"))
    app.job("x")(lambda payload: order.append("handler"))
    await app.enqueue("x")
    await drain(app)
    assert order == ["outer in", "inner in", "handler", "inner out", "outer out"]


async def test_a_middleware_that_raises_is_the_handler_raising_nothing_is_lost(
    app: App,
) -> None:
    ran: list[int] = []

    @app.middleware
    async def flaky(call: HandlerCall, call_next: CallNext) -> Any:
        if call.attempt == 1:
            raise RuntimeError("the session pool is down")
        return await call_next()

    @app.job("work", max_attempts=2, retry=Backoff(base=0, cap=0))
    async def work(payload: Any) -> str:
        ran.append(1)
        return "done"

    job = await app.enqueue("work")
    await drain(app)
    assert await job.wait(timeout=60) == "done"
    stored = await app.get_job(job.id)
    assert stored is not None
    assert stored.history[0].error == "RuntimeError: the session pool is down"
    assert ran == [1]


async def test_middleware_wraps_message_batches_too(app: App) -> None:
    q = app.queue("q", max_batch_size=10, max_batch_timeout=0)
    seen: list[tuple[str, str, tuple[str, ...], int]] = []

    @app.middleware
    async def record(call: HandlerCall, call_next: CallNext) -> Any:
        assert isinstance(call.payload, MessageBatch)
        seen.append((call.kind, call.queue, call.message_ids, len(call.payload)))
        return await call_next()

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        pass

    ids = await q.send_batch([{"body": i} for i in range(3)])
    await drain(app)
    assert seen == [("batch", "q", tuple(ids), 3)]


async def test_job_lifecycle_events_follow_what_was_stored(app: App) -> None:
    events: list[tuple[str, str, int, str | None]] = []

    def listen(event: LifecycleEvent) -> None:
        events.append((event.name, event.id, event.attempt, event.error))

    for name in ("enqueued", "started", "succeeded", "retried", "failed", "dead_lettered"):
        app.on(name)(listen)

    @app.job("charge", max_attempts=2, retry=Backoff(base=0, cap=0))
    async def charge(payload: dict[str, Any], ctx: JobContext) -> str:
        if payload["mode"] == "fail":
            raise PermanentError("card declined")
        if payload["mode"] == "flaky" and ctx.attempt == 1:
            raise RuntimeError("gateway down")
        return "ok"

    ok = await app.enqueue("charge", {"mode": "ok"})
    bad = await app.enqueue("charge", {"mode": "fail"})
    await drain(app)
    assert [e[0] for e in events if e[1] == ok.id] == ["enqueued", "started", "succeeded"]
    assert [e[0] for e in events if e[1] == bad.id] == ["enqueued", "started", "failed"]
    failed = next(e for e in events if e[1] == bad.id and e[0] == "failed")
    assert failed[2] == 1 and failed[3] == "PermanentError: card declined"

    flaky = await app.enqueue("charge", {"mode": "flaky"})
    await drain(app)
    assert [e[0] for e in events if e[1] == flaky.id] == [
        "enqueued",
        "started",
        "retried",
        "started",
        "succeeded",
    ]
    retried = next(e for e in events if e[1] == flaky.id and e[0] == "retried")
    assert retried[3] == "RuntimeError: gateway down"


async def test_message_events_include_the_dead_letter(app: App) -> None:
    q = app.queue("orders", max_batch_timeout=0, max_retries=1, dead_letter_queue="orders-dlq")
    events: list[LifecycleEvent] = []
    for name in ("enqueued", "started", "succeeded", "retried", "failed", "dead_lettered"):
        app.on(name)(events.append)

    @q.consumer
    async def consume(batch: MessageBatch[dict[str, Any]]) -> None:
        for message in batch.messages:
            if message.body.get("bad"):
                message.retry()
            else:
                message.ack()

    good = await q.send({"bad": False})
    bad = await q.send({"bad": True})
    await drain(app, ["orders"])
    assert [e.name for e in events if e.id == good] == ["enqueued", "started", "succeeded"]
    assert [e.name for e in events if e.id == bad] == [
        "enqueued",
        "started",
        "retried",
        "started",
        "failed",
        "dead_lettered",
    ]
    dead = next(e for e in events if e.name == "dead_lettered")
    assert (dead.kind, dead.queue, dead.dead_letter_queue) == ("message", "orders", "orders-dlq")


async def test_a_cancelled_running_job_tells_its_listeners(app: App) -> None:
    started = asyncio.Event()
    cancelled: list[str] = []
    app.on("cancelled")(lambda event: cancelled.append(event.id))

    @app.job("long")
    async def long(payload: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    pending = await app.enqueue("long", delay_seconds=3600)
    await app.cancel(pending.id)  # a pending job: the event comes from the call
    assert cancelled == [pending.id]
    cancelled.clear()
    job = await app.enqueue("long")
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        await app.cancel(job.id)
        await wait_for_status(app, job.id, JobStatus.CANCELLED)
        await wait_until(lambda: cancelled, what="the cancelled event")
    assert cancelled == [job.id]


async def test_broken_listeners_are_logged_and_the_work_goes_on(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="taskflare.hooks")
    heard: list[str] = []

    @app.on("succeeded")
    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("metrics backend down")

    @app.on("succeeded")
    async def slow_but_fine(event: LifecycleEvent) -> None:
        await asyncio.sleep(0)
        heard.append(event.id)

    @app.on("succeeded")
    async def broken_async(event: LifecycleEvent) -> None:
        raise RuntimeError("async listener down")

    app.job("x")(lambda payload: "done")
    job = await app.enqueue("x")
    await drain(app)
    assert await job.wait(timeout=60) == "done"
    assert heard == [job.id]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'succeeded' listener raised" in m for m in messages)
    assert any("async listener down" in m for m in messages)


def test_hooks_are_checked_when_they_are_added(tmp_path: Any) -> None:
    app = App(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(InvalidHook, match="no lifecycle event 'finished'"):
        app.on("finished")
    with pytest.raises(InvalidHook, match="async function"):
        app.middleware(lambda call, call_next: call_next())  # type: ignore[arg-type,return-value]
