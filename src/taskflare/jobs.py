"""Jobs as users see them: `Job`, its status and attempt history, pages and batches.

A job is a message with a type, a payload and a tracked status. `Job` is a snapshot of a
stored job; `await job.wait()` waits for it to finish and `await job.refresh()` reloads
it in place.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import orjson

from .backends.base import AttemptRecord, MessageRecord, State
from .errors import InvalidDelay
from .messages import MAX_DELAY_SECONDS, timestamp_from_epoch
from .numeric import as_float
from .registry.job_types import JobHandler, JobType, check_max_attempts, check_priority

__all__ = [
    "Job",
    "JobAttempt",
    "JobBatch",
    "JobHandler",
    "JobPage",
    "JobStatus",
    "JobType",
    "check_max_attempts",
    "check_priority",
    "iso",
    "run_at_delay",
]

T = TypeVar("T")


class JobStatus(StrEnum):
    """Where a job is in its life: pending → processing → completed | failed | cancelled."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def from_state(cls, state: str) -> JobStatus:
        """The job status of a stored message state."""
        return _STATUS_OF_STATE[State(state)]

    def to_state(self) -> State:
        """The stored message state of this status."""
        return _STATE_OF_STATUS[self]

    @property
    def finished(self) -> bool:
        """True once the job will not run again on its own."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


_STATUS_OF_STATE = {
    State.READY: JobStatus.PENDING,
    State.LEASED: JobStatus.PROCESSING,
    State.COMPLETED: JobStatus.COMPLETED,
    State.FAILED: JobStatus.FAILED,
    State.CANCELLED: JobStatus.CANCELLED,
}
_STATE_OF_STATUS = {status: state for state, status in _STATUS_OF_STATE.items()}


def iso(moment: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 UTC with a Z (None stays None)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else timestamp_from_epoch(epoch)


@dataclass(frozen=True, slots=True)
class JobAttempt:
    """One delivery of a job: when, where, and how it ended."""

    attempt: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str
    error: str | None
    traceback: str | None

    @classmethod
    def from_record(cls, record: AttemptRecord) -> JobAttempt:
        """From the backend's plain record."""
        return cls(
            attempt=record.attempt,
            worker_id=record.worker_id,
            started_at=_at(record.started_at),
            finished_at=_at(record.finished_at),
            outcome=record.outcome,
            error=record.error,
            traceback=record.traceback,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (camelCase, as the HTTP API shows it)."""
        return {
            "attempt": self.attempt,
            "workerId": self.worker_id,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "outcome": self.outcome,
            "error": self.error,
            "traceback": self.traceback,
        }


class JobHandle(Protocol):
    """What a `Job` needs to wait for itself and reload itself."""

    async def wait_for_job(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for a job to finish: its result, or raise."""
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """The job as stored now."""
        ...

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` from code that is not async."""
        ...


@dataclass(slots=True, eq=False)
class Job:
    """A job as stored when it was read. `await job.wait()` for its result;
    `await job.refresh()` reloads it in place."""

    id: str
    type: str
    queue: str
    status: JobStatus
    payload: Any
    priority: int
    attempts: int
    max_attempts: int
    result: Any
    progress: float | None
    progress_note: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    run_at: datetime
    idempotency_key: str | None
    correlation_id: str | None
    batch_id: str | None
    duplicate: bool = False
    history: tuple[JobAttempt, ...] = ()
    handle: JobHandle | None = field(default=None, repr=False)

    @classmethod
    def from_record(
        cls,
        record: MessageRecord,
        *,
        handle: JobHandle | None = None,
        duplicate: bool = False,
        history: tuple[JobAttempt, ...] = (),
    ) -> Job:
        """From the backend's stored record."""
        assert record.type is not None
        status = JobStatus.from_state(record.state)
        return cls(
            id=record.id,
            type=record.type,
            queue=record.queue,
            status=status,
            payload=orjson.loads(record.body),
            priority=record.priority,
            attempts=record.attempts,
            max_attempts=record.max_attempts or 1,
            result=None if record.result is None else orjson.loads(record.result),
            progress=record.progress,
            progress_note=record.progress_note,
            error=record.last_error,
            created_at=timestamp_from_epoch(record.created_at),
            started_at=_at(record.started_at),
            completed_at=_at(record.finished_at) if status.finished else None,
            run_at=timestamp_from_epoch(record.available_at),
            idempotency_key=record.idempotency_key,
            correlation_id=record.correlation_id,
            batch_id=record.batch_id,
            duplicate=duplicate,
            history=history,
            handle=handle,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
            if f.name != "handle"
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: refresh() changes it

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the job service's job (camelCase), plus taskflare's fields."""
        return {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "status": self.status.value,
            "payload": self.payload,
            "priority": self.priority,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "result": self.result,
            "progress": self.progress,
            "progressNote": self.progress_note,
            "error": self.error,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
            "runAt": iso(self.run_at),
            "idempotencyKey": self.idempotency_key,
            "correlationId": self.correlation_id,
            "batchId": self.batch_id,
            "duplicate": self.duplicate,
            "history": [a.to_dict() for a in self.history],
        }

    def _bound(self) -> JobHandle:
        if self.handle is None:
            raise RuntimeError("this Job is not bound to an App")
        return self.handle

    async def wait(self, timeout: float | None = None) -> Any:
        """Wait until the job finishes; return its result or raise `JobFailed`/`JobCancelled`.

        Wakes as soon as the job's worker records the outcome (the backend's change
        signal); raises `TimeoutError` when `timeout` seconds pass first.
        """
        return await self._bound().wait_for_job(self.id, timeout)

    def wait_sync(self, timeout: float | None = None) -> Any:
        """Blocking twin of `wait`."""
        handle = self._bound()
        return handle.run_sync(handle.wait_for_job(self.id, timeout))

    async def refresh(self) -> Job:
        """Reload this job as stored now, in place (and return it); `JobNotFound` if it
        was deleted meanwhile (retention)."""
        from .errors import JobNotFound

        current = await self._bound().get_job(self.id)
        if current is None:
            raise JobNotFound(f"job {self.id} no longer exists (deleted by retention?)")
        for f in fields(self):
            if f.name not in ("handle", "duplicate"):
                setattr(self, f.name, getattr(current, f.name))
        return self

    def refresh_sync(self) -> Job:
        """Blocking twin of `refresh`."""
        return self._bound().run_sync(self.refresh())


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of `list_jobs`: the jobs, and the cursor of the next page (None at the end).
    `partial` (the dashboard's, HTTP API's and CLI's listing): the page stopped after
    examining its bounded window with fewer jobs than asked; `next_cursor` goes on."""

    jobs: list[Job]
    next_cursor: str | None
    partial: bool = False


@dataclass(frozen=True, slots=True)
class JobBatch:
    """Progress of a batch made by `enqueue_many`."""

    id: str
    type: str
    total: int
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int

    @property
    def progress(self) -> float:
        """Share of the batch that has finished (completed, failed or cancelled)."""
        done = self.completed + self.failed + self.cancelled
        return done / self.total if self.total else 1.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape."""
        return {
            "id": self.id,
            "type": self.type,
            "total": self.total,
            "pending": self.pending,
            "processing": self.processing,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "progress": round(self.progress, 4),
        }


def run_at_delay(run_at: datetime | float | None, delay_seconds: float, *, now: float) -> float:
    """Seconds from `now` until `run_at` (an aware datetime, or epoch seconds).

    A naive datetime is refused: Python would read it as this machine's local time,
    a worker elsewhere as something else (the most reported scheduling surprise of RQ and
    Sidekiq). Raises `InvalidDelay` naming `run_at`.
    """
    if run_at is None:
        return delay_seconds
    if delay_seconds:
        raise InvalidDelay(
            "give either run_at or delay_seconds, not both", fields=("run_at", "delay_seconds")
        )
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidDelay(
                f"run_at {run_at.isoformat()} has no time zone; pass an aware datetime, e.g. "
                "datetime.now(UTC) + timedelta(hours=1) or datetime(2030, 1, 1, 9, "
                "tzinfo=ZoneInfo('Europe/Paris'))",
                fields=("run_at",),
            )
        target = run_at.timestamp()
    elif isinstance(run_at, (int, float)) and not isinstance(run_at, bool):
        target = as_float(run_at)  # an int past a float's range: an infinity, far past or ahead
        if math.isnan(target) or (math.isinf(target) and isinstance(run_at, float)):
            raise InvalidDelay(
                f"run_at must be a finite number of epoch seconds, got {run_at!r}",
                fields=("run_at",),
            )
    else:
        raise InvalidDelay(
            f"run_at must be a datetime or epoch seconds, got {run_at!r}", fields=("run_at",)
        )
    delay = max(target - now, 0.0)
    if delay > MAX_DELAY_SECONDS:
        try:
            when = datetime.fromtimestamp(target, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, ValueError, OSError):
            when = f"{run_at:g} (epoch seconds)" if math.isfinite(target) else f"{run_at}"
        away = f"{delay / 86_400:,.0f} days away" if math.isfinite(delay) else "too far away"
        # A number of epoch milliseconds (JavaScript's Date.now()) is never guessed, but
        # named: the error then says what to change.
        unit = ""
        if not isinstance(run_at, datetime) and abs(target / 1000 - now) <= MAX_DELAY_SECONDS:
            unit = " (that number is epoch milliseconds? run_at is in seconds)"
        raise InvalidDelay(
            f"run_at {when} is {away}; the limit is one year (365 days){unit}",
            fields=("run_at",),
        )
    return delay
