"""Semantic 12: a paused queue delivers nothing while sends still succeed; resume delivers."""

from __future__ import annotations

import asyncio
import contextlib

from helpers import running_worker, state_counts
from taskflare import App, MessageBatch
from taskflare.backends.base import QueueCountsParams
from taskflare.testing import drain


async def test_paused_queue_delivers_nothing_but_accepts_sends(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    other = app.queue("other", max_batch_timeout=0)
    seen: list[str] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        seen.append("q")

    @other.consumer
    async def consume_other(batch: MessageBatch[int]) -> None:
        seen.append("other")

    await q.pause()
    await q.send(1)
    await q.send_batch([{"body": 2}, {"body": 3}])
    await other.send(1)
    result = await drain(app)
    assert seen == ["other"]
    assert result.batches == 1
    assert await state_counts(app, "q") == {"ready": 3}
    paused = [c.paused for c in await (await app.backend()).queue_counts(QueueCountsParams("q"))]
    assert paused == [True]


async def test_resumed_queue_delivers_what_was_sent_while_paused(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    bodies: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        bodies.extend(m.body for m in batch.messages)

    await q.pause()
    await q.send(1)
    await drain(app)
    assert bodies == []
    await q.resume()
    await drain(app)
    assert bodies == [1]
    assert await state_counts(app, "q") == {}


async def test_running_worker_holds_a_paused_queue_and_resumes_promptly(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    delivered = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        delivered.set()

    await q.pause()
    async with running_worker(app):
        await q.send(1)
        with contextlib.suppress(TimeoutError):  # give it the chance to (wrongly) deliver
            await asyncio.wait_for(delivered.wait(), 1.5)
        assert not delivered.is_set(), "a paused queue delivered a message"
        assert await state_counts(app, "q") == {"ready": 1}
        await q.resume()
        await asyncio.wait_for(delivered.wait(), 5)


async def test_pausing_one_queue_does_not_pause_another(app: App) -> None:
    a = app.queue("a", max_batch_timeout=0)
    b = app.queue("b", max_batch_timeout=0)
    got_b = asyncio.Event()

    @a.consumer
    async def consume_a(batch: MessageBatch[int]) -> None:
        raise AssertionError("paused queue delivered")

    @b.consumer
    async def consume_b(batch: MessageBatch[int]) -> None:
        got_b.set()

    await a.pause()
    await a.send(1)
    await b.send(1)
    async with running_worker(app):
        await asyncio.wait_for(got_b.wait(), 5)
    assert await state_counts(app, "a") == {"ready": 1}
