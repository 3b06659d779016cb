"""Running jobs: each job of a claimed batch runs as its own task, and each ends as one outcome.

Pipeline per job: find its type → load the payload → run the handler (timeout, context)
→ classify (complete, retry with backoff, fail, cancelled) → one attempt record. Every
step logs one JSON line (`taskflare.jobs`); payloads are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..backends.base import (
    AttemptRecord,
    Backend,
    CancelOutcome,
    ClaimedMessage,
    CompleteOutcome,
    FailOutcome,
    RetryOutcome,
    Settlement,
)
from ..context import JobContext
from ..ids import uuid7
from ..jobs import JobType
from ..queue import Queue
from ..retry import Backoff, PermanentError, classify
from .executor import BatchReport

if TYPE_CHECKING:
    from ..app import App

events = logging.getLogger("taskflare.jobs")


def log_event(event: str, **fields: Any) -> None:
    """One structured JSON line per job event (never the payload)."""
    level = logging.WARNING if event in ("failed", "retried") else logging.INFO
    if events.isEnabledFor(level):
        events.log(level, orjson.dumps({"event": event, **fields}).decode())


class _WorkerShutdown(Exception):
    """The worker stopped before the job finished."""


@dataclass(slots=True)
class _Outcome:
    completes: list[CompleteOutcome]
    retries: list[RetryOutcome]
    fails: list[FailOutcome]
    cancels: list[CancelOutcome]
    attempts: list[AttemptRecord]


class JobRunner:
    """Runs the jobs of claimed batches for one worker; tracks them for cancellation."""

    def __init__(self, app: App, backend: Backend, thread_pool: Executor, worker_id: str) -> None:
        self.app = app
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

    async def execute(self, queue: Queue, claimed: Sequence[ClaimedMessage]) -> BatchReport:
        """Run every job of the batch concurrently and collect their outcomes."""
        started = time.perf_counter()
        outcome = _Outcome([], [], [], [], [])
        results = await asyncio.gather(
            *(self._run_one(queue, message, outcome) for message in claimed),
            return_exceptions=True,
        )
        shutdown = any(isinstance(r, asyncio.CancelledError) for r in results)
        settlement = Settlement(
            retries=outcome.retries,
            fails=outcome.fails,
            completes=outcome.completes,
            cancels=outcome.cancels,
            attempts=outcome.attempts,
        )
        report = BatchReport(settlement, time.perf_counter() - started, None)
        if shutdown:
            from .executor import _CancelledWithReport

            raise _CancelledWithReport(report)
        return report

    async def _run_one(self, queue: Queue, message: ClaimedMessage, out: _Outcome) -> None:
        job_type = self.app.job_types.get(message.type or "")
        max_attempts = message.max_attempts or (job_type.max_attempts if job_type else 1)
        ctx = JobContext(
            backend=self.backend,
            job_id=message.id,
            type=message.type or "",
            queue=queue.name,
            attempt=message.attempts,
            max_attempts=max_attempts,
            correlation_id=message.correlation_id,
            lease_id=message.lease_id,
            worker_id=self.worker_id,
        )
        fields = {
            "job_id": message.id,
            "type": message.type,
            "queue": queue.name,
            "attempt": message.attempts,
            "correlation_id": message.correlation_id,
        }
        started_at = time.time()
        log_event("started", **fields)
        task = asyncio.current_task()
        assert task is not None
        self.running[message.id] = (task, ctx)
        try:
            result = await self._invoke(job_type, message, ctx)
        except asyncio.CancelledError:
            if not ctx.cancelled:
                self._record_failure(
                    message,
                    out,
                    fields,
                    started_at,
                    max_attempts,
                    _WorkerShutdown("the worker shut down before the job finished"),
                    job_type,
                    shutdown=True,
                )
                raise
            self._record_cancel(message, out, fields, started_at)
            return
        except Exception as exc:
            if ctx.cancelled:  # an error raised while stopping for a cancel is still a cancel
                self._record_cancel(message, out, fields, started_at)
                return
            self._record_failure(message, out, fields, started_at, max_attempts, exc, job_type)
            return
        finally:
            self.running.pop(message.id, None)
        if ctx.cancelled:
            self._record_cancel(message, out, fields, started_at)
            return
        try:
            data = orjson.dumps(result)
        except TypeError as exc:
            error = PermanentError(f"the job's result is not JSON-serialisable: {exc}")
            self._record_failure(message, out, fields, started_at, max_attempts, error, job_type)
            return
        finished_at = time.time()
        out.completes.append(CompleteOutcome(message.id, message.lease_id, data))
        out.attempts.append(self._attempt(message, started_at, finished_at, "completed"))
        log_event("completed", **fields, duration_ms=round((finished_at - started_at) * 1000, 3))

    async def _invoke(
        self, job_type: JobType | None, message: ClaimedMessage, ctx: JobContext
    ) -> Any:
        if job_type is None:
            raise LookupError(f"no handler for job type {message.type!r} in this worker")
        try:
            payload = job_type.load(message.body)
        except Exception as exc:
            raise PermanentError(f"stored payload no longer matches the job type: {exc}") from exc
        args = (payload, ctx) if job_type.takes_context else (payload,)
        async with asyncio.timeout(job_type.timeout):
            if job_type.is_async:
                return await job_type.handler(*args)
            loop = asyncio.get_running_loop()
            call: Callable[[], Any] = lambda: job_type.handler(*args)  # noqa: E731
            return await loop.run_in_executor(self.thread_pool, call)

    def _attempt(
        self,
        message: ClaimedMessage,
        started_at: float,
        finished_at: float,
        outcome: str,
        error: str | None = None,
        trace: str | None = None,
    ) -> AttemptRecord:
        return AttemptRecord(
            message.id,
            message.attempts,
            self.worker_id,
            started_at,
            finished_at,
            outcome,
            error,
            trace,
        )

    def _record_cancel(
        self, message: ClaimedMessage, out: _Outcome, fields: dict[str, Any], started_at: float
    ) -> None:
        finished_at = time.time()
        out.cancels.append(CancelOutcome(message.id, message.lease_id, "cancelled while running"))
        out.attempts.append(self._attempt(message, started_at, finished_at, "cancelled"))
        log_event("cancelled", **fields, duration_ms=round((finished_at - started_at) * 1000, 3))

    def _record_failure(
        self,
        message: ClaimedMessage,
        out: _Outcome,
        fields: dict[str, Any],
        started_at: float,
        max_attempts: int,
        exc: BaseException,
        job_type: JobType | None,
        *,
        shutdown: bool = False,
    ) -> None:
        finished_at = time.time()
        duration_ms = round((finished_at - started_at) * 1000, 3)
        if isinstance(exc, TimeoutError) and job_type is not None and job_type.timeout:
            error = f"TimeoutError: the job ran longer than its timeout of {job_type.timeout:g}s"
        else:
            error = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        verdict = classify(exc)
        if verdict.permanent or message.attempts >= max_attempts:
            dlq = self.app.get_queue(message.queue).config.dead_letter_queue
            out.fails.append(
                FailOutcome(message.id, message.lease_id, error, dlq, uuid7() if dlq else None)
            )
            out.attempts.append(
                self._attempt(message, started_at, finished_at, "failed", error, trace)
            )
            log_event(
                "failed",
                **fields,
                duration_ms=duration_ms,
                error=error,
                permanent=verdict.permanent,
            )
            return
        if shutdown:
            delay = 0.0
        elif verdict.delay is not None:
            delay = verdict.delay
        else:
            delay = (job_type.retry if job_type else Backoff()).delay(message.attempts)
        out.retries.append(RetryOutcome(message.id, message.lease_id, delay, error))
        out.attempts.append(
            self._attempt(message, started_at, finished_at, "retried", error, trace)
        )
        log_event("retried", **fields, duration_ms=duration_ms, error=error, delay_s=delay)
