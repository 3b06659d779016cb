"""Semantic 1: `attempts` counts deliveries, the current one included."""

from __future__ import annotations

from taskflare import App, MessageBatch
from taskflare.testing import drain


async def test_first_delivery_has_attempts_one(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    seen: list[int] = []

    @q.consumer
    async def handle(batch: MessageBatch[object]) -> None:
        seen.extend(m.attempts for m in batch.messages)

    await q.send_batch([{"body": i} for i in range(3)])
    await drain(app)
    assert seen == [1, 1, 1]


async def test_each_redelivery_increments_attempts(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=3)
    seen: list[int] = []

    @q.consumer
    async def handle(batch: MessageBatch[object]) -> None:
        seen.extend(m.attempts for m in batch.messages)
        raise RuntimeError("fail every time")

    await q.send("x")
    await drain(app)
    assert seen == [1, 2, 3, 4]


async def test_message_exposes_id_timestamp_and_body(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    seen: list[tuple[str, object, object]] = []

    @q.consumer
    async def handle(batch: MessageBatch[object]) -> None:
        assert batch.queue == "q"
        seen.extend((m.id, m.timestamp, m.body) for m in batch.messages)

    message_id = await q.send({"k": [1, 2]})
    await drain(app)
    assert len(seen) == 1
    got_id, timestamp, body = seen[0]
    assert got_id == message_id
    assert body == {"k": [1, 2]}
    assert getattr(timestamp, "tzinfo", None) is not None
