"""Semantic 2: a batch is delivered when full, or `max_batch_timeout` after its first message."""

from __future__ import annotations

import asyncio
import time

from helpers import running_worker
from taskflare import App, MessageBatch
from taskflare.testing import drain


async def test_full_batch_is_delivered_before_the_timeout(app: App) -> None:
    q = app.queue("q", max_batch_size=5, max_batch_timeout=30)
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
        await asyncio.wait_for(delivered.wait(), 10)
        elapsed = time.monotonic() - started
    assert sizes == [5]
    # Waiting for the batch timeout would take 30 s; the bound leaves room for a loaded machine.
    assert elapsed < 10, f"a full batch took {elapsed:.2f}s; it should not wait for the timeout"


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
        await asyncio.wait_for(delivered.wait(), 10)
        elapsed = time.monotonic() - started
    assert sizes == [2]
    assert 0.9 <= elapsed < 3.0, f"partial batch arrived after {elapsed:.2f}s, expected ~1s"


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
        await asyncio.wait_for(delivered.wait(), 10)
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
        await asyncio.wait_for(delivered.wait(), 10)
        elapsed = time.monotonic() - started
    # Waiting for the batch to fill would take the default max_batch_timeout (5 s); the
    # bound leaves room for a loaded machine without letting that through.
    assert elapsed < 4.0, f"max_batch_timeout=0 still took {elapsed:.2f}s"


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
