"""Cloudflare Queues message semantics, as a Workers user relies on them: identity and
timestamps across deliveries, delay precedence in a batch, explicit acks that survive a
failing handler, and dead-letter queues that lose nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from helpers import running_worker, state_counts, wait_until
from taskflare import App, Message, MessageBatch
from taskflare.testing import drain


async def test_id_timestamp_and_body_stay_the_same_on_every_redelivery(app: App) -> None:
    q = app.queue("orders", max_batch_timeout=0, max_retries=2)
    seen: list[tuple[str, datetime, int, Any]] = []

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        assert batch.queue == "orders"
        for m in batch.messages:
            seen.append((m.id, m.timestamp, m.attempts, m.body))
        raise RuntimeError("always fails")

    before = datetime.now(UTC)
    message_id = await q.send({"order": 7})
    after = datetime.now(UTC)
    await drain(app)
    assert [s[2] for s in seen] == [1, 2, 3]
    assert {s[0] for s in seen} == {message_id}
    assert {s[3]["order"] for s in seen} == {7}
    stamps = {s[1] for s in seen}
    assert len(stamps) == 1
    stamp = stamps.pop()
    assert stamp.tzinfo is not None
    assert before - timedelta(seconds=1) <= stamp <= after + timedelta(seconds=1)


async def test_a_delayed_messages_timestamp_is_when_it_was_sent(app: App) -> None:
    q = app.queue("later", max_batch_timeout=0)
    got: list[Message[Any]] = []

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        got.extend(batch.messages)

    await q.send("warm-up", delay_seconds=3600)  # the schema exists before timing starts
    sent = datetime.now(UTC)
    await q.send("hello", delay_seconds=1.5)
    returned = datetime.now(UTC)
    async with running_worker(app):
        await wait_until(lambda: got, what="the delayed message")
    delivered = datetime.now(UTC)
    assert delivered - sent >= timedelta(seconds=1.5)
    # The time it was sent, not the time it became available (1.5 s later).
    slack = timedelta(seconds=0.3)
    assert sent - slack <= got[0].timestamp <= returned + slack


async def test_an_item_delay_of_zero_overrides_the_batch_delay(app: App) -> None:
    q = app.queue("mixed", max_batch_timeout=0)
    got: list[Any] = []

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        got.extend(m.body for m in batch.messages)

    await q.send_batch(
        [
            {"body": "now", "delay_seconds": 0},
            {"body": "batch-delay"},
            {"body": "own", "delay_seconds": 5},
        ],
        delay_seconds=3600,
    )
    await drain(app)
    assert got == ["now"]
    assert state_counts_ready(await state_counts(app, "mixed")) == 2


def state_counts_ready(counts: dict[str, int]) -> int:
    return counts.get("ready", 0)


async def test_a_plain_def_consumer_acks_then_raises_and_the_ack_holds(app: App) -> None:
    q = app.queue("sync", max_batch_timeout=0, retry_delay=600)
    calls: list[int] = []

    @q.consumer
    def consume(batch: MessageBatch[int]) -> None:
        calls.append(threading.get_ident())
        batch.messages[0].ack()
        raise RuntimeError("fails after acking the first")

    ids = await q.send_batch([{"body": 1}, {"body": 2}])
    await drain(app)
    assert len(calls) == 1 and calls[0] != threading.get_ident()
    first = await q.get_message(ids[0])
    second = await q.get_message(ids[1])
    assert first is None  # acked: deleted
    assert second is not None and second.state == "ready" and second.attempts == 1


async def test_ack_all_then_a_timeout_retries_nothing(app: App) -> None:
    q = app.queue("slow", max_batch_timeout=0, retry_delay=600)

    @q.consumer(timeout=0.2)
    async def consume(batch: MessageBatch[int]) -> None:
        batch.ack_all()
        await asyncio.sleep(5)

    await q.send_batch([{"body": 1}, {"body": 2}, {"body": 3}])
    result = await drain(app)
    assert (result.acked, result.retried, result.failed) == (3, 0, 0)
    assert await state_counts(app, "slow") == {}


async def test_every_message_of_failing_batches_reaches_the_dead_letter_queue_once(
    app: App,
) -> None:
    q = app.queue(
        "jobs", max_batch_size=7, max_batch_timeout=0, max_retries=1, dead_letter_queue="jobs-dlq"
    )

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        batch.messages[0].ack()  # the first of each batch succeeds
        raise RuntimeError("the rest fail")

    ids = await q.send_batch([{"body": n} for n in range(30)])
    await drain(app)
    failed = await q.list_messages("failed", limit=100)
    dead = await app.get_queue("jobs-dlq").list_messages(limit=100)
    assert len(failed) == len(dead)
    assert sorted(d.origin_id or "" for d in dead) == sorted(f.id for f in failed)
    assert {d.origin_queue for d in dead} == {"jobs"}
    assert all(f.attempts == 2 for f in failed)
    # Nothing lost: every message is either acked (gone) or failed with a dead letter.
    acked = [i for i in ids if await q.get_message(i) is None]
    assert len(acked) + len(failed) == 30
    assert sorted(d.body for d in dead) == sorted(f.body for f in failed)


async def test_a_dead_letter_queue_with_its_own_dead_letter_queue_passes_failures_on(
    app: App,
) -> None:
    first = app.queue("a", max_batch_timeout=0, max_retries=0, dead_letter_queue="a-dlq")
    second = app.queue("a-dlq", max_batch_timeout=0, max_retries=1, dead_letter_queue="a-dlq-dlq")
    deliveries: list[tuple[str, int]] = []

    @first.consumer
    async def on_a(batch: MessageBatch[Any]) -> None:
        deliveries.extend(("a", m.attempts) for m in batch.messages)
        raise RuntimeError("a fails")

    @second.consumer
    async def on_dlq(batch: MessageBatch[Any]) -> None:
        deliveries.extend(("a-dlq", m.attempts) for m in batch.messages)
        raise RuntimeError("the dlq consumer fails too")

    await first.send({"k": "v"})
    await drain(app)
    assert deliveries == [("a", 1), ("a-dlq", 1), ("a-dlq", 2)]
    last = await app.get_queue("a-dlq-dlq").list_messages(limit=10)
    assert [(m.body, m.origin_queue) for m in last] == [({"k": "v"}, "a-dlq")]


async def test_replayed_dead_letters_get_a_fresh_budget_and_can_die_again(app: App) -> None:
    q = app.queue("replay", max_batch_timeout=0, max_retries=1, dead_letter_queue="replay-dlq")
    attempts: list[int] = []
    healthy = [False]

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        attempts.extend(m.attempts for m in batch.messages)
        if not healthy[0]:
            raise RuntimeError("down")

    await q.send("payload")
    await drain(app, ["replay"])
    assert attempts == [1, 2]
    dlq = app.get_queue("replay-dlq")
    assert len(await dlq.list_messages(limit=10)) == 1

    assert await q.replay_dead_letters() == 1
    assert await dlq.list_messages(limit=10) == []
    await drain(app, ["replay"])
    assert attempts == [1, 2, 1, 2]  # a whole new budget: max_retries + 1 deliveries
    assert len(await dlq.list_messages(limit=10)) == 1  # dead-lettered again, once

    healthy[0] = True
    assert await q.replay_dead_letters() == 1
    await drain(app, ["replay"])
    assert attempts == [1, 2, 1, 2, 1]
    assert await dlq.list_messages(limit=10) == []


async def test_a_retry_delay_holds_in_a_running_worker(app: App) -> None:
    q = app.queue("later-again", max_batch_timeout=0)
    times: list[float] = []

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        times.append(time.monotonic())
        if len(times) == 1:
            batch.retry_all(delay_seconds=0.6)

    await q.send("x")
    async with running_worker(app):
        await wait_until(lambda: len(times) >= 2, what="the redelivery")
    assert times[1] - times[0] >= 0.6


async def test_a_dead_letter_keeps_the_original_timestamp_body_and_content_type(
    app: App,
) -> None:
    q = app.queue("stamped", max_batch_timeout=0, max_retries=1, dead_letter_queue="stamped-dlq")
    dlq = app.queue("stamped-dlq", max_batch_timeout=0)
    originals: list[Message[Any]] = []
    dead: list[Message[Any]] = []

    @q.consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        originals.extend(batch.messages)
        raise RuntimeError("fails")

    @dlq.consumer
    async def consume_dead(batch: MessageBatch[Any]) -> None:
        dead.extend(batch.messages)

    await q.send_batch(
        [{"body": "plain", "content_type": "text"}, {"body": b"\x00\x01", "content_type": "bytes"}]
    )
    await drain(app, ["stamped"])
    await drain(app, ["stamped-dlq"])
    sent = {m.body: m.timestamp for m in originals}
    assert sorted(map(repr, (m.body for m in dead))) == sorted(map(repr, sent))
    for m in dead:
        assert m.timestamp == sent[m.body]  # when it was first sent, as miniflare keeps it
        assert m.attempts == 1  # a fresh count in the dead-letter queue
        assert m.id not in {o.id for o in originals}  # a copy: the original stays failed
