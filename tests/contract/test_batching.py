"""Semantic 2: a batch is delivered when full, or `max_batch_timeout` after its first message."""

from __future__ import annotations

import asyncio
import time

from helpers import running_worker
from taskflare import App, MessageBatch
from taskflare.registry.queues import QueueConfig
from taskflare.testing import drain

# The longest batch timeout a queue may declare [s]: a test that proves a batch did not
# wait for its timeout declares this one, so that only waiting for it could break the
# bound (a loaded machine delays a delivery by seconds, never by a minute).
LONGEST_BATCH_TIMEOUT = 60
# How long a test waits for a delivery it expects before failing [s]: a deadline, not a
# measure (the pytest timeout is 120 s).
DELIVERY_DEADLINE = 90


async def test_full_batch_is_delivered_before_the_timeout(app: App) -> None:
    q = app.queue("q", max_batch_size=5, max_batch_timeout=LONGEST_BATCH_TIMEOUT)
    sizes: list[int] = []
    delivered = asyncio.Event()

    @q.consumer
    async def handle(batch: MessageBatch[int]) -> None:
        sizes.append(len(batch))
        delivered.set()

    async with running_worker(app):
        await app.backend()  # connect first so the timing measures delivery only
        started = time.monotonic()
        await q.send_batch([{"body": i} for i in range(5)])
        await asyncio.wait_for(delivered.wait(), DELIVERY_DEADLINE)
        elapsed = time.monotonic() - started
    assert sizes == [5]
    # The bound is the batch timeout itself: only waiting for it takes that long.
    assert elapsed < LONGEST_BATCH_TIMEOUT, f"a full batch waited for its timeout ({elapsed:.2f}s)"


async def test_partial_batch_waits_for_max_batch_timeout_then_arrives_whole(app: App) -> None:
    q = app.queue("q", max_batch_size=10, max_batch_timeout=1)
    sizes: list[int] = []
    delivered = asyncio.Event()

    @q.consumer
    async def handle(batch: MessageBatch[int]) -> None:
        sizes.append(len(batch))
        delivered.set()

    async with running_worker(app):
        await app.backend()
        started = time.monotonic()
        await q.send(1)
        await q.send(2)
        await asyncio.wait_for(delivered.wait(), DELIVERY_DEADLINE)
        elapsed = time.monotonic() - started
    # One batch of both, not full (2 of 10): it waited instead of delivering the first
    # message at once, and the timeout is what released it. A loaded machine only makes
    # it later, so the lower bound is the measure and there is no upper one.
    assert sizes == [2]
    assert elapsed >= 0.9, f"partial batch arrived after {elapsed:.2f}s, before its 1 s timeout"


async def test_batch_timeout_counts_from_when_the_first_message_became_available(app: App) -> None:
    q = app.queue("q", max_batch_size=10, max_batch_timeout=1)
    delivered = asyncio.Event()

    @q.consumer
    async def handle(batch: MessageBatch[int]) -> None:
        delivered.set()

    async with running_worker(app):
        await app.backend()
        started = time.monotonic()
        await q.send(1, delay_seconds=1)  # available 1 s from now; the batch timer starts then
        await asyncio.wait_for(delivered.wait(), DELIVERY_DEADLINE)
        elapsed = time.monotonic() - started
    assert elapsed >= 1.9, f"delivered after {elapsed:.2f}s; expected delay 1 s + timeout 1 s"


async def test_zero_batch_timeout_delivers_at_once(app: App) -> None:
    q = app.queue("q", max_batch_size=100, max_batch_timeout=0)
    delivered = asyncio.Event()

    @q.consumer
    async def handle(batch: MessageBatch[int]) -> None:
        delivered.set()

    async with running_worker(app):
        await app.backend()
        started = time.monotonic()
        await q.send(1)
        await asyncio.wait_for(delivered.wait(), DELIVERY_DEADLINE)
        elapsed = time.monotonic() - started
    # The bound is what a 0 read as "not set" would wait: the default batch timeout.
    default = QueueConfig.__dataclass_fields__["max_batch_timeout"].default
    assert elapsed < default, f"max_batch_timeout=0 waited {elapsed:.2f}s, as for the default"


async def test_batches_hold_at_most_max_batch_size_messages(app: App) -> None:
    q = app.queue("q", max_batch_size=10, max_batch_timeout=0)
    sizes: list[int] = []

    @q.consumer
    async def handle(batch: MessageBatch[int]) -> None:
        sizes.append(len(batch))

    await q.send_batch([{"body": i} for i in range(25)])
    result = await drain(app)
    assert sizes == [10, 10, 5]
    assert result.batches == 3
    assert result.acked == 25


async def test_worker_splits_a_backlog_into_full_batches(app: App) -> None:
    q = app.queue("q", max_batch_size=4, max_batch_timeout=5)
    sizes: list[int] = []
    seen: set[int] = set()
    done = asyncio.Event()

    @q.consumer
    async def handle(batch: MessageBatch[int]) -> None:
        sizes.append(len(batch))
        seen.update(m.body for m in batch.messages)
        if len(seen) == 12:
            done.set()

    await q.send_batch([{"body": i} for i in range(12)])
    async with running_worker(app):
        await asyncio.wait_for(done.wait(), 10)
    assert sizes == [4, 4, 4]
