"""The in-process `Worker`: starting, stopping, choosing queues, and odd messages."""

from __future__ import annotations

import asyncio

import pytest

from helpers import get, running_worker, state_counts
from taskflare import App, InvalidQueueConfig, MessageBatch, UnknownQueue, Worker, WorkerConfig
from taskflare.backends.base import EnqueueParams, MessageListParams, NewMessage
from taskflare.ids import uuid7
from taskflare.testing import drain


async def test_stop_before_run_makes_run_return_at_once(app: App) -> None:
    q = app.queue("q")
    q.consumer(lambda batch: None)
    worker = Worker(app)
    worker.stop()
    await asyncio.wait_for(worker.run(), 10)


async def test_stop_twice_is_safe(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    delivered = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        delivered.set()

    worker = Worker(app)
    task = asyncio.create_task(worker.run())
    await q.send(1)
    await asyncio.wait_for(delivered.wait(), 10)
    worker.stop()
    worker.stop()
    await asyncio.wait_for(task, 10)


async def test_worker_without_any_consumer_refuses_to_run(app: App) -> None:
    app.queue("q")
    with pytest.raises(InvalidQueueConfig, match="no queue with a consumer"):
        await Worker(app).run()


async def test_worker_refuses_a_named_queue_without_consumer(app: App) -> None:
    app.queue("q")
    with pytest.raises(InvalidQueueConfig, match="no consumer"):
        Worker(app, WorkerConfig(queues=("q",)))
    with pytest.raises(UnknownQueue, match="nope"):
        Worker(app, WorkerConfig(queues=("nope",)))


async def test_worker_consumes_only_the_queues_it_is_given(app: App) -> None:
    a = app.queue("a", max_batch_timeout=0)
    b = app.queue("b", max_batch_timeout=0)
    got_b = asyncio.Event()

    @a.consumer
    async def consume_a(batch: MessageBatch[int]) -> None:
        raise AssertionError("queue a is not this worker's")

    @b.consumer
    async def consume_b(batch: MessageBatch[int]) -> None:
        got_b.set()

    await a.send(1)
    await b.send(1)
    async with running_worker(app, WorkerConfig(queues=("b",))):
        await asyncio.wait_for(got_b.wait(), 10)
    assert await state_counts(app, "a") == {"ready": 1}


async def test_message_sent_through_another_app_on_the_same_database_is_delivered(
    app: App,
) -> None:
    q = app.queue("q", max_batch_timeout=0)
    delivered = asyncio.Event()
    bodies: list[str] = []

    @q.consumer
    async def consume(batch: MessageBatch[str]) -> None:
        bodies.extend(m.body for m in batch.messages)
        delivered.set()

    producer = App(app.database_url)
    try:
        async with running_worker(app):
            await app.backend()
            await producer.queue("q").send("from elsewhere")
            await asyncio.wait_for(delivered.wait(), 10)
    finally:
        await producer.close()
    assert bodies == ["from elsewhere"]


async def test_undecodable_body_fails_without_reaching_the_consumer(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, dead_letter_queue="q-dlq")
    bodies: list[object] = []

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        bodies.extend(m.body for m in batch.messages)

    good = await q.send({"ok": True})
    bad = uuid7()
    backend = await app.backend()
    await backend.message_enqueue_many(
        EnqueueParams([NewMessage(id=bad, queue="q", body=b"{not json", content_type="json")])
    )
    await drain(app, ["q"])
    assert bodies == [{"ok": True}]
    assert await get(app, good) is None
    record = await get(app, bad)
    assert record is not None and record.state == "failed"
    assert record.last_error is not None and "decoded" in record.last_error
    (copy,) = await backend.message_list(MessageListParams("q-dlq"))
    assert copy.body == b"{not json"
