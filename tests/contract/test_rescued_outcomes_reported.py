"""A delivery settled by the lease rescuer (its worker was killed, or lost contact) is
reported like any outcome: lifecycle events, a `taskflare.jobs` line and the worker's
counters.

The rescuer stored the outcome (`retried`, or `failed` and dead-lettered once out of
attempts) but told no one: `@app.on("failed")` listeners (the place for Sentry or a
chat alert) never heard of a job that failed because its worker was OOM-killed on its
last attempt, nor `dead_lettered` of its copy, the jobs log had no `failed` line and
`taskflare_failed` did not count it.
Sidekiq's death handlers and Oban's telemetry missing crash-lost jobs are the peers'
version of this. The rescuing worker now fires them (the dead worker cannot).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from helpers import running_worker, wait_until
from taskflare import App, JobStatus, LifecycleEvent
from taskflare.backends.base import ClaimParams
from taskflare.ids import uuid7


def claim_and_die(queue: str) -> ClaimParams:
    """A claim by a worker that then dies: its lease lapses after 0.2 s."""
    return ClaimParams(
        queue=queue, limit=10, lease_id=uuid7(), owner="dead-worker", visibility_timeout=0.2
    )


async def test_a_job_whose_worker_died_fires_retried_then_failed_and_dead_lettered(
    app: App, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflare.jobs")

    @app.job("victim", queue="jobs", max_attempts=2)
    async def victim(payload: Any) -> None:
        raise AssertionError("never run: each claimer dies")

    # The rescuing worker's app consumes the queue but lacks the type, so it never
    # claims the job itself: only the dying claims below do.
    rescuer = App(database_url)
    rescuer.queue("jobs", visibility_timeout=0.2, dead_letter_queue="jobs-dlq", jobs=True)
    events: list[LifecycleEvent] = []
    for name in ("retried", "failed", "dead_lettered"):
        rescuer.on(name)(events.append)

    job = await app.enqueue("victim", {"n": 1})
    backend = await app.backend()
    try:
        async with running_worker(rescuer) as worker:
            for attempt in (1, 2):
                await wait_until(lambda: _pending(app, job.id), what="the job pending")
                (claimed,) = (await backend.message_claim_many(claim_and_die("jobs"))).messages
                assert claimed.attempts == attempt
                await wait_until(lambda n=attempt: len(events) >= n, what=f"event {attempt}")
            await wait_until(lambda: len(events) >= 3, what="the dead_lettered event")
            # ... and in its counters (`/metrics`, the dashboard's history).
            assert (worker.stats.retried["jobs"], worker.stats.failed["jobs"]) == (1, 1)
    finally:
        await rescuer.close()

    assert [(e.name, e.kind, e.id, e.attempt, e.type) for e in events] == [
        ("retried", "job", job.id, 1, "victim"),
        ("failed", "job", job.id, 2, "victim"),
        ("dead_lettered", "job", job.id, 2, "victim"),
    ]
    assert all("lease expired" in (e.error or "") for e in events)
    assert events[2].dead_letter_queue == "jobs-dlq"
    stored = await app.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.FAILED
    lines = [r.getMessage() for r in caplog.records if job.id in r.getMessage()]
    assert any('"event":"retried"' in line and '"attempt":1' in line for line in lines), lines
    assert any('"event":"failed"' in line and '"attempt":2' in line for line in lines), lines


async def test_a_message_whose_consumer_died_fires_retried(app: App) -> None:
    q = app.queue("work", visibility_timeout=0.2, max_retries=3)
    events: list[LifecycleEvent] = []
    app.on("retried")(events.append)

    @q.consumer
    async def consume(batch: Any) -> None:
        batch.ack_all()

    message_id = await q.send({"n": 1})
    backend = await app.backend()
    (claimed,) = (await backend.message_claim_many(claim_and_die("work"))).messages
    assert claimed.id == message_id
    await q.pause()  # the worker rescues the lease but claims nothing
    async with running_worker(app) as worker:
        await wait_until(lambda: events, what="the retried event")
        assert worker.stats.retried["work"] == 1
    [event] = events
    assert (event.name, event.kind, event.id) == ("retried", "message", message_id)
    assert event.attempt == 1
    assert event.error is not None and "lease expired" in event.error


async def _pending(app: App, job_id: str) -> bool:
    job = await app.get_job(job_id)
    return job is not None and job.status is JobStatus.PENDING
