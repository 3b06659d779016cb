"""Seed 002's job API: enqueue, read, list, retry, cancel, stats."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ..app import App
from ..errors import (
    InvalidJobState,
    InvalidMessage,
    InvalidPayload,
    InvalidQueueConfig,
    JobNotFound,
    JobRouteRefused,
    MessageTooLarge,
    UniqueKeyMissing,
    UnknownJobType,
    UnknownQueue,
)
from ..jobs import JobStatus, iso
from .common import ERRORS, ApiError, said
from .security import items_within, no_control_characters

# The longest `GET /jobs/{id}?wait=` long poll [s].
MAX_WAIT_SECONDS = 60.0
# Text pydantic would read as epoch seconds or milliseconds ("1767225600").
# (One way to match each text: linear, whatever its length.)
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def iso_8601_only(value: Any) -> Any:
    """A request model's timestamp as the caller sent it, if it is text that is not a
    number: pydantic reads a number (or a numeric text) as epoch seconds, or as
    milliseconds above 2e10, a guess a caller cannot see. `PydanticCustomError` otherwise
    (422 naming the field)."""
    if value is None or (isinstance(value, str) and not _NUMBER_TEXT.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "iso_8601",
        'must be an ISO 8601 timestamp with a UTC offset, e.g. "2030-01-01T09:00:00Z", '
        "not {given} (a number is not read as epoch seconds or milliseconds; for a delay, "
        "give delaySeconds)",
        {"given": _what(value)},
    )


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the number {value.strip()!r}"
    return "a list" if isinstance(value, list) else "an object"


class EnqueueRequest(BaseModel):
    """`POST /jobs`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    payload: Any = None
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000, strict=True)
    maxAttempts: int | None = Field(default=None, ge=1, le=1000, strict=True)
    delaySeconds: float = Field(default=0, ge=0, le=365 * 86_400, strict=True)
    # ISO 8601 text with a UTC offset: a naive time is refused, and so is a number.
    runAt: AwareDatetime | None = None
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=255)
    correlationId: str | None = Field(default=None, min_length=1, max_length=255)
    queue: str | None = Field(default=None, min_length=1, max_length=63)
    # The key of the job type's keyed rate / concurrency limits (docs/flow-control.md).
    rateKey: str | None = Field(default=None, min_length=1, max_length=200)
    concurrencyKey: str | None = Field(default=None, min_length=1, max_length=200)
    check_text = no_control_characters(
        "type", "idempotencyKey", "correlationId", "queue", "rateKey", "concurrencyKey"
    )
    check_run_at = field_validator("runAt", mode="before")(iso_8601_only)


class EnqueueResponse(BaseModel):
    """The seed's answer to `POST /jobs`."""

    success: bool = True
    jobId: str
    message: str
    duplicate: bool = False


class JobResponse(BaseModel):
    """`GET /jobs/{id}`."""

    success: bool = True
    job: dict[str, Any]


class JobListResponse(BaseModel):
    """`GET /jobs`."""

    success: bool = True
    count: int
    jobs: list[dict[str, Any]]
    nextCursor: str | None = None
    # The listing examined its window (10 000 jobs) without filling the page: more may
    # match further back; follow nextCursor.
    scanLimitReached: bool = False


class MessageResponse(BaseModel):
    """A success with a message, as the seed shows for retry and cancel."""

    success: bool = True
    message: str
    job: dict[str, Any] | None = None


class BatchResponse(BaseModel):
    """`GET /batches/{id}`: a batch's counts and progress."""

    success: bool = True
    batch: dict[str, Any]


class StatsResponse(BaseModel):
    """`GET /stats`."""

    success: bool = True
    stats: dict[str, Any]


class JobStatusResponse(BaseModel):
    """`GET /jobs/{id}/status`: a job's progress, flat, as a status-tracking endpoint
    answers it (`updatedAt`: the latest time the job was stored as changed)."""

    success: bool = True
    id: str
    type: str
    status: str
    attempts: int
    progress: float | None
    progressNote: str | None
    result: Any = None
    error: str | None
    createdAt: str
    updatedAt: str


class LimitsResponse(BaseModel):
    """`GET /limits`."""

    success: bool = True
    limits: list[dict[str, Any]]


def job_router(app: App) -> APIRouter:
    """The routes, bound to `app`."""
    router = APIRouter(tags=["jobs"], responses=ERRORS)

    @router.post("/jobs", response_model=EnqueueResponse)
    async def enqueue(body: EnqueueRequest) -> EnqueueResponse:
        try:
            job = await app.enqueue(
                body.type,
                body.payload,
                priority=body.priority,
                max_attempts=body.maxAttempts,
                delay_seconds=body.delaySeconds,
                run_at=body.runAt,
                idempotency_key=body.idempotencyKey,
                correlation_id=body.correlationId,
                queue=body.queue,
                rate_key=body.rateKey,
                concurrency_key=body.concurrencyKey,
            )
        except UnknownJobType as exc:
            raise ApiError(400, said(exc), "unknown_job_type") from None
        except UnknownQueue as exc:
            raise ApiError(400, said(exc), "unknown_queue") from None
        except JobRouteRefused as exc:
            raise ApiError(422, said(exc), "route_refused") from None
        except UniqueKeyMissing as exc:
            raise ApiError(400, said(exc), "unique_key_missing") from None
        except MessageTooLarge as exc:
            raise ApiError(413, said(exc), "too_large") from None
        except (InvalidPayload, InvalidQueueConfig, ValueError) as exc:
            raise ApiError(422, said(exc), "invalid") from None
        message = "Job already enqueued" if job.duplicate else "Job enqueued successfully"
        return EnqueueResponse(jobId=job.id, message=message, duplicate=job.duplicate)

    @router.get("/jobs/{job_id}", response_model=JobResponse)
    async def get_job(
        job_id: str,
        wait: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_WAIT_SECONDS,
                description="Seconds to wait for the job to finish before answering (a "
                "long poll; 0 answers at once).",
            ),
        ] = 0,
    ) -> JobResponse:
        try:
            job = await app.read.job_when_finished(job_id, wait) if wait else None
        except JobNotFound:
            raise ApiError(404, f"Job not found: {job_id}", "not_found") from None
        if job is None:
            job = await app.read.job(job_id)
        if job is None:
            raise ApiError(404, f"Job not found: {job_id}", "not_found")
        # A pending job says why it has not run yet: snoozed, or held by a limit.
        return JobResponse(job=job.to_dict() | await app.read.job_hold(job))

    @router.get("/jobs/{job_id}/status", response_model=JobStatusResponse)
    async def get_job_status(job_id: str) -> JobStatusResponse:
        job = await app.read.job(job_id)
        if job is None:
            raise ApiError(404, f"Job not found: {job_id}", "not_found")
        shown = job.to_dict()
        changes = [job.created_at, job.started_at, job.completed_at]
        changes += [a.finished_at for a in job.history]
        updated = max(moment for moment in changes if moment is not None)
        return JobStatusResponse(
            id=job.id,
            type=job.type,
            status=job.status.value,
            attempts=job.attempts,
            progress=job.progress,
            progressNote=job.progress_note,
            result=job.result,
            error=job.error,
            createdAt=shown["createdAt"],
            updatedAt=iso(updated) or shown["createdAt"],
        )

    @router.get("/jobs", response_model=JobListResponse)
    async def list_jobs(
        status: Annotated[JobStatus | None, Query()] = None,
        type: Annotated[str | None, Query(max_length=200)] = None,
        queue: Annotated[str | None, Query(max_length=63)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> JobListResponse:
        try:
            page = await app.read.jobs(
                status=status, type=type, queue=queue, limit=limit, cursor=cursor
            )
        except ValueError as exc:
            raise ApiError(400, said(exc), "invalid") from None
        jobs = [j.to_dict() for j in page.jobs]
        if (fit := items_within(jobs)) < len(jobs):  # ~8 MB at most: a shorter page, its cursor
            page = await app.read.jobs(
                status=status, type=type, queue=queue, limit=fit, cursor=cursor
            )
            jobs = [j.to_dict() for j in page.jobs]
        return JobListResponse(
            count=len(jobs),
            jobs=jobs,
            nextCursor=page.next_cursor,
            scanLimitReached=page.partial,
        )

    @router.post("/jobs/{job_id}/retry", response_model=MessageResponse)
    async def retry_job(job_id: str) -> MessageResponse:
        job = await _change(app.retry, job_id)
        return MessageResponse(message="Job retry queued", job=job)

    @router.delete("/jobs/{job_id}", response_model=MessageResponse)
    async def cancel_job(job_id: str) -> MessageResponse:
        job = await _change(app.cancel, job_id)
        done = job is not None and job.get("status") == JobStatus.CANCELLED.value
        return MessageResponse(
            message="Job cancelled" if done else "Job cancellation requested", job=job
        )

    @router.get("/batches/{batch_id}", response_model=BatchResponse)
    async def get_batch(batch_id: str) -> BatchResponse:
        batch = await app.get_batch(batch_id)
        if batch is None:
            raise ApiError(404, f"Batch not found: {batch_id}", "not_found")
        return BatchResponse(batch=batch.to_dict())

    @router.get("/limits", response_model=LimitsResponse)
    async def limits() -> LimitsResponse:
        """Every rate and concurrency limit: keys in use, running, waiting, starts per
        second over the last 10 s, and when its earliest held key frees up."""
        return LimitsResponse(limits=await app.read.limits())

    @router.get("/stats", response_model=StatsResponse)
    async def stats(
        queue: Annotated[str | None, Query(max_length=63)] = None,
        type: Annotated[str | None, Query(max_length=200)] = None,
    ) -> StatsResponse:
        return StatsResponse(stats=await app.read.job_stats(queue=queue, type=type))

    return router


async def _change(action: Any, job_id: str) -> dict[str, Any] | None:
    try:
        job = await action(job_id)
    except JobNotFound:
        raise ApiError(404, f"Job not found: {job_id}", "not_found") from None
    except InvalidJobState as exc:
        raise ApiError(409, said(exc), "wrong_state") from None
    except (InvalidMessage, ValueError) as exc:
        raise ApiError(400, said(exc), "invalid") from None
    result: dict[str, Any] = job.to_dict()
    return result
