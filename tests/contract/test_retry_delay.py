"""Semantic 4: retry delay precedence, and no redelivery before the delay has passed.

The delay a retry got is read from the stored message: `available_at - created_at`
(both on the backend's own clock) is the delay plus the few milliseconds of handling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from helpers import get, running_worker
from taskflare import App, MessageBatch
from taskflare.testing import drain

# Times stored by the database (PostgreSQL: microseconds, the server's clock) against this
# process's `time.time()` on the same machine: rounding, not load.
CLOCK_SLACK = 0.01


async def retry_delay_applied(
    app: App, handler: Callable[[MessageBatch[int]], None], *, retry_delay: float = 29
) -> list[tuple[float, float]]:
    """Deliver a batch of two once; return, for each message, the shortest and the longest
    delay before redelivery that its stored `available_at` allows: the retry was written
    while `drain` ran, at a moment only known to lie in that window (a loaded machine
    widens it; it cannot move the delay out of it)."""
    q = app.queue("q", max_batch_timeout=0, retry_delay=retry_delay)

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        if batch.messages[0].attempts == 1:
            handler(batch)

    ids = await q.send_batch([{"body": 0}, {"body": 1}])
    before = time.time()
    await drain(app)
    after = time.time()
    delays = []
    for message_id in ids:
        record = await get(app, message_id)
        assert record is not None and record.state == "ready" and record.attempts == 1
        delays.append((record.available_at - after, record.available_at - before))
    return delays


def near(window: tuple[float, float], expected: float) -> bool:
    """Whether a delay of `expected` seconds lies in `window` (see `retry_delay_applied`)."""
    shortest, longest = window
    return shortest - CLOCK_SLACK <= expected <= longest + CLOCK_SLACK


async def test_message_retry_delay_beats_retry_all_and_queue_delay(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[0].retry(delay_seconds=7)
        batch.retry_all(delay_seconds=13)

    first, second = await retry_delay_applied(app, handler)
    assert near(first, 7), first
    assert near(second, 13), second


async def test_retry_all_delay_beats_queue_retry_delay(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.retry_all(delay_seconds=13)

    delays = await retry_delay_applied(app, handler)
    assert all(near(d, 13) for d in delays), delays


async def test_plain_retry_uses_queue_retry_delay(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[0].retry()
        batch.messages[1].retry()

    delays = await retry_delay_applied(app, handler)
    assert all(near(d, 29) for d in delays), delays


async def test_plain_retry_all_uses_queue_retry_delay(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.retry_all()

    delays = await retry_delay_applied(app, handler)
    assert all(near(d, 29) for d in delays), delays


async def test_handler_failure_uses_queue_retry_delay(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        raise RuntimeError("fail")

    delays = await retry_delay_applied(app, handler)
    assert all(near(d, 29) for d in delays), delays


async def test_message_retry_with_zero_delay_beats_retry_all_delay(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)
    attempts: dict[int, list[int]] = {0: [], 1: []}

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        for m in batch.messages:
            attempts[m.body].append(m.attempts)
        if batch.messages[0].attempts == 1:
            batch.messages[0].retry(delay_seconds=0)
            batch.retry_all(delay_seconds=600)

    await q.send_batch([{"body": 0}, {"body": 1}])
    await drain(app)
    # delay 0 was honoured (redelivered in the same drain), the other waits 600 s
    assert attempts == {0: [1, 2], 1: [1]}


async def test_retry_all_with_zero_delay_beats_queue_retry_delay(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)
    attempts: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        attempts.extend(m.attempts for m in batch.messages)
        if batch.messages[0].attempts == 1:
            batch.retry_all(delay_seconds=0)

    await q.send(1)
    await drain(app)
    assert attempts == [1, 2]


async def test_without_any_delay_a_retry_is_redelivered_at_once(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    attempts: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        attempts.extend(m.attempts for m in batch.messages)
        if batch.messages[0].attempts == 1:
            raise RuntimeError("once")

    await q.send(1)
    await drain(app)
    assert attempts == [1, 2]


async def test_repeated_message_retry_keeps_the_last_delay(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[0].retry(delay_seconds=100)
        batch.messages[0].retry(delay_seconds=7)
        batch.messages[1].retry(delay_seconds=7)

    delays = await retry_delay_applied(app, handler)
    assert all(near(d, 7) for d in delays), delays


async def test_retried_message_is_not_delivered_before_its_delay(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=0)
    delivered_at: list[float] = []
    second = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        delivered_at.append(time.monotonic())
        if len(delivered_at) == 1:
            batch.messages[0].retry(delay_seconds=1.0)
        else:
            second.set()

    await q.send(1)
    async with running_worker(app):
        await asyncio.wait_for(second.wait(), 60)  # a deadline, not a measure
    gap = delivered_at[1] - delivered_at[0]
    # Load only delays a redelivery: the lower bound is the measure.
    assert gap >= 0.95, f"redelivered {gap:.2f}s after a retry with a 1 s delay"


async def test_queue_retry_delay_holds_back_a_failed_message(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=1)
    delivered_at: list[float] = []
    second = asyncio.Event()

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        delivered_at.append(time.monotonic())
        if len(delivered_at) == 1:
            raise RuntimeError("first delivery fails")
        second.set()

    await q.send(1)
    async with running_worker(app):
        await asyncio.wait_for(second.wait(), 60)  # a deadline, not a measure
    gap = delivered_at[1] - delivered_at[0]
    assert gap >= 0.95, f"redelivered {gap:.2f}s after a failure with retry_delay=1"
