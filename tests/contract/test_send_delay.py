"""Semantic 6: `delay_seconds` on send/send_batch delays the first delivery; bad values refused."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from helpers import get, running_worker, total_messages, wait_until
from taskflare import App, InvalidDelay, InvalidQueueConfig, MessageBatch
from taskflare.testing import drain
from taskflare.worker import WorkerConfig

SLACK = 3.0


async def delay_of(app: App, message_id: str) -> float:
    record = await get(app, message_id)
    assert record is not None
    return record.available_at - record.created_at


async def test_send_delay_holds_the_first_delivery(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    delivered = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        delivered.set()

    async with running_worker(app):
        await app.backend()
        started = time.monotonic()
        await q.send(1, delay_seconds=1)
        await asyncio.wait_for(delivered.wait(), 60)  # a deadline, not a measure
        elapsed = time.monotonic() - started
    # Load only delays a delivery: the lower bound is the measure. (That a message is
    # delivered when it comes due, not at a later poll: the next test, with a 60 s idle wait.)
    assert elapsed >= 0.95, f"delivered {elapsed:.2f}s after a send with delay 1 s"


async def test_delayed_message_is_not_ready_until_its_delay(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    seen: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        seen.extend(m.body for m in batch.messages)

    delayed = await q.send(1, delay_seconds=30)
    await q.send(2)
    await drain(app)
    assert seen == [2]
    delay = await delay_of(app, delayed)
    assert 30 <= delay < 30 + SLACK


async def test_send_batch_delay_applies_to_every_message(app: App) -> None:
    q = app.queue("q")
    ids = await q.send_batch([{"body": 1}, {"body": 2}], delay_seconds=20)
    for message_id in ids:
        assert 20 <= await delay_of(app, message_id) < 20 + SLACK


async def test_per_message_delay_beats_the_batch_delay(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    seen: list[str] = []

    @q.consumer
    async def consume(batch: MessageBatch[str]) -> None:
        seen.extend(m.body for m in batch.messages)

    ids = await q.send_batch(
        [
            {"body": "call delay"},
            {"body": "no delay", "delay_seconds": 0},
            {"body": "own delay", "delay_seconds": 45},
        ],
        delay_seconds=20,
    )
    await drain(app)
    assert seen == ["no delay"]
    assert 20 <= await delay_of(app, ids[0]) < 20 + SLACK
    assert 45 <= await delay_of(app, ids[2]) < 45 + SLACK


# (None is no delay given: the queue's delivery_delay, see below.)
BAD_DELAYS = [-1, -0.001, "5", [], math.nan, math.inf, True, False]


@pytest.mark.parametrize("bad", BAD_DELAYS, ids=repr)
async def test_send_refuses_a_bad_delay_and_enqueues_nothing(app: App, bad: object) -> None:
    q = app.queue("q")
    with pytest.raises(InvalidDelay):
        await q.send(1, delay_seconds=bad)  # type: ignore[arg-type]
    assert await total_messages(app) == 0


@pytest.mark.parametrize("bad", BAD_DELAYS, ids=repr)
async def test_send_batch_refuses_a_bad_call_delay(app: App, bad: object) -> None:
    q = app.queue("q")
    with pytest.raises(InvalidDelay):
        await q.send_batch([{"body": 1}], delay_seconds=bad)  # type: ignore[arg-type]
    assert await total_messages(app) == 0


@pytest.mark.parametrize("bad", [b for b in BAD_DELAYS if b is not None], ids=repr)
async def test_send_batch_refuses_a_bad_item_delay_and_enqueues_nothing(
    app: App, bad: object
) -> None:
    q = app.queue("q")
    with pytest.raises(InvalidDelay):
        await q.send_batch([{"body": 1}, {"body": 2, "delay_seconds": bad}, {"body": 3}])
    assert await total_messages(app) == 0


async def test_retry_with_a_negative_delay_fails_the_handler_and_retries(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        batch.messages[0].retry(delay_seconds=-5)

    message_id = await q.send(1)
    await drain(app)
    record = await get(app, message_id)
    assert record is not None and record.state == "ready" and record.attempts == 1
    assert record.last_error is not None and "InvalidDelay" in record.last_error


async def test_a_consumer_woken_by_a_delayed_message_sleeps_until_it_is_due(app: App) -> None:
    """A queue that takes whatever is ready (`max_batch_timeout=0`): its fetcher, woken by
    a send, claims expecting work; when that takes nothing because the message is
    delayed, it still learns when the message is due. With a 60 s idle wait, a message
    due in 0.3 s is delivered long before the wait ends."""
    q = app.queue("woken", max_batch_size=10, max_batch_timeout=0)
    seen: list[object] = []

    @q.consumer
    async def handle(batch: MessageBatch[object]) -> None:
        seen.extend(m.body for m in batch.messages)

    async with running_worker(app, WorkerConfig(idle_wait=60.0)):
        await q.send("first")
        await wait_until(lambda: "first" in seen, timeout=30, what="the first message")
        # The fetcher is idle again; the next change it hears of is a delayed message.
        await q.send("later", delay_seconds=0.3)
        await wait_until(lambda: "later" in seen, timeout=30, what="the delayed message")


async def test_a_queues_delivery_delay_holds_every_send_that_names_none(app: App) -> None:
    """Cloudflare's queue-level delivery delay: a send without a delay waits the queue's;
    a delay on the message beats the one on the batch call, which beats the queue's, and
    0 sends at once ("ignores any queue-level delays")."""
    q = app.queue("slow", delivery_delay=40)
    plain = await q.send("a")
    at_once = await q.send("b", delay_seconds=0)
    longer = await q.send("c", delay_seconds=100)
    batch = await q.send_batch([{"body": 1}, {"body": 2, "delay_seconds": 5}])
    called = await q.send_batch([{"body": 3}, {"body": 4, "delaySeconds": 0}], delay_seconds=10)
    expected = {
        plain: 40,
        at_once: 0,
        longer: 100,
        batch[0]: 40,
        batch[1]: 5,
        called[0]: 10,
        called[1]: 0,
    }
    for message_id, delay in expected.items():
        assert delay <= await delay_of(app, message_id) < delay + SLACK
    same = app.queue("same-as-sync", delivery_delay=40)
    assert 40 <= await delay_of(app, same.send_sync("x")) < 40 + SLACK


@pytest.mark.parametrize("bad", [-1, 86_401, math.nan, "10", True])
def test_a_bad_delivery_delay_is_refused_naming_it(app: App, bad: object) -> None:
    with pytest.raises(InvalidQueueConfig, match="delivery_delay"):
        app.queue("q", delivery_delay=bad)  # type: ignore[arg-type]
