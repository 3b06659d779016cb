"""Helpers for the job tests: run jobs inline until a condition holds, read a job's status."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from helpers import DEADLINE, wait_until
from taskflare import App, Job, JobStatus
from taskflare.testing import drain


async def drain_until(
    app: App, predicate: Callable[[], Awaitable[Any]], timeout: float = DEADLINE, what: str = ""
) -> Any:
    """Drain the app's job queues again and again until `predicate` holds (for short retry
    delays that a single `drain` leaves in the future)."""

    async def step() -> Any:
        await drain(app)
        return await predicate()

    return await wait_until(step, timeout=timeout, interval=0.02, what=what or "jobs to settle")


async def job_of(app: App, job_id: str) -> Job:
    """The job as stored now (it must exist)."""
    job = await app.get_job(job_id)
    assert job is not None, f"job {job_id} is gone"
    return job


async def status_of(app: App, job_id: str) -> JobStatus:
    """The job's status now."""
    return (await job_of(app, job_id)).status


async def wait_for_status(
    app: App, job_id: str, status: JobStatus, timeout: float = DEADLINE
) -> Job:
    """Poll until the job reaches `status` (a worker runs it elsewhere); return it."""

    async def reached() -> Job | None:
        job = await job_of(app, job_id)
        return job if job.status is status else None

    found: Job = await wait_until(reached, timeout=timeout, what=f"job {job_id} {status}")
    return found


async def wait_past(seconds: float) -> None:
    """Let `seconds` of wall-clock time pass (for TTLs and retention ages), polling."""
    until = time.time() + seconds
    await wait_until(lambda: time.time() > until, timeout=seconds + 10, interval=0.02)
