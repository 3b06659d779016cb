"""Running one job: find its type → load the payload → run the handler (timeout, context)
→ classify what happened → decide (the outcome policy) → one settlement with its attempt.

A handler that ignores its cancellation (past its timeout, on a requested cancel, at
shutdown) is given up on `cancel_grace` seconds later: asyncio cannot kill a coroutine,
so its outcome is decided without it (as its timeout, cancel or shutdown decides), its
slot and lease freed, and the task left running, detached (Celery's hard time limit and
Oban's shutdown kill the job's process; a coroutine can only be left).

Every step logs one JSON line (`taskflare.jobs`); payloads are never logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
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
    SHUTDOWN_ERROR,
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
from ..raised import call_carrying, describe, ignored_cancel, is_stop, message_of, raised_by
from ..registry import QueueSpec, Registry
from ..registry.hooks import HandlerCall, Hooks, LifecycleEvent
from ..registry.job_types import JobType
from ..retry import Backoff, PermanentError, classify
from ..text import MAX_TRACEBACK_CHARS, clean_text
from .batch_runner import DEFAULT_CANCEL_GRACE, as_settlement
from .tracebacks import user_traceback

log = logging.getLogger("taskflare.worker")


@dataclass(frozen=True, slots=True)
class JobReport:
    """One job's decision, its settlement (outcome and attempt row) and duration [s]."""

    decision: Decision
    settlement: Settlement
    duration: float


Finish = Callable[[JobReport], None]


class _Running:
    """A job whose handler runs now: what deciding its outcome without it needs."""

    __slots__ = (
        "ctx",
        "finish",
        "given_up",
        "job_type",
        "max_attempts",
        "message",
        "spec",
        "started_at",
        "task",
        "timers",
    )

    def __init__(
        self,
        task: asyncio.Task[Any],
        ctx: JobContext,
        spec: QueueSpec,
        message: ClaimedMessage,
        job_type: JobType | None,
        max_attempts: int,
        started_at: float,
        finish: Finish,
    ) -> None:
        self.task = task
        self.ctx = ctx
        self.spec = spec
        self.message = message
        self.job_type = job_type
        self.max_attempts = max_attempts
        self.started_at = started_at
        self.finish = finish
        self.given_up = False
        self.timers: list[asyncio.TimerHandle] = []


class JobRunner:
    """Runs jobs for one worker, one task per job; tracks them for cancellation.

    `cancel_grace` [s]: how long a handler may take to stop once cancelled before the
    runner gives up on it; `abandoned`: where the tasks given up on are kept while
    their handlers run on (the worker's, shared with its shutdown).
    """

    def __init__(
        self,
        registry: Registry,
        backend: Backend,
        thread_pool: Executor,
        worker_id: str,
        *,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        abandoned: set[asyncio.Task[Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.thread_pool = thread_pool
        self.worker_id = worker_id
        self.cancel_grace = cancel_grace
        self.abandoned: set[asyncio.Task[Any]] = set() if abandoned is None else abandoned
        self.running: dict[str, _Running] = {}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel running jobs (cooperatively: async handlers are cancelled, sync ones
        flagged); a handler still running `cancel_grace` seconds later is given up on,
        its job recorded cancelled."""
        for job_id in job_ids:
            entry = self.running.get(job_id)
            if entry is not None and not entry.ctx.cancelled:
                entry.ctx.mark_cancelled()
                entry.task.cancel()
                self._give_up_later(entry, self.cancel_grace, "its cancel")

    def give_up(self, tasks: Collection[asyncio.Task[Any]]) -> int:
        """Give up on the jobs run by `tasks` that the worker's shutdown cancelled and
        whose handlers ignored it: each is decided as cut off by the shutdown (retried
        at once, or failed on its last attempt). Returns how many."""
        entries = [e for e in self.running.values() if e.task in tasks]
        for entry in entries:
            outcome = WorkerShutdown(f"{SHUTDOWN_ERROR}; {self._ignored()}")
            self._give_up(entry, outcome, "the shutdown")
        return len(entries)

    def run(
        self,
        spec: QueueSpec,
        message: ClaimedMessage,
        finish: Finish,
        *,
        cancelled: bool = False,
    ) -> Awaitable[None]:
        """Run one job to its decision and hand its report to `finish`, once: when the
        job ends, or, when its handler ignores its cancellation (past its timeout, a
        requested cancel, the worker's shutdown), `cancel_grace` seconds after the
        cancel, while the handler runs on, detached; the awaitable then returns only when
        the handler does. Cancelled by the worker's shutdown: the decision is made (retry,
        or fail when out of attempts) all the same. With tracing on, inside a consumer
        span that records the decision. `cancelled`: its cancel came while it waited for
        a slot; it ends so, unrun."""
        if self.registry.hooks.tracing is None:
            return self._run(spec, message, finish, cancelled)  # without a coroutine between
        return self._run_traced(spec, message, finish, cancelled)

    async def _run_traced(
        self, spec: QueueSpec, message: ClaimedMessage, finish: Finish, cancelled: bool
    ) -> None:
        tracing = self.registry.hooks.tracing
        assert tracing is not None
        with tracing.process("job", spec.name, [message], batch=False) as span:

            def traced(report: JobReport) -> None:
                decision = report.decision
                if decision.attempt_outcome in ("retried", "failed"):
                    trace = report.settlement.attempts[0].traceback
                    span.settled(decision.attempt_outcome, decision.error, trace)
                else:
                    span.settled(decision.attempt_outcome, None)
                finish(report)

            await self._run(spec, message, traced, cancelled)

    async def _run(
        self, spec: QueueSpec, message: ClaimedMessage, finish: Finish, cancelled: bool
    ) -> None:
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
        task = asyncio.current_task()
        assert task is not None
        entry = _Running(task, ctx, spec, message, job_type, max_attempts, time.time(), finish)
        trace: str | None = None
        if cancelled:
            ctx.mark_cancelled()
            outcome: Outcome = Cancelled()
        else:
            if wanted("started"):
                log_event("started", **_fields(message, spec.name))
            if self.registry.hooks.wants("started"):
                self.registry.hooks.emit(_event("started", message, spec.name))
            self.running[message.id] = entry
            if job_type is not None and job_type.timeout is not None:
                self._give_up_later(entry, job_type.timeout + self.cancel_grace, "its timeout")
            try:
                outcome, trace = await self._outcome(job_type, message, ctx)
            finally:
                self._leave(entry)
            if entry.given_up:  # decided without it long ago: nothing more to record
                return
        decision = self._decide(entry, outcome)
        if isinstance(outcome, Snoozed) and outcome.backoff_keys and message.flow_keys:
            held = decision.delay_seconds  # the snooze's delay within its limit
            await self._hold(message, outcome.delay_seconds if held is None else held)
        finish(self._report(entry, decision, trace))

    def _decide(self, entry: _Running, outcome: Outcome) -> Decision:
        message, job_type = entry.message, entry.job_type
        delivery = Delivery(
            message.id,
            message.lease_id,
            message.attempts,
            entry.max_attempts,
            entry.spec.config.dead_letter_queue,
            is_job=True,
            backoff=job_type.retry if job_type else Backoff(),
        )
        return decide(delivery, outcome)

    def _report(self, entry: _Running, decision: Decision, trace: str | None) -> JobReport:
        message = entry.message
        finished_at = time.time()
        attempt = AttemptRecord(
            message.id,
            message.attempts,
            self.worker_id,
            entry.started_at,
            finished_at,
            decision.attempt_outcome,
            decision.error,
            None if trace is None else clean_text(trace, MAX_TRACEBACK_CHARS),
        )
        settlement = as_settlement([decision], [attempt])
        return JobReport(decision, settlement, finished_at - entry.started_at)

    def _leave(self, entry: _Running) -> None:
        """The handler has ended (or been given up on): no longer running here."""
        if self.running.get(entry.message.id) is entry:  # not a later attempt's entry
            del self.running[entry.message.id]
        for timer in entry.timers:
            timer.cancel()

    def _give_up_later(self, entry: _Running, delay: float, why: str) -> None:
        """Give up on `entry`'s handler in `delay` seconds if it still runs then."""
        loop = asyncio.get_running_loop()
        entry.timers.append(loop.call_later(delay, self._overdue, entry, why))

    def _overdue(self, entry: _Running, why: str) -> None:
        if entry.given_up or self.running.get(entry.message.id) is not entry:
            return
        outcome: Outcome
        if entry.ctx.cancelled:  # a requested cancel stays one, whichever timer fired
            outcome = Cancelled(f"cancelled while running; {self._ignored()}")
        else:
            timeout = entry.job_type.timeout if entry.job_type else None
            assert timeout is not None  # no other timer is set
            outcome = Failed(f"TimeoutError: {JobTimedOut(timeout)}; {self._ignored()}")
        self._give_up(entry, outcome, why)

    def _ignored(self) -> str:
        return ignored_cancel(self.cancel_grace)

    def _give_up(self, entry: _Running, outcome: Outcome, why: str) -> None:
        """Decide `entry`'s outcome without its handler, which runs on detached: its
        slot and lease are freed by `finish`, and it can store nothing more (its lease
        is settled, so its late writes are refused)."""
        entry.given_up = True
        self._leave(entry)
        message = entry.message
        log.warning(
            "job %s (%s) ignored %s for %gs: giving up on it; its handler runs on, "
            "detached, and nothing it does now is recorded",
            message.id,
            message.type,
            why,
            self.cancel_grace,
        )
        self.abandoned.add(entry.task)
        entry.task.add_done_callback(self.abandoned.discard)
        entry.finish(self._report(entry, self._decide(entry, outcome), None))

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
