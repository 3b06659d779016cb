"""The conformance suite's fixtures and builders: a backend per test on a fresh database
(a new SQLite file, a new PostgreSQL schema, via `database_url`), and short ways to
store, claim and settle through the storage protocol itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from helpers import wait_until
from taskflare.backends import Backend, open_backend
from taskflare.backends.base import (
    AttemptRecord,
    ClaimedMessage,
    ClaimParams,
    ClaimResult,
    EnqueueParams,
    ExpiredLeaseParams,
    MessageGetParams,
    MessageRecord,
    NewMessage,
    QueueCountsParams,
    ReadyInfoParams,
)
from taskflare.ids import uuid7

OWNER = "worker-1"

OpenBackend = Callable[[], Awaitable[Backend]]


@pytest.fixture
async def backend(database_url: str) -> AsyncIterator[Backend]:
    """The backend of a fresh database (SQLite or PostgreSQL), closed after the test."""
    opened = open_backend(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def open_more(database_url: str, backend: Backend) -> AsyncIterator[OpenBackend]:
    """Open further backends on the test's database, each with its own connections (as
    other processes would be), closed after the test."""
    await backend.queue_counts(QueueCountsParams())  # the schema exists before they open
    opened: list[Backend] = []

    async def open_one() -> Backend:
        other = open_backend(database_url)
        opened.append(other)
        await other.queue_counts(QueueCountsParams("warm-up"))  # connected, schema checked
        return other

    try:
        yield open_one
    finally:
        for other in opened:
            await other.close()


# -- builders -------------------------------------------------------------------------


def message(
    queue: str = "q",
    body: bytes = b'"hello"',
    *,
    id: str | None = None,
    delay: float = 0.0,
    priority: int = 0,
    content_type: str = "json",
) -> NewMessage:
    """A plain queue message (no job type)."""
    return NewMessage(
        id=id or uuid7(),
        queue=queue,
        body=body,
        content_type=content_type,
        delay_seconds=delay,
        priority=priority,
    )


def job(
    type: str = "charge",
    queue: str = "jobs",
    *,
    id: str | None = None,
    key: str | None = None,
    max_attempts: int = 3,
    delay: float = 0.0,
    priority: int = 0,
    batch_id: str | None = None,
    body: bytes = b"{}",
) -> NewMessage:
    """A job: a message with a type and an attempt budget."""
    return NewMessage(
        id=id or uuid7(),
        queue=queue,
        body=body,
        content_type="json",
        delay_seconds=delay,
        priority=priority,
        type=type,
        max_attempts=max_attempts,
        idempotency_key=key,
        batch_id=batch_id,
    )


async def enqueue(backend: Backend, *messages: NewMessage) -> list[str]:
    """Store `messages` in one call; return their ids."""
    await backend.message_enqueue_many(EnqueueParams(messages))
    return [m.id for m in messages]


async def claim(
    backend: Backend,
    queue: str,
    limit: int = 10,
    *,
    visibility_timeout: float = 30.0,
    types: tuple[str, ...] | None = None,
    min_count: int = 1,
    max_wait: float = 0.0,
    lease_id: str | None = None,
) -> ClaimResult:
    """Claim from `queue` under a fresh lease."""
    return await backend.message_claim_many(
        ClaimParams(
            queue=queue,
            limit=limit,
            lease_id=lease_id or uuid7(),
            owner=OWNER,
            visibility_timeout=visibility_timeout,
            min_count=min_count,
            max_wait=max_wait,
            types=types,
        )
    )


async def claim_one(
    backend: Backend,
    queue: str,
    *,
    visibility_timeout: float = 30.0,
    types: tuple[str, ...] | None = None,
) -> ClaimedMessage:
    """Claim exactly one message of `queue` (failing the test if there is none)."""
    result = await claim(backend, queue, 1, visibility_timeout=visibility_timeout, types=types)
    claimed = result.messages
    assert len(claimed) == 1, f"expected one message of {queue!r} to claim, got {claimed}"
    return claimed[0]


async def record(backend: Backend, message_id: str) -> MessageRecord:
    """The stored row of `message_id` (failing the test if it is gone)."""
    found = await backend.message_get(MessageGetParams(message_id))
    assert found is not None, f"message {message_id} is gone"
    return found


async def gone(backend: Backend, message_id: str) -> bool:
    """Whether `message_id` is no longer stored (plain messages are deleted when acked)."""
    return await backend.message_get(MessageGetParams(message_id)) is None


def attempt_of(delivery: ClaimedMessage, outcome: str, error: str | None = None) -> AttemptRecord:
    """The attempt row a worker would record for this delivery."""
    now = time.time()
    return AttemptRecord(
        job_id=delivery.id,
        attempt=delivery.attempts,
        worker_id=OWNER,
        started_at=now,
        finished_at=now,
        outcome=outcome,
        error=error,
    )


async def backend_now(backend: Backend) -> float:
    """The backend's clock (PostgreSQL: the server's), which stamps every stored time."""
    return (await backend.queue_ready_info(ReadyInfoParams("clock", 1))).now


async def wait_for_expiry(backend: Backend, delivery: ClaimedMessage) -> None:
    """Poll until the lease of `delivery` has expired by the backend's clock."""

    async def expired() -> bool:
        leases = await backend.lease_list_expired(ExpiredLeaseParams(delivery.queue))
        return any(lease.id == delivery.id for lease in leases)

    await wait_until(expired, timeout=10, what=f"the lease of {delivery.id} to expire")
