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
from collections.abc import Callable, Collection, Sequence
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
    SHUTDOWN_ERROR,
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
from ..raised import call_carrying, describe, ignored_cancel, is_stop, raised_by
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


# How long a handler may take to stop once cancelled (its timeout, a requested job
# cancel, the worker's shutdown) before the worker gives up on it [s].
DEFAULT_CANCEL_GRACE = 5.0


class ConsumerAbandoned(Exception):
    """The consumer of a batch the worker gave up on has ended at last (its outcome was
    recorded without it; there is nothing more to record)."""


class BatchWatch:
    """One running batch, as the worker may give up on its consumer: asyncio cannot kill
    a coroutine, so a consumer that ignores its cancellation (past its `timeout`, at the
    worker's shutdown) is given up on `cancel_grace` seconds later: its batch is decided
    without it (timed out, or cut off by the shutdown), the report handed to
    `given_up`, and the consumer runs on, detached, its later acks unwritten;
    `execute_batch` raises `ConsumerAbandoned` when (if ever) it ends."""

    def __init__(self, cancel_grace: float, given_up: Callable[[BatchReport], None]) -> None:
        self.cancel_grace = cancel_grace
        self.abandoned = False
        self._given_up = given_up
        self._queue = ""
        self._decide: Callable[[str | None, WorkerShutdown | None], BatchReport] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def _running(
        self,
        queue: str,
        timeout: float,
        decide: Callable[[str | None, WorkerShutdown | None], BatchReport],
    ) -> None:
        self._queue = queue
        self._decide = decide
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(timeout + self.cancel_grace, self._overdue, timeout)

    def _ended(self) -> None:
        self._decide = None
        if self._timer is not None:
            self._timer.cancel()

    def _overdue(self, timeout: float) -> None:
        more = ignored_cancel(self.cancel_grace, "the consumer")
        self._give_up("its timeout", _timed_out(self._queue, timeout, more), None)

    def give_up(self) -> bool:
        """Give up on the consumer at the worker's shutdown (the cancel it got
        `cancel_grace` seconds ago is ignored); False if no consumer runs."""
        more = ignored_cancel(self.cancel_grace, "the consumer")
        return self._give_up("the shutdown", None, WorkerShutdown(f"{SHUTDOWN_ERROR}; {more}"))

    def _give_up(self, why: str, error: str | None, shutdown: WorkerShutdown | None) -> bool:
        decide = self._decide
        if decide is None or self.abandoned:
            return False
        self.abandoned = True
        self._ended()
        log.warning(
            "consumer of %r ignored %s for %gs: giving up on it; it runs on, detached, and "
            "nothing it does now is recorded",
            self._queue,
            why,
            self.cancel_grace,
        )
        self._given_up(decide(error, shutdown))
        return True


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


def _timed_out(queue: str, seconds: float, more: str | None = None) -> str:
    log.warning(
        "consumer of %r timed out after %ss; undecided messages will be retried", queue, seconds
    )
    said = f"consumer timed out after {seconds:g} seconds"
    return said if more is None else f"{said}; {more}"


def outcome_of(
    message: Message[Any],
    batch: MessageBatch[Any],
    error: str | None,
    retry_delay: float,
    *,
    shutdown: WorkerShutdown | None = None,
) -> Outcome:
    """The outcome of one message, from the explicit calls first (Cloudflare's precedence),
    then from whether the consumer raised (or the worker shut down under it: `shutdown`)."""
    delay = resolve_outcome(
        message, handler_failed=error is not None, batch=batch, retry_delay=retry_delay
    )
    if delay is None:
        return Succeeded()
    if message.decision is not None:
        return RetryRequested(delay)
    if shutdown is not None:
        return shutdown
    return Failed(error or "the consumer failed", delay_seconds=delay)


def settle_batch(
    spec: QueueSpec,
    batch: MessageBatch[Any],
    claimed: Sequence[ClaimedMessage],
    error: str | None,
    undecodable: Sequence[tuple[ClaimedMessage, str]] = (),
    *,
    shutdown: WorkerShutdown | None = None,
    skip: Collection[str] = (),
) -> Settlement:
    """Every message's decision, as one settlement; the messages in `skip` (acks already
    written) are left out. `shutdown`: the worker's shutdown cut the consumer off."""
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
    if error is None and shutdown is None and _all_acked(messages):
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
    *,
    watch: BatchWatch | None = None,
) -> BatchReport:
    """Decode, run and decide one claimed batch. Cancelled (past the shutdown grace
    period): raises `BatchShutdown` carrying the outcomes to record. With tracing on,
    inside a consumer span linked to the messages' producers. With `buffer`, the
    consumer's explicit acks are written through it as they are made (`EarlyAcks`);
    `record_batch` stores the rest. With `watch`, a consumer ignoring its cancellation
    can be given up on (see `BatchWatch`)."""
    tracing = None if hooks is None else hooks.tracing
    if tracing is None:
        return await _execute_batch(spec, claimed, pool, hooks, buffer, watch)
    with tracing.process("message", spec.name, claimed, batch=True) as span:
        report = await _execute_batch(spec, claimed, pool, hooks, buffer, watch)
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
    watch: BatchWatch | None,
) -> BatchReport:
    started = time.perf_counter()
    batch, undecodable = decode_batch(spec.name, claimed)
    if hooks is not None and hooks.wants("started"):
        hooks.emit_all([_event("started", spec.name, c) for c in claimed])
    early = EarlyAcks(buffer, claimed) if buffer is not None and batch.messages else None
    if early is not None:
        early.watch(batch.messages)

    def decide(error: str | None, shutdown: WorkerShutdown | None = None) -> BatchReport:
        skip = _stop_watching(early, batch)
        error = None if error is None else clean_text(error, MAX_TRACEBACK_CHARS)
        stopped = "shutdown" if shutdown is not None else error
        settlement = settle_batch(
            spec, batch, claimed, stopped, undecodable, shutdown=shutdown, skip=skip
        )
        return BatchReport(settlement, time.perf_counter() - started, error, early)

    error: str | None = None
    if batch.messages:
        consumer = spec.consumer
        if watch is not None and consumer is not None:
            watch._running(spec.name, consumer.timeout, decide)
        try:
            error = await run_handler(spec, batch, pool, hooks)
        except asyncio.CancelledError:
            if watch is not None and watch.abandoned:
                raise ConsumerAbandoned() from None
            raise BatchShutdown(decide(None, WorkerShutdown())) from None
        finally:
            if watch is not None:
                watch._ended()
        if watch is not None and watch.abandoned:
            raise ConsumerAbandoned()
    return decide(error)


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
