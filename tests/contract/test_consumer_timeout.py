"""Semantic 9: a handler past its consumer `timeout` is cancelled; unmarked messages retry."""

from __future__ import annotations

import asyncio
import threading

from helpers import get, running_worker, wait_until
from taskflare import App, MessageBatch
from taskflare.backends.base import MessageRecord
from taskflare.queue import DEFAULT_CONSUMER_TIMEOUT
from taskflare.testing import drain

# How long a test waits for what a timeout should bring about before failing [s]: the
# handlers never end by themselves, so reaching it means the timeout did not cut them off.
DEADLINE = 60


async def test_handler_past_its_timeout_is_cancelled_and_unmarked_messages_retried(
    app: App,
) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)
    cancelled = asyncio.Event()

    @q.consumer(timeout=0.5)
    async def consume(batch: MessageBatch[int]) -> None:
        batch.messages[0].ack()
        try:
            await asyncio.Event().wait()  # never ends by itself: only the timeout ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    acked_id, unmarked_id = await q.send_batch([{"body": 0}, {"body": 1}])
    result = await asyncio.wait_for(drain(app), DEADLINE)
    assert cancelled.is_set(), "the handler was not cut off at its timeout"
    assert (result.acked, result.retried) == (1, 1)
    assert await get(app, acked_id) is None
    record = await get(app, unmarked_id)
    assert record is not None and record.state == "ready" and record.attempts == 1
    assert record.last_error is not None and "timed out" in record.last_error


async def test_handler_that_swallows_its_timeout_cancellation_still_retries(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)

    @q.consumer(timeout=0.3)
    async def consume(batch: MessageBatch[int]) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return  # ill-behaved, but it still ran past its timeout

    message_id = await q.send(1)
    result = await drain(app)
    assert (result.acked, result.retried) == (0, 1)
    record = await get(app, message_id)
    assert record is not None and record.state == "ready"
    assert record.last_error is not None and "timed out" in record.last_error


async def test_handler_that_swallows_its_timeout_and_raises_is_recorded_as_timed_out(
    app: App,
) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)

    @q.consumer(timeout=0.3)
    async def consume(batch: MessageBatch[int]) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            raise ValueError("cleanup went wrong") from None

    message_id = await q.send(1)
    async with running_worker(app):
        record = await wait_until(lambda: _retried(app, message_id), what="the retry")
    assert record.last_error is not None and "timed out" in record.last_error
    assert "cleanup went wrong" not in record.last_error


async def _retried(app: App, message_id: str) -> MessageRecord | None:
    record = await get(app, message_id)
    return record if record is not None and record.last_error is not None else None


async def test_timed_out_handler_is_cancelled_in_a_running_worker(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=1)
    attempts: list[int] = []
    second = asyncio.Event()

    @q.consumer(timeout=0.3)
    async def consume(batch: MessageBatch[int]) -> None:
        attempts.extend(m.attempts for m in batch.messages)
        if len(attempts) == 2:
            second.set()
            return
        await asyncio.Event().wait()  # never ends by itself: only the timeout ends it

    message_id = await q.send(1)
    async with running_worker(app):
        await asyncio.wait_for(second.wait(), DEADLINE)
    assert attempts == [1, 2]
    assert await get(app, message_id) is None


async def test_sync_handler_past_its_timeout_is_retried(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)
    release = threading.Event()

    @q.consumer(timeout=0.3)
    def consume(batch: MessageBatch[int]) -> None:
        release.wait(5)

    message_id = await q.send(1)
    try:
        result = await drain(app)
    finally:
        release.set()
    assert result.retried == 1
    record = await get(app, message_id)
    assert record is not None and record.state == "ready"


async def test_handler_within_its_timeout_is_not_cancelled(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)

    @q.consumer(timeout=5)
    async def consume(batch: MessageBatch[int]) -> None:
        await asyncio.sleep(0.2)

    await q.send(1)
    result = await drain(app)
    assert (result.acked, result.retried) == (1, 0)


def test_default_consumer_timeout_is_15_minutes() -> None:
    app = App("sqlite:///unused-never-opened.db")
    q = app.queue("q")

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        pass

    assert DEFAULT_CONSUMER_TIMEOUT == 15 * 60
    assert q.consumer_spec is not None and q.consumer_spec.timeout == 15 * 60
