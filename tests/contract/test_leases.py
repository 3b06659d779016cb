"""Semantic 8 (in-process part): expired leases are rescued, live leases are kept by heartbeat.

A "dead worker" is simulated by claiming through the backend protocol and never
settling; killing real worker processes is the integration suite's job.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from helpers import get, running_worker, state_counts, wait_until
from taskflare import App, MessageBatch
from taskflare.backends.base import ClaimParams, MessageListParams
from taskflare.ids import uuid7
from taskflare.worker.rescue import rescue_expired


def claim_params(queue: str, visibility_timeout: float) -> ClaimParams:
    return ClaimParams(
        queue=queue,
        limit=10,
        lease_id=uuid7(),
        owner="a-worker-that-dies",
        visibility_timeout=visibility_timeout,
    )


async def test_claim_counts_the_attempt_and_leases_the_message(app: App) -> None:
    q = app.queue("q", visibility_timeout=5)
    message_id = await q.send("x")
    backend = await app.backend()
    before = time.time()
    (claimed,) = (await backend.message_claim_many(claim_params("q", 5))).messages
    after = time.time()
    assert claimed.id == message_id and claimed.attempts == 1
    record = await get(app, message_id)
    assert record is not None and record.state == "leased" and record.attempts == 1
    assert record.lease_expires_at is not None
    # 5 s from the claim, which ran between `before` and `after` (the slack: the database
    # stores microseconds; load widens the window, it cannot move the lease out of it).
    assert before + 5 - 0.01 <= record.lease_expires_at <= after + 5 + 0.01
    # a leased message is not handed to anyone else
    assert (await backend.message_claim_many(claim_params("q", 5))).messages == []


async def test_message_whose_lease_expires_is_redelivered_with_attempts_plus_one(
    app: App,
) -> None:
    q = app.queue("q", max_batch_timeout=0, visibility_timeout=1)
    delivered: list[tuple[str, int, float]] = []
    redelivered = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[str]) -> None:
        delivered.extend((m.id, m.attempts, time.monotonic()) for m in batch.messages)
        redelivered.set()

    message_id = await q.send("x")
    backend = await app.backend()
    claimed_at = time.monotonic()
    (claimed,) = (await backend.message_claim_many(claim_params("q", 1))).messages
    assert claimed.attempts == 1
    # ...and the claimer dies without settling or heartbeating.
    async with running_worker(app):
        await asyncio.wait_for(redelivered.wait(), 10)
    assert [(i, a) for i, a, _ in delivered] == [(message_id, 2)]
    waited = delivered[0][2] - claimed_at
    assert waited >= 0.95, f"redelivered {waited:.2f}s after the claim, before its lease expired"
    assert await state_counts(app, "q") == {}


async def test_expired_lease_on_the_last_attempt_fails_and_dead_letters(app: App) -> None:
    q = app.queue("q", max_retries=0, visibility_timeout=0.2, dead_letter_queue="q-dlq")
    message_id = await q.send({"k": "v"})
    backend = await app.backend()
    await backend.message_claim_many(claim_params("q", 0.2))
    spec = app.registry.queue("q")

    async def rescued() -> bool:
        result = await rescue_expired(backend, spec)
        return result.failed == 1

    await wait_until(rescued, what="the rescuer to fail the expired message")
    record = await get(app, message_id)
    assert record is not None and record.state == "failed" and record.attempts == 1
    assert record.last_error is not None and "lease expired" in record.last_error
    (copy,) = await backend.message_list(MessageListParams("q-dlq"))
    assert copy.body == record.body and copy.content_type == "json"


async def test_rescue_leaves_unexpired_leases_alone(app: App) -> None:
    q = app.queue("q", visibility_timeout=30)
    message_id = await q.send("x")
    backend = await app.backend()
    await backend.message_claim_many(claim_params("q", 30))
    result = await rescue_expired(backend, app.registry.queue("q"))
    assert (result.requeued, result.failed) == (0, 0)
    record = await get(app, message_id)
    assert record is not None and record.state == "leased"


async def test_expired_lease_requeue_does_not_count_an_extra_attempt(app: App) -> None:
    q = app.queue("q", visibility_timeout=0.2)
    message_id = await q.send("x")
    backend = await app.backend()
    await backend.message_claim_many(claim_params("q", 0.2))
    spec = app.registry.queue("q")

    async def requeued() -> bool:
        return (await rescue_expired(backend, spec)).requeued == 1

    await wait_until(requeued, what="the rescuer to requeue the expired message")
    record = await get(app, message_id)
    assert record is not None and record.state == "ready" and record.attempts == 1


async def test_settling_with_a_lost_lease_is_ignored(app: App) -> None:
    """A worker that lost its lease (rescued, re-claimed elsewhere) cannot ack the new claim."""
    from taskflare.backends.base import LeaseRef, Settlement

    q = app.queue("q", visibility_timeout=0.2)
    message_id = await q.send("x")
    backend = await app.backend()
    (stale,) = (await backend.message_claim_many(claim_params("q", 0.2))).messages
    spec = app.registry.queue("q")

    async def requeued() -> bool:
        return (await rescue_expired(backend, spec)).requeued == 1

    await wait_until(requeued, what="the rescuer to requeue the expired message")
    (fresh,) = (await backend.message_claim_many(claim_params("q", 30))).messages
    result = await backend.message_settle_many(
        Settlement(acks=[LeaseRef(stale.id, stale.lease_id)])
    )
    assert result.acked == 0
    record = await get(app, message_id)
    assert record is not None and record.state == "leased" and record.attempts == 2
    result = await backend.message_settle_many(
        Settlement(acks=[LeaseRef(fresh.id, fresh.lease_id)])
    )
    assert result.acked == 1
    assert await get(app, message_id) is None


async def test_heartbeat_keeps_a_long_running_batch_from_being_redelivered(app: App) -> None:
    visibility_timeout = 0.5
    q = app.queue("q", max_batch_timeout=0, visibility_timeout=visibility_timeout)
    deliveries: list[int] = []
    finished = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[str]) -> None:
        deliveries.extend(m.attempts for m in batch.messages)
        await asyncio.sleep(4 * visibility_timeout)  # slow work, well past the lease
        finished.set()

    message_id = await q.send("slow")
    async with running_worker(app):
        await asyncio.wait_for(finished.wait(), 10)

        async def acked() -> bool:
            return await get(app, message_id) is None

        await wait_until(acked, what="the slow message to be acked")
    assert deliveries == [1], f"the message was redelivered while its handler ran: {deliveries}"


async def test_rescued_job_fails_on_its_own_attempt_budget_not_the_queues(app: App) -> None:
    """A `max_attempts=1` job in a queue that allows 4 deliveries: its lease expiring on
    the first attempt fails it, and the error states the job's numbers (1, not 4)."""
    app.queue("jobs", max_retries=3, visibility_timeout=0.2)

    @app.job("once", queue="jobs", max_attempts=1)
    async def once(payload: object) -> None:
        raise AssertionError("never run: the claimer dies")

    job = await app.enqueue("once", {"n": 1})
    backend = await app.backend()
    await backend.message_claim_many(claim_params("jobs", 0.2))
    spec = app.registry.queue("jobs")

    async def rescued() -> bool:
        return (await rescue_expired(backend, spec)).failed == 1

    await wait_until(rescued, what="the rescuer to fail the expired job")
    got = await app.get_job(job.id)
    assert got is not None and got.status == "failed"
    assert got.error is not None
    assert "its only delivery" in got.error and "attempt 1 of 1" in got.error
    assert "4" not in got.error
    assert [a.outcome for a in got.history] == ["lost"]


async def test_a_job_deleted_while_it_runs_is_logged_as_deleted_not_as_stolen(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting a running job (the dashboard's delete) leaves its worker nothing to
    settle: the `lost` line says the job may have been deleted, not only that another
    worker took its lease (purge keeps running jobs: see test_http_queues)."""
    caplog.set_level(logging.WARNING, logger="taskflare.jobs")
    started, release = asyncio.Event(), asyncio.Event()

    @app.job("held")
    async def held(payload: object) -> None:
        started.set()
        await release.wait()

    job = await app.enqueue("held", {})
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        assert await app.read.job_delete([job.id]) == 1
        release.set()

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if '"lost"' in r.getMessage()]

        [line] = await wait_until(logged, what="the lost line")
    assert "deleted while it ran" in line, line
