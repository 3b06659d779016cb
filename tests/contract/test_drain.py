"""`taskflare.testing.drain`: run consumers in-process until nothing is ready."""

from __future__ import annotations

import time

from helpers import state_counts
from taskflare import App, MessageBatch
from taskflare.testing import DrainResult, drain


async def test_drain_runs_every_consumer_until_nothing_is_ready(app: App) -> None:
    a = app.queue("a", max_batch_size=2, max_batch_timeout=0)
    b = app.queue("b", max_batch_timeout=0)
    got: dict[str, list[int]] = {"a": [], "b": []}

    @a.consumer
    async def consume_a(batch: MessageBatch[int]) -> None:
        got["a"].extend(m.body for m in batch.messages)

    @b.consumer
    def consume_b(batch: MessageBatch[int]) -> None:
        got["b"].extend(m.body for m in batch.messages)

    await a.send_batch([{"body": i} for i in range(5)])
    await b.send(9)
    result = await drain(app)
    assert result == DrainResult(batches=4, acked=6, retried=0, failed=0)
    assert got == {"a": [0, 1, 2, 3, 4], "b": [9]}
    assert await state_counts(app, "a") == {} and await state_counts(app, "b") == {}


async def test_drain_does_not_wait_for_max_batch_timeout(app: App) -> None:
    timeout = 60  # the longest a queue may declare: only waiting for it takes that long
    q = app.queue("q", max_batch_size=100, max_batch_timeout=timeout)
    q.consumer(lambda batch: None)
    await q.send(1)
    started = time.monotonic()
    result = await drain(app)
    assert result.acked == 1
    elapsed = time.monotonic() - started
    assert elapsed < timeout, f"drain waited {elapsed:.1f}s for the batch timeout"


async def test_drain_only_runs_the_named_queues(app: App) -> None:
    a = app.queue("a", max_batch_timeout=0)
    b = app.queue("b", max_batch_timeout=0)
    a.consumer(lambda batch: None)
    b.consumer(lambda batch: None)
    await a.send(1)
    await b.send(1)
    result = await drain(app, ["b"])
    assert result.acked == 1
    assert await state_counts(app, "a") == {"ready": 1}
    assert await state_counts(app, "b") == {}


async def test_drain_leaves_messages_delayed_into_the_future(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    q.consumer(lambda batch: None)
    await q.send(1, delay_seconds=60)
    assert await drain(app) == DrainResult(0, 0, 0, 0)
    assert await state_counts(app, "q") == {"ready": 1}


async def test_drain_counts_retries_and_failures(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=2)

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        for m in batch.messages:
            if m.body == 0:
                m.retry()

    await q.send_batch([{"body": 0}, {"body": 1}])
    result = await drain(app)
    assert result == DrainResult(batches=3, acked=1, retried=2, failed=1)


async def test_drain_with_nothing_to_do_returns_zeros(app: App) -> None:
    q = app.queue("q")
    q.consumer(lambda batch: None)
    assert await drain(app) == DrainResult(0, 0, 0, 0)
