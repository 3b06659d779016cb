"""Running one job: find its type → load the payload → run the handler (timeout, context)
→ classify what happened → decide (the outcome policy) → one settlement with its attempt.

Every step logs one JSON line (`taskflare.jobs`); payloads are never logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ..backends.base import (
    AttemptRecord,
    Backend,
    ClaimedMessage,
    FailOutcome,
    FlowHoldParams,
    Settlement,
    SettleResult,
)
from ..context import JobContext
from ..encoding import encode_json
from ..errors import InvalidResult
from ..events import log_event, wanted
from ..flow import RateLimited, Snooze
from ..policy import (
    Cancelled,
    Decision,
    Delivery,
    Failed,
    Outcome,
    Snoozed,
    Succeeded,
    WorkerShutdown,
    decide,
)
from ..raised import call_carrying, describe, is_stop, message_of, raised_by
from ..registry import QueueSpec, Registry
from ..registry.hooks import HandlerCall, Hooks, LifecycleEvent
from ..registry.job_types import JobType
from ..retry import Backoff, PermanentError, classify
from ..text import MAX_TRACEBACK_CHARS, clean_text
from .batch_runner import as_settlement
from .tracebacks import user_traceback

log = logging.getLogger("taskflare.worker")


@dataclass(frozen=True, slots=True)
class JobReport:
    """One job's decision, its settlement (outcome and attempt row) and duration [s]."""

    decision: Decision
    settlement: Settlement
    duration: float


class JobRunner:
    """Runs jobs for one worker, one task per job; tracks them for cancellation."""

    def __init__(
        self, registry: Registry, backend: Backend, thread_pool: Executor, worker_id: str
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.thread_pool = thread_pool
        self.worker_id = worker_id
        self.running: dict[str, tuple[asyncio.Task[Any], JobContext]] = {}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel running jobs (cooperatively: async handlers are cancelled, sync ones flagged)."""
        for job_id in job_ids:
            entry = self.running.get(job_id)
            if entry is not None and not entry[1].cancelled:
                task, ctx = entry
                ctx.mark_cancelled()
                task.cancel()

    def run(
        self, spec: QueueSpec, message: ClaimedMessage, *, cancelled: bool = False
    ) -> Awaitable[JobReport]:
        """Run one job to its decision (await the result). Cancelled by the worker's
        shutdown: the decision is made (retry, or fail when out of attempts) and returned
        all the same. With tracing on, inside a consumer span that records the decision.
        `cancelled`: its cancel came while it waited for a slot; it ends so, unrun."""
        if self.registry.hooks.tracing is None:
            return self._run(spec, message, cancelled)  # without a coroutine in between
        return self._run_traced(spec, message, cancelled)

    async def _run_traced(
        self, spec: QueueSpec, message: ClaimedMessage, cancelled: bool
    ) -> JobReport:
        tracing = self.registry.hooks.tracing
        assert tracing is not None
        with tracing.process("job", spec.name, [message], batch=False) as span:
            report = await self._run(spec, message, cancelled)
            decision = report.decision
            if decision.attempt_outcome in ("retried", "failed"):
                trace = report.settlement.attempts[0].traceback
                span.settled(decision.attempt_outcome, decision.error, trace)
            else:
                span.settled(decision.attempt_outcome, None)
            return report

    async def _run(self, spec: QueueSpec, message: ClaimedMessage, cancelled: bool) -> JobReport:
        job_type = self.registry.job_types.get(message.type or "")
        max_attempts = message.max_attempts or (job_type.max_attempts if job_type else 1)
        ctx = JobContext(
            backend=self.backend,
            job_id=message.id,
            type=message.type or "",
            queue=spec.name,
            attempt=message.attempts,
            max_attempts=max_attempts,
            correlation_id=message.correlation_id,
            lease_id=message.lease_id,
            worker_id=self.worker_id,
        )
        started_at = time.time()
        trace: str | None = None
        if cancelled:
            ctx.mark_cancelled()
            outcome: Outcome = Cancelled()
        else:
            if wanted("started"):
                log_event("started", **_fields(message, spec.name))
            if self.registry.hooks.wants("started"):
                self.registry.hooks.emit(_event("started", message, spec.name))
            task = asyncio.current_task()
            assert task is not None
            self.running[message.id] = (task, ctx)
            try:
                outcome, trace = await self._outcome(job_type, message, ctx)
            finally:
                self.running.pop(message.id, None)
        delivery = Delivery(
            message.id,
            message.lease_id,
            message.attempts,
            max_attempts,
            spec.config.dead_letter_queue,
            is_job=True,
            backoff=job_type.retry if job_type else Backoff(),
        )
        decision = decide(delivery, outcome)
        if isinstance(outcome, Snoozed) and outcome.backoff_keys and message.flow_keys:
            held = decision.delay_seconds  # the snooze's delay within its limit
            await self._hold(message, outcome.delay_seconds if held is None else held)
        finished_at = time.time()
        attempt = AttemptRecord(
            message.id,
            message.attempts,
            self.worker_id,
            started_at,
            finished_at,
            decision.attempt_outcome,
            decision.error,
            None if trace is None else clean_text(trace, MAX_TRACEBACK_CHARS),
        )
        return JobReport(decision, as_settlement([decision], [attempt]), finished_at - started_at)

    async def _hold(self, message: ClaimedMessage, seconds: float) -> None:
        """Back off the job's rate-limit keys (its keyed buckets, else all its rate
        buckets) for `seconds`: the service answered "too many requests" for them."""
        rates = [b for b in message.flow_keys or () if b.startswith("r")]
        keyed = [b for b in rates if not b.endswith("|")]
        buckets = tuple(keyed or rates)
        if not buckets:
            return
        try:
            await self.backend.flow_hold(FlowHoldParams(buckets, seconds))
        except Exception as exc:  # the job is snoozed all the same
            log.warning("could not back off %s for %.1fs (%s)", ", ".join(buckets), seconds, exc)

    async def _outcome(
        self, job_type: JobType | None, message: ClaimedMessage, ctx: JobContext
    ) -> tuple[Outcome, str | None]:
        """What became of the handler call, and the traceback of an error."""
        own = asyncio.current_task()
        try:
            result = await self._invoke(job_type, message, ctx)
        except BaseException as raised:
            exc = raised_by(raised)  # what a plain def handler's thread raised, if carried
            # Anything the handler raised is its failure: `SystemExit` from a library's
            # `sys.exit()`, `KeyboardInterrupt`, a `CancelledError` or a `GeneratorExit`
            # of its own. Only this task's cancellation (a cancel, the worker's shutdown)
            # stops the job so, and only this coroutine's closing goes on as such.
            if isinstance(exc, GeneratorExit) and is_stop(exc, own):
                raise
            if ctx.cancelled:  # an error raised while stopping for a cancel is still a cancel
                return Cancelled(), None
            if is_stop(exc, own):
                return WorkerShutdown(), None
            snoozed = _snoozed(exc, job_type)
            if snoozed is not None:
                return snoozed, None
            return _failure(exc, job_type), user_traceback(exc)
        if ctx.cancelled:
            return Cancelled(), None
        if isinstance(result, Snooze):  # `return ctx.snooze(seconds)`
            return Snoozed(result.seconds, message_of(result)), None
        if result is None:  # most handlers return nothing: no encoding to check
            return Succeeded(b"null"), None
        try:
            data = encode_json(result, "result", InvalidResult, context="the job's ")
        except InvalidResult as exc:
            return _failure(PermanentError(str(exc)), job_type), None
        return Succeeded(data), None

    async def _invoke(
        self, job_type: JobType | None, message: ClaimedMessage, ctx: JobContext
    ) -> Any:
        if job_type is None:  # not claimed by workers that lack the type; kept for safety
            raise PermanentError(f"no handler for job type {message.type!r} in this worker")
        try:
            payload = job_type.load(message.body)
        except Exception as exc:
            raise PermanentError(
                f"stored payload no longer matches the job type: {message_of(exc)}"
            ) from exc
        args = (payload, ctx) if job_type.takes_context else (payload,)
        hooks = self.registry.hooks
        run: Callable[[], Awaitable[Any]]
        if hooks.middleware:
            call = HandlerCall(
                "job",
                ctx.queue,
                message.attempts,
                payload,
                type=job_type.name,
                job_id=message.id,
                correlation_id=message.correlation_id,
            )
            handler: Callable[[], Awaitable[Any]] = lambda: self._call(job_type, args)  # noqa: E731
            run = lambda: hooks.call(call, handler)  # noqa: E731
        elif job_type.timeout is None and job_type.is_async:
            return await job_type.handler(*args)  # the common case, without a coroutine between
        else:
            run = lambda: self._call(job_type, args)  # noqa: E731
        if job_type.timeout is None:
            return await run()
        return await within_timeout(job_type.timeout, run)

    async def _call(self, job_type: JobType, args: tuple[Any, ...]) -> Any:
        if job_type.is_async:
            return await job_type.handler(*args)
        call: Callable[[], Any] = lambda: call_carrying(job_type.handler, *args)  # noqa: E731
        # In a copy of this task's context: what middleware set (and the consumer span of
        # tracing) is current in the handler's thread too, as `asyncio.to_thread` does.
        run = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(self.thread_pool, run, call)


class JobTimedOut(TimeoutError):
    """The job ran past its type's `timeout` (not a `TimeoutError` its own code raised)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the job ran longer than its timeout of {seconds:g}s")


async def within_timeout(seconds: float, run: Callable[[], Awaitable[Any]]) -> Any:
    """`run()` under a deadline of `seconds`; past it the attempt timed out however the code
    ended: code that swallows its cancellation and returns a result, or raises something
    else, still ran too long (as Celery, Oban and River record it)."""
    scope = asyncio.timeout(seconds)
    own = asyncio.current_task()
    try:
        async with scope:
            result = await run()
    except BaseException as exc:
        if scope.expired() and not is_stop(exc, own):  # a cancel or a shutdown stays one
            raise JobTimedOut(seconds) from exc
        raise
    if scope.expired():
        raise JobTimedOut(seconds)
    return result


def _snoozed(exc: BaseException, job_type: JobType | None) -> Snoozed | None:
    """A handler's request to run again later without spending an attempt, if it is one:
    `Snooze`, `RateLimited`, or an HTTP 429 from a job type with a rate limit."""
    if isinstance(exc, Snooze):
        return Snoozed(exc.seconds, message_of(exc))
    if isinstance(exc, RateLimited):
        return Snoozed(exc.retry_after, message_of(exc), backoff_keys=True)
    limits = job_type.limits if job_type is not None else None
    if limits is not None and limits.adaptive:
        verdict = classify(exc)
        if verdict.rate_limited:
            delay = limits.default_retry_after if verdict.delay is None else verdict.delay
            return Snoozed(delay, describe(exc), backoff_keys=True)
    return None


def _failure(exc: BaseException, job_type: JobType | None) -> Failed:
    """A handler's exception as a `Failed` outcome (permanent? asked-for delay?)."""
    error = f"TimeoutError: {exc}" if isinstance(exc, JobTimedOut) else describe(exc)
    verdict = classify(exc)
    return Failed(
        error, permanent=verdict.permanent, delay_seconds=verdict.delay, at_least=verdict.at_least
    )


def _fields(message: ClaimedMessage, queue: str) -> dict[str, Any]:
    return {
        "job_id": message.id,
        "type": message.type,
        "queue": queue,
        "attempt": message.attempts,
        "correlation_id": message.correlation_id,
    }


_EVENTS = {"ready": "retried", "completed": "completed", "failed": "failed"}
_LIFECYCLE = {"ready": "retried", "completed": "succeeded", "failed": "failed"}


def _event(name: str, message: ClaimedMessage, queue: str, **more: Any) -> LifecycleEvent:
    return LifecycleEvent(
        name,
        "job",
        queue,
        message.id,
        message.attempts,
        type=message.type,
        correlation_id=message.correlation_id,
        **more,
    )


def emit_outcome(
    hooks: Hooks, message: ClaimedMessage, queue: str, report: JobReport, result: SettleResult
) -> None:
    """The job's lifecycle events, from what was stored (a cancel may have won; a job
    whose lease had passed to another worker has none: that worker tells)."""
    state = result.states.get(message.id)
    if state is None:
        return
    name = _LIFECYCLE.get(state, "cancelled")
    decision = report.decision
    events = []
    if hooks.wants(name):
        error = None if name in ("succeeded", "cancelled") else decision.error
        delay = decision.delay_seconds if name == "retried" else None
        events.append(
            _event(name, message, queue, error=error, delay_seconds=delay, duration=report.duration)
        )
    outcome = decision.outcome
    dlq = outcome.dead_letter_queue if isinstance(outcome, FailOutcome) else None
    if name == "failed" and dlq and hooks.wants("dead_lettered"):
        events.append(
            _event(
                "dead_lettered",
                message,
                queue,
                error=decision.error,
                dead_letter_queue=dlq,
                duration=report.duration,
            )
        )
    hooks.emit_all(events)


def log_outcome(
    message: ClaimedMessage, queue: str, report: JobReport, result: SettleResult
) -> None:
    """The job's final log line, from what was stored (a cancel may have won)."""
    state = result.states.get(message.id)
    event = "lost" if state is None else _EVENTS.get(state, "cancelled")
    if event == "retried" and report.decision.attempt_outcome == "snoozed":
        event = "snoozed"
    if not wanted(event):
        return
    decision = report.decision
    fields = _fields(message, queue) | {"duration_ms": round(report.duration * 1000, 3)}
    if event == "lost":
        # The settle matched no row held under this lease: another worker's now, or the
        # job was deleted while it ran (a dashboard or bulk delete; purge keeps it).
        log_event(
            "lost",
            **fields,
            error="not stored: its lease had passed to another worker, or the job was "
            "deleted while it ran",
        )
    elif event == "snoozed":
        log_event(event, **fields, reason=decision.error, delay_s=decision.delay_seconds)
    elif event == "retried":
        log_event(event, **fields, error=decision.error, delay_s=decision.delay_seconds)
    elif event == "failed":
        log_event(event, **fields, error=decision.error, permanent=decision.permanent)
    else:
        log_event(event, **fields)
