"""Semantic 5: after `max_retries + 1` deliveries a message fails, is kept, and is dead-lettered."""

from __future__ import annotations

import pytest

from helpers import get, running_worker, state_counts, wait_until
from taskflare import App, MessageBatch
from taskflare.backends.base import MessageListParams, QueueCountsParams
from taskflare.testing import drain


class Boom(Exception):
    pass


async def test_message_failing_with_max_retries_3_is_delivered_exactly_4_times(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=3, dead_letter_queue="q-dlq")
    deliveries: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        deliveries.extend(m.attempts for m in batch.messages)
        raise Boom("always fails 4411")

    message_id = await q.send({"to": "a@b.c"})
    result = await drain(app)
    assert deliveries == [1, 2, 3, 4]
    assert (result.retried, result.failed, result.acked) == (3, 1, 0)
    record = await get(app, message_id)
    assert record is not None
    assert record.state == "failed"
    assert record.attempts == 4
    assert record.finished_at is not None
    assert record.last_error is not None
    assert "always fails 4411" in record.last_error
    assert "Traceback" in record.last_error and "Boom" in record.last_error


async def test_message_retried_past_max_retries_goes_to_dlq(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=3, dead_letter_queue="q-dlq")

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        raise Boom("fail")

    message_id = await q.send({"to": "a@b.c", "n": [1, 2.5, None]})
    await drain(app)
    backend = await app.backend()
    original = await get(app, message_id)
    dead = await backend.message_list(MessageListParams("q-dlq"))
    assert original is not None and len(dead) == 1
    copy = dead[0]
    assert copy.id != message_id
    assert copy.state == "ready"
    assert copy.body == original.body
    assert copy.content_type == original.content_type == "json"
    assert copy.origin_queue == "q"
    assert copy.origin_id == message_id


async def test_dead_letter_says_why_the_original_died_and_after_how_many_deliveries(
    app: App,
) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=2, dead_letter_queue="q-dlq")

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        raise Boom("card declined 7731")

    message_id = await q.send({"n": 1})
    await drain(app)
    dead = await app.read.messages("q-dlq")
    assert len(dead) == 1
    assert dead[0]["originId"] == message_id
    assert dead[0]["originAttempts"] == 3
    assert "card declined 7731" in (dead[0]["lastError"] or "")
    failed = await app.read.messages("q", state="failed")
    assert [m["id"] for m in failed] == [message_id]
    assert failed[0]["attempts"] == 3 and failed[0]["originAttempts"] is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("plain text é ✓", "text"), (b"\x00\xffraw bytes\x80", "bytes"), ([1, {"a": None}], "json")],
)
async def test_dead_lettered_body_and_content_type_are_unchanged(
    app: App, body: object, content_type: str
) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=0, dead_letter_queue="q-dlq")
    dlq = app.get_queue("q-dlq")
    received: list[tuple[object, str, int]] = []

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        raise Boom("fail")

    @dlq.consumer
    async def consume_dead(batch: MessageBatch[object]) -> None:
        received.extend((m.body, m.content_type, m.attempts) for m in batch.messages)

    message_id = await q.send(body, content_type=content_type.upper())
    await drain(app, ["q"])
    backend = await app.backend()
    original = await get(app, message_id)
    (copy,) = await backend.message_list(MessageListParams("q-dlq"))
    assert original is not None
    assert copy.body == original.body
    assert copy.content_type == content_type
    await drain(app, ["q-dlq"])
    assert received == [(body, content_type, 1)]


async def test_max_retries_0_delivers_once(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=0)
    deliveries: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        deliveries.extend(m.attempts for m in batch.messages)
        raise Boom("fail")

    message_id = await q.send(1)
    result = await drain(app)
    assert deliveries == [1]
    assert (result.retried, result.failed) == (0, 1)
    record = await get(app, message_id)
    assert record is not None and record.state == "failed"


async def test_failed_message_without_dlq_is_kept_in_state_failed(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=1)

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        raise Boom("fail")

    message_id = await q.send("keep me")
    await drain(app)
    assert await state_counts(app, "q") == {"failed": 1}
    record = await get(app, message_id)
    assert record is not None and record.state == "failed"
    backend = await app.backend()
    holding = {
        c.name for c in await backend.queue_counts(QueueCountsParams()) if any(c.by_state.values())
    }
    assert holding == {"q"}


async def test_undeclared_dlq_is_created_on_first_use(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=0, dead_letter_queue="never-declared")

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        raise Boom("fail")

    assert "never-declared" in app.queues
    await q.send(1)
    await drain(app)
    assert await state_counts(app, "never-declared") == {"ready": 1}
    # and it is a queue like any other: it can be sent to directly
    await app.get_queue("never-declared").send(2)
    assert await state_counts(app, "never-declared") == {"ready": 2}


async def test_dlq_declared_later_keeps_its_own_settings(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=0, dead_letter_queue="dead")
    dead = app.queue("dead", max_batch_size=3, max_retries=7)
    assert app.get_queue("dead") is dead
    assert dead.config.max_retries == 7
    assert q.config.dead_letter_queue == "dead"


async def test_only_the_exhausted_messages_of_a_batch_are_dead_lettered(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=1, dead_letter_queue="q-dlq")

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        for m in batch.messages:
            if m.body == 0:
                m.retry()  # message 0 always retried; message 1 acked
            else:
                m.ack()

    await q.send_batch([{"body": 0}, {"body": 1}])
    await drain(app)
    backend = await app.backend()
    dead = await backend.message_list(MessageListParams("q-dlq"))
    assert [d.body for d in dead] == [b"0"]
    assert await state_counts(app, "q") == {"failed": 1}


async def test_worker_fails_and_dead_letters_after_max_retries(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=2, dead_letter_queue="q-dlq")
    deliveries: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[object]) -> None:
        deliveries.extend(m.attempts for m in batch.messages)
        raise Boom("fail")

    message_id = await q.send(1)

    async def dead_lettered() -> bool:
        return await state_counts(app, "q-dlq") == {"ready": 1}

    async with running_worker(app):
        await wait_until(dead_lettered, what="the message in the DLQ")
    assert deliveries == [1, 2, 3]
    record = await get(app, message_id)
    assert record is not None and record.state == "failed"
