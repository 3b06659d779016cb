"""Job types and jobs: a job is a message with a type, a payload and a tracked status.

`@app.job("send-email")` registers a `JobType`; `app.enqueue(...)` validates the payload
against the handler's annotation (a pydantic model, dataclass or TypedDict) and stores
the job; `Job` is a snapshot of a stored job as the API and the HTTP service show it.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from .backends.base import AttemptRecord, MessageRecord
from .errors import InvalidPayload, InvalidQueueConfig
from .messages import timestamp_from_epoch
from .retry import Backoff

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from .app import App

JobHandler = Callable[..., Any]


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
        return _STATUS_OF_STATE[state]

    def to_state(self) -> str:
        """The stored message state of this status."""
        return {v: k for k, v in _STATUS_OF_STATE.items()}[self]

    @property
    def finished(self) -> bool:
        """True once the job will not run again on its own."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


_STATUS_OF_STATE = {
    "ready": JobStatus.PENDING,
    "leased": JobStatus.PROCESSING,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}

_UNVALIDATED = (inspect.Parameter.empty, Any, dict, object, typing.Mapping)


def _payload_adapter(handler: JobHandler) -> TypeAdapter[Any] | None:
    """A pydantic adapter for the handler's payload annotation, or None when it has none."""
    params = list(inspect.signature(handler).parameters.values())
    if not params:
        raise InvalidQueueConfig("a job handler takes the payload (and optionally ctx)")
    try:
        hints = typing.get_type_hints(handler)
    except Exception:
        hints = {}
    annotation = hints.get(params[0].name, inspect.Parameter.empty)
    if annotation in _UNVALIDATED or typing.get_origin(annotation) in (dict, typing.Mapping):
        return None
    from pydantic import PydanticUserError, TypeAdapter

    try:
        return TypeAdapter(annotation)
    except PydanticUserError as exc:
        # e.g. `typing.TypedDict` before Python 3.12: say so at registration, not at enqueue.
        raise InvalidQueueConfig(
            f"cannot validate payloads annotated {annotation!r} "
            f"(handler {getattr(handler, '__qualname__', handler)!r}): {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class JobType:
    """A registered job type: its handler and defaults."""

    name: str
    handler: JobHandler
    queue: str
    max_attempts: int
    timeout: float | None
    priority: int
    retry: Backoff
    adapter: TypeAdapter[Any] | None
    is_async: bool
    takes_context: bool

    @classmethod
    def create(
        cls,
        name: str,
        handler: JobHandler,
        *,
        queue: str,
        max_attempts: int,
        timeout: float | None,
        priority: int,
        retry: Backoff | None,
    ) -> JobType:
        """Validate the options and inspect the handler."""
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidQueueConfig(f"job type name must be a non-empty string, got {name!r}")
        check_max_attempts(max_attempts)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise InvalidQueueConfig(
                f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        check_priority(priority)
        if retry is not None and not isinstance(retry, Backoff):
            raise InvalidQueueConfig(f"retry must be a taskflare.Backoff, got {retry!r}")
        positional = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return cls(
            name=name,
            handler=handler,
            queue=queue,
            max_attempts=max_attempts,
            timeout=None if timeout is None else float(timeout),
            priority=priority,
            retry=retry or Backoff(),
            adapter=_payload_adapter(handler),
            is_async=inspect.iscoroutinefunction(handler),
            takes_context=len(positional) >= 2,
        )

    def validate(self, payload: Any) -> Any:
        """Check `payload` against the handler's model; return it as JSON-ready data."""
        if self.adapter is None:
            return payload
        from pydantic import ValidationError

        try:
            value = self.adapter.validate_python(payload)
        except ValidationError as exc:
            raise InvalidPayload(_describe(self.name, exc)) from None
        return self.adapter.dump_python(value, mode="json")

    def encode(self, payload: Any) -> bytes:
        """Validate and serialise a payload for storage."""
        data = self.validate(payload)
        try:
            return orjson.dumps(data)
        except TypeError as exc:
            raise InvalidPayload(f"payload of job type {self.name!r} is not JSON: {exc}") from None

    def load(self, body: bytes) -> Any:
        """Turn a stored payload into the handler's argument (a model instance if typed)."""
        data = orjson.loads(body)
        if self.adapter is None:
            return data
        return self.adapter.validate_python(data)


def _describe(type_name: str, exc: Any) -> str:
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error.get("loc", ())) or "(payload)"
        problems.append(f"{location}: {error.get('msg', 'invalid')}")
    return f"invalid payload for job type {type_name!r}: " + "; ".join(problems)


def check_max_attempts(value: object) -> int:
    """1..1000 attempts."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidQueueConfig(f"max_attempts must be an integer from 1 to 1000, got {value!r}")
    return value


def check_priority(value: object) -> int:
    """An integer; higher runs first."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 1_000_000:
        raise InvalidQueueConfig(f"priority must be an integer (higher runs first), got {value!r}")
    return value


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "outcome": self.outcome,
            "error": self.error,
            "traceback": self.traceback,
        }


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else timestamp_from_epoch(epoch)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored when it was read. `await job.wait()` for its result."""

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
    app: App | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(
        cls,
        record: MessageRecord,
        *,
        app: App | None = None,
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
            app=app,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of seed 002's job (camelCase), plus taskflare's extra fields."""
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
            "createdAt": _iso(self.created_at),
            "startedAt": _iso(self.started_at),
            "completedAt": _iso(self.completed_at),
            "runAt": _iso(self.run_at),
            "idempotencyKey": self.idempotency_key,
            "correlationId": self.correlation_id,
            "batchId": self.batch_id,
            "duplicate": self.duplicate,
            "history": [a.to_dict() for a in self.history],
        }

    async def wait(self, timeout: float | None = None) -> Any:
        """Wait until the job finishes; return its result or raise `JobFailed`/`JobCancelled`.

        Raises `TimeoutError` when `timeout` seconds pass first.
        """
        if self.app is None:
            raise RuntimeError("this Job is not bound to an App")
        return await self.app.wait_for_job(self.id, timeout)

    def wait_sync(self, timeout: float | None = None) -> Any:
        """Blocking twin of `wait`."""
        if self.app is None:
            raise RuntimeError("this Job is not bound to an App")
        return self.app.run_sync(self.app.wait_for_job(self.id, timeout))

    async def refresh(self) -> Job:
        """The job as stored now."""
        if self.app is None:
            raise RuntimeError("this Job is not bound to an App")
        job = await self.app.get_job(self.id)
        assert job is not None
        return job


def run_at_delay(run_at: datetime | float | None, delay_seconds: float) -> float:
    """Seconds from now until `run_at` (an aware datetime, naive = UTC, or epoch seconds)."""
    if run_at is None:
        return delay_seconds
    if delay_seconds:
        raise InvalidQueueConfig("give either run_at or delay_seconds, not both")
    if isinstance(run_at, datetime):
        moment = run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC)
        target = moment.timestamp()
    elif isinstance(run_at, (int, float)) and not isinstance(run_at, bool):
        target = float(run_at)
    else:
        raise InvalidQueueConfig(f"run_at must be a datetime or epoch seconds, got {run_at!r}")
    return max(target - datetime.now(UTC).timestamp(), 0.0)


async def poll_until(
    check: Callable[[], typing.Awaitable[Any]], timeout: float | None, what: str
) -> Any:
    """Call `check` with growing pauses until it returns non-None; TimeoutError after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pause = 0.01
    while True:
        value = await check()
        if value is not None:
            return value
        if deadline is not None and loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        wait = pause if deadline is None else min(pause, max(deadline - loop.time(), 0))
        await asyncio.sleep(wait)
        pause = min(pause * 1.5, 0.25)
