"""Sync twins (`send_sync`, `send_batch_sync`), plain-`def` consumers, and Apps across loops."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import state_counts
from taskflare import App, EmptyBatch, InvalidDelay, MessageBatch
from taskflare.backends.base import MessageListParams, MessageRecord
from taskflare.testing import drain


def stored(app: App, queue: str) -> list[MessageRecord]:
    async def read() -> list[MessageRecord]:
        return await (await app.backend()).message_list(MessageListParams(queue))

    return app.run_sync(read())


def test_send_sync_and_send_batch_sync_from_plain_code(database_url: str) -> None:
    app = App(database_url)
    try:
        q = app.queue("q")
        first = q.send_sync({"n": 1})
        batch_ids = q.send_batch_sync([{"body": "t", "content_type": "text"}, {"body": 3}])
        records = stored(app, "q")
        assert [r.id for r in records] == [first, *batch_ids]
        assert [r.content_type for r in records] == ["json", "text", "json"]
    finally:
        app.close_sync()


def test_sync_twins_validate_like_the_async_ones(database_url: str) -> None:
    app = App(database_url)
    try:
        q = app.queue("q")
        with pytest.raises(InvalidDelay):
            q.send_sync(1, delay_seconds=-1)
        with pytest.raises(EmptyBatch):
            q.send_batch_sync([])
        assert stored(app, "q") == []
    finally:
        app.close_sync()


def test_send_sync_from_many_threads_at_once(database_url: str) -> None:
    app = App(database_url)
    try:
        q = app.queue("q")
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda i: q.send_sync(i), range(40)))
        assert len(set(ids)) == 40
        assert sorted(r.id for r in stored(app, "q")) == sorted(ids)
    finally:
        app.close_sync()


def test_app_works_across_successive_event_loops(database_url: str) -> None:
    app = App(database_url)
    q = app.queue("q", max_batch_timeout=0)
    bodies: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        bodies.extend(m.body for m in batch.messages)

    asyncio.run(q.send(1))
    asyncio.run(q.send(2))
    q.send_sync(3)
    asyncio.run(drain(app))
    assert sorted(bodies) == [1, 2, 3]
    app.close_sync()


async def test_send_sync_from_a_running_loops_thread_pool(app: App) -> None:
    q = app.queue("q")
    loop = asyncio.get_running_loop()
    message_id = await loop.run_in_executor(None, lambda: q.send_sync("from a thread"))
    ids = await loop.run_in_executor(None, lambda: q.send_batch_sync([{"body": 1}, {"body": 2}]))
    records = await (await app.backend()).message_list(MessageListParams("q"))
    assert [r.id for r in records] == [message_id, *ids]
    # the async API still works on this loop afterwards
    await q.send(4)
    assert await state_counts(app, "q") == {"ready": 4}
    await loop.run_in_executor(None, app.close_sync)


async def test_plain_def_consumer_runs_in_a_thread(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    seen: list[tuple[int, bool]] = []

    @q.consumer
    def consume(batch: MessageBatch[int]) -> None:
        on_main = threading.current_thread() is threading.main_thread()
        seen.extend((m.body, on_main) for m in batch.messages)
        batch.messages[0].ack()

    await q.send_batch([{"body": 1}, {"body": 2}])
    result = await drain(app)
    assert seen == [(1, False), (2, False)]
    assert result.acked == 2


async def test_plain_def_consumer_failure_retries_its_messages(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)

    @q.consumer
    def consume(batch: MessageBatch[int]) -> None:
        raise RuntimeError("sync failure")

    await q.send(1)
    result = await drain(app)
    assert (result.acked, result.retried) == (0, 1)


async def test_plain_def_consumer_can_send_with_send_sync(app: App) -> None:
    source = app.queue("source", max_batch_timeout=0)
    sink = app.queue("sink", max_batch_timeout=0)
    forwarded: list[int] = []

    @source.consumer
    def forward(batch: MessageBatch[int]) -> None:
        sink.send_batch_sync([{"body": m.body * 10} for m in batch.messages])

    @sink.consumer
    async def collect(batch: MessageBatch[int]) -> None:
        forwarded.extend(m.body for m in batch.messages)

    await source.send_batch([{"body": 1}, {"body": 2}])
    await drain(app)
    assert sorted(forwarded) == [10, 20]
    await asyncio.get_running_loop().run_in_executor(None, app.close_sync)
