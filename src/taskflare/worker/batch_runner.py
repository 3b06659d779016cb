"""Running one message batch: decode → run the consumer with a timeout → decide each message.

The steps are plain functions over plain data: nothing here knows SQL. Each message's
fate is decided by the outcome policy from the handler's result and the consumer's
explicit `ack()`/`retry()` calls; the result is a `Settlement` for the outcome buffer.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import operator
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from orjson import loads

from ..backends.base import (
    ACKED,
    AttemptRecord,
    CancelOutcome,
    ClaimedMessage,
    CompleteOutcome,
    FailOutcome,
    LeaseRef,
    RetryOutcome,
    Settlement,
    SettleResult,
    State,
)
from ..encoding import JSON, decode_body
from ..messages import Message, MessageBatch, resolve_outcome
from ..policy import (
    Decision,
    Delivery,
    Failed,
    Outcome,
    RetryRequested,
    Succeeded,
    WorkerShutdown,
    acked,
)
from ..policy import decide as decide_one
from ..raised import call_carrying, describe, is_stop, raised_by
from ..registry import QueueSpec
from ..registry.hooks import HandlerCall, Hooks, LifecycleEvent
from ..text import MAX_TRACEBACK_CHARS, clean_text, clip
from .early_acks import EarlyAcks
from .settle import OutcomeBuffer, merge
from .tracebacks import user_traceback

log = logging.getLogger("taskflare.worker")


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What happened to one batch: the decisions, and how long the consumer ran [s].
    `early`: the explicit acks already written while the consumer ran (not in
    `settlement`)."""

    settlement: Settlement
    duration: float
    error: str | None
    early: EarlyAcks | None = None


class BatchShutdown(asyncio.CancelledError):
    """A batch cancelled at shutdown, carrying the outcomes to record before exiting."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__()
        self.report = report


def decode_batch(
    queue: str, claimed: Sequence[ClaimedMessage]
) -> tuple[MessageBatch[Any], list[tuple[ClaimedMessage, str]]]:
    """Build the `MessageBatch`; messages whose body cannot be decoded are set aside."""
    messages: list[Message[Any]] = []
    undecodable: list[tuple[ClaimedMessage, str]] = []
    append = messages.append
    for item in claimed:
        content_type = item.content_type
        try:
            # JSON, the common case, without the general decoder's call.
            raw = item.body
            body = loads(raw) if content_type == JSON else decode_body(raw, content_type)
        except Exception as exc:
            undecodable.append((item, f"body cannot be decoded as {content_type}: {exc!r}"))
            continue
        # created_at is read as a datetime only if the consumer asks.
        append(Message(item.id, item.created_at, body, item.attempts, content_type))
    return MessageBatch(queue, messages), undecodable


async def run_handler(
    spec: QueueSpec, batch: MessageBatch[Any], pool: Executor, hooks: Hooks | None = None
) -> str | None:
    """Run the consumer on `batch` (inside the app's middleware); return None on success
    or the error text on failure."""
    consumer = spec.consumer
    assert consumer is not None
    own = asyncio.current_task()

    async def call() -> None:
        if consumer.is_async:
            await consumer.handler(batch)  # type: ignore[misc]
        else:
            # In a copy of this task's context, as for sync job handlers.
            run = contextvars.copy_context().run
            await asyncio.get_running_loop().run_in_executor(
                pool, run, call_carrying, consumer.handler, batch
            )

    try:
        async with asyncio.timeout(consumer.timeout) as scope:
            if hooks is not None and hooks.middleware:
                attempt = max(m.attempts for m in batch.messages)
                ids = tuple(m.id for m in batch.messages)
                await hooks.call(
                    HandlerCall("batch", spec.name, attempt, batch, message_ids=ids), call
                )
            else:
                await call()
    except TimeoutError as timeout:
        if not scope.expired():
            return user_traceback(timeout)
    except BaseException as raised:
        exc = raised_by(raised)  # what a plain def consumer's thread raised, if carried
        # Anything the consumer raised fails its batch, `SystemExit`, `KeyboardInterrupt`
        # and a `CancelledError` of its own included; only this task's cancellation (the
        # worker's shutdown) propagates.
        if is_stop(exc, own):
            raise
        if scope.expired():  # it swallowed its timeout's cancellation, then raised
            return _timed_out(spec.name, consumer.timeout)
        trace = user_traceback(exc)
        if isinstance(exc, asyncio.CancelledError):
            trace += describe(exc) + "\n"
        trace = clip(trace, MAX_TRACEBACK_CHARS)  # the log line too
        log.error("consumer of %r raised\n%s", spec.name, trace.rstrip())
        return trace
    else:
        # A handler that swallowed its cancellation still ran past its timeout.
        if not scope.expired():
            return None
    return _timed_out(spec.name, consumer.timeout)


def _timed_out(queue: str, seconds: float) -> str:
    log.warning(
        "consumer of %r timed out after %ss; undecided messages will be retried", queue, seconds
    )
    return f"consumer timed out after {seconds:g} seconds"


def outcome_of(
    message: Message[Any],
    batch: MessageBatch[Any],
    error: str | None,
    retry_delay: float,
    *,
    shutdown: bool = False,
) -> Outcome:
    """The outcome of one message, from the explicit calls first (Cloudflare's precedence),
    then from whether the consumer raised (or the worker shut down under it)."""
    delay = resolve_outcome(
        message, handler_failed=error is not None, batch=batch, retry_delay=retry_delay
    )
    if delay is None:
        return Succeeded()
    if message.decision is not None:
        return RetryRequested(delay)
    if shutdown:
        return WorkerShutdown()
    return Failed(error or "the consumer failed", delay_seconds=delay)


def settle_batch(
    spec: QueueSpec,
    batch: MessageBatch[Any],
    claimed: Sequence[ClaimedMessage],
    error: str | None,
    undecodable: Sequence[tuple[ClaimedMessage, str]] = (),
    *,
    shutdown: bool = False,
    skip: Collection[str] = (),
) -> Settlement:
    """Every message's decision, as one settlement; the messages in `skip` (acks already
    written) are left out."""
    config = spec.config

    def delivery(item: ClaimedMessage) -> Delivery:
        return Delivery(
            item.id, item.lease_id, item.attempts, config.max_attempts, config.dead_letter_queue
        )

    messages = batch.messages
    if skip:
        messages = [m for m in messages if m.id not in skip]
        claimed = [c for c in claimed if c.id not in skip]
    unreadable = [
        decide_one(delivery(item), Failed(why, permanent=True)) for item, why in undecodable
    ]
    if error is None and not shutdown and _all_acked(messages):
        # The common case, every message acked: one policy call for the whole batch.
        if not undecodable:  # then the messages are the claimed ones, in order
            return acked([LeaseRef(c.id, c.lease_id) for c in claimed])
        leases = {c.id: c.lease_id for c in claimed}
        ok = acked([LeaseRef(m.id, leases[m.id]) for m in messages])
        return merge([ok, as_settlement(unreadable)])
    by_id = {c.id: c for c in claimed}
    decisions = [
        decide_one(
            delivery(by_id[m.id]),
            outcome_of(m, batch, error, config.retry_delay, shutdown=shutdown),
        )
        for m in messages
    ]
    return as_settlement(decisions + unreadable)


_DECISION = operator.attrgetter("decision")


def _all_acked(messages: Sequence[Message[Any]]) -> bool:
    """Whether no message was explicitly retried (most often none was decided at all)."""
    decisions = list(map(_DECISION, messages))
    if decisions.count(None) == len(decisions):
        return True
    return all(d is None or d.ack for d in decisions)


def as_settlement(
    decisions: Sequence[Decision], attempts: Sequence[AttemptRecord] = ()
) -> Settlement:
    """Group decisions by kind of outcome (with the attempt rows of jobs)."""
    groups: dict[type, list[Any]] = {
        LeaseRef: [],
        RetryOutcome: [],
        FailOutcome: [],
        CompleteOutcome: [],
        CancelOutcome: [],
    }
    for decision in decisions:
        groups[type(decision.outcome)].append(decision.outcome)
    return Settlement(
        acks=groups[LeaseRef],
        retries=groups[RetryOutcome],
        fails=groups[FailOutcome],
        completes=groups[CompleteOutcome],
        cancels=groups[CancelOutcome],
        attempts=attempts,
    )


async def execute_batch(
    spec: QueueSpec,
    claimed: Sequence[ClaimedMessage],
    pool: Executor,
    hooks: Hooks | None = None,
    buffer: OutcomeBuffer | None = None,
) -> BatchReport:
    """Decode, run and decide one claimed batch. Cancelled (past the shutdown grace
    period): raises `BatchShutdown` carrying the outcomes to record. With tracing on,
    inside a consumer span linked to the messages' producers. With `buffer`, the
    consumer's explicit acks are written through it as they are made (`EarlyAcks`);
    `record_batch` stores the rest."""
    tracing = None if hooks is None else hooks.tracing
    if tracing is None:
        return await _execute_batch(spec, claimed, pool, hooks, buffer)
    with tracing.process("message", spec.name, claimed, batch=True) as span:
        report = await _execute_batch(spec, claimed, pool, hooks, buffer)
        s = report.settlement
        if report.error is not None:
            lines = report.error.strip().splitlines() or ["the consumer failed"]
            span.settled("failed", lines[-1], report.error)
        else:
            span.settled("retried" if s.retries or s.fails else "acked", None)
        return report


async def _execute_batch(
    spec: QueueSpec,
    claimed: Sequence[ClaimedMessage],
    pool: Executor,
    hooks: Hooks | None,
    buffer: OutcomeBuffer | None,
) -> BatchReport:
    started = time.perf_counter()
    batch, undecodable = decode_batch(spec.name, claimed)
    if hooks is not None and hooks.wants("started"):
        hooks.emit_all([_event("started", spec.name, c) for c in claimed])
    early = EarlyAcks(buffer, claimed) if buffer is not None and batch.messages else None
    if early is not None:
        early.watch(batch.messages)
    error: str | None = None
    try:
        if batch.messages:
            error = await run_handler(spec, batch, pool, hooks)
    except asyncio.CancelledError:
        skip = _stop_watching(early, batch)
        settlement = settle_batch(
            spec, batch, claimed, "shutdown", undecodable, shutdown=True, skip=skip
        )
        report = BatchReport(settlement, time.perf_counter() - started, None, early)
        raise BatchShutdown(report) from None
    skip = _stop_watching(early, batch)
    error = None if error is None else clean_text(error, MAX_TRACEBACK_CHARS)
    settlement = settle_batch(spec, batch, claimed, error, undecodable, skip=skip)
    return BatchReport(settlement, time.perf_counter() - started, error, early)


def _stop_watching(early: EarlyAcks | None, batch: MessageBatch[Any]) -> Collection[str]:
    """The ids acked early; later `ack()` calls (the consumer kept a message) are not
    written."""
    if early is None:
        return ()
    for message in batch.messages:
        message._on_ack = None
    early.flush()
    return early.ids


async def record_batch(buffer: OutcomeBuffer, report: BatchReport) -> SettleResult:
    """Store `report`'s settlement; what it and the early acks stored."""
    result = await buffer.settle(report.settlement)
    early = report.early
    if early is None or not early.ids:
        return result
    stored = await early.results()
    return SettleResult({**stored.states, **result.states})


_MESSAGE_EVENTS = {ACKED: "succeeded", State.READY: "retried", State.FAILED: "failed"}


def _event(name: str, queue: str, item: ClaimedMessage, **more: Any) -> LifecycleEvent:
    return LifecycleEvent(name, "message", queue, item.id, item.attempts, **more)


def message_outcomes(
    hooks: Hooks,
    queue: str,
    claimed: Sequence[ClaimedMessage],
    report: BatchReport,
    result: SettleResult,
) -> list[LifecycleEvent]:
    """The lifecycle events of a settled batch's messages, from what was stored."""
    fails = {f.id: f for f in report.settlement.fails}
    retries = {r.id: r for r in report.settlement.retries}
    events = []
    for item in claimed:
        name = _MESSAGE_EVENTS.get(result.states.get(item.id) or "")
        if name is None:
            continue  # its lease had passed to another worker
        fail, retry = fails.get(item.id), retries.get(item.id)
        error = fail.error if fail else retry.error if retry else None
        if hooks.wants(name):
            delay = retry.delay_seconds if retry else None
            took = report.duration
            event = _event(name, queue, item, error=error, delay_seconds=delay, duration=took)
            events.append(event)
        if fail is not None and fail.dead_letter_queue and hooks.wants("dead_lettered"):
            events.append(
                _event(
                    "dead_lettered",
                    queue,
                    item,
                    error=error,
                    dead_letter_queue=fail.dead_letter_queue,
                    duration=report.duration,
                )
            )
    return events
