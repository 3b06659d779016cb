"""Semantic 3: implicit outcomes, explicit ack/retry and their precedence.

Each queue has a long `retry_delay`, so a retried message stays `ready` with one
attempt after `drain` instead of being delivered again; an acked one is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from helpers import fate, get
from taskflare import App, MessageBatch
from taskflare.backends.base import MessageListParams
from taskflare.testing import drain

Handler = Callable[[MessageBatch[int]], None]


async def run_once(app: App, handler: Handler, count: int = 3) -> list[str]:
    """Send `count` messages as one batch, deliver it once to `handler`; return their fates."""
    q = app.queue("q", max_batch_size=10, max_batch_timeout=0, retry_delay=600)

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        assert [m.body for m in batch.messages] == list(range(count))
        handler(batch)

    ids = await q.send_batch([{"body": i} for i in range(count)])
    result = await drain(app)
    assert result.batches == 1
    fates = [await fate(app, i) for i in ids]
    for message_id, outcome in zip(ids, fates, strict=True):
        if outcome == "ready":  # retried: back in the queue, the delivery counted
            record = await get(app, message_id)
            assert record is not None and record.attempts == 1
    return ["retried" if f == "ready" else f for f in fates]


def fail() -> None:
    raise RuntimeError("handler failed")


async def test_handler_returning_acks_every_unmarked_message(app: App) -> None:
    assert await run_once(app, lambda batch: None) == ["acked", "acked", "acked"]


async def test_handler_raising_retries_every_unmarked_message(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        fail()

    assert await run_once(app, handler) == ["retried", "retried", "retried"]


async def test_handler_raising_keeps_explicitly_acked_messages_acked(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[0].ack()
        batch.messages[2].ack()
        fail()

    assert await run_once(app, handler) == ["acked", "retried", "acked"]


async def test_message_retried_is_retried_even_when_handler_returns(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[1].retry()

    assert await run_once(app, handler) == ["acked", "retried", "acked"]


async def test_retry_then_ack_on_a_message_retries_it_and_warns(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[0].retry()
        batch.messages[0].ack()

    with caplog.at_level(logging.WARNING, logger="taskflare"):
        assert await run_once(app, handler) == ["retried", "acked", "acked"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ack() ignored" in r.getMessage() for r in warnings), warnings


async def test_ack_then_retry_on_a_message_acks_it(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[0].ack()
        batch.messages[0].retry()

    assert await run_once(app, handler) == ["acked", "acked", "acked"]


async def test_ack_then_retry_all_acks_that_message_and_retries_the_others(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[1].ack()
        batch.retry_all()

    assert await run_once(app, handler) == ["retried", "acked", "retried"]


async def test_retry_then_ack_all_retries_that_message_and_acks_the_others(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.messages[1].retry()
        batch.ack_all()

    assert await run_once(app, handler) == ["acked", "retried", "acked"]


async def test_retry_all_then_ack_all_retries_everything(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.retry_all()
        batch.ack_all()

    assert await run_once(app, handler) == ["retried", "retried", "retried"]


async def test_ack_all_then_retry_all_retries_nothing(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.ack_all()
        batch.retry_all()

    assert await run_once(app, handler) == ["acked", "acked", "acked"]


async def test_ack_all_then_raise_retries_nothing(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.ack_all()
        fail()

    assert await run_once(app, handler) == ["acked", "acked", "acked"]


async def test_retry_all_then_return_retries_everything(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.retry_all()

    assert await run_once(app, handler) == ["retried", "retried", "retried"]


async def test_ack_all_then_message_retry_is_ignored(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.ack_all()
        batch.messages[0].retry()

    assert await run_once(app, handler) == ["acked", "acked", "acked"]


async def test_retry_all_then_message_ack_is_ignored(app: App) -> None:
    def handler(batch: MessageBatch[int]) -> None:
        batch.retry_all()
        batch.messages[0].ack()

    assert await run_once(app, handler) == ["retried", "retried", "retried"]


async def test_retry_error_is_recorded_on_the_message(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, retry_delay=600)

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        raise ValueError("distinctive failure 7731")

    message_id = await q.send(1)
    await drain(app)
    record = await get(app, message_id)
    assert record is not None and record.state == "ready"
    assert record.last_error is not None and "distinctive failure 7731" in record.last_error


async def test_explicit_message_retries_count_against_max_retries(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=2, dead_letter_queue="dlq")
    deliveries: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        for m in batch.messages:
            deliveries.append(m.attempts)
            m.retry()

    message_id = await q.send(1)
    result = await drain(app)
    assert deliveries == [1, 2, 3]
    assert (result.retried, result.failed) == (2, 1)
    assert await fate(app, message_id) == "failed"
    assert len(await (await app.backend()).message_list(MessageListParams("dlq"))) == 1


async def test_retry_all_counts_against_max_retries(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, max_retries=1)
    deliveries: list[int] = []

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        deliveries.extend(m.attempts for m in batch.messages)
        batch.retry_all()

    message_id = await q.send(1)
    await drain(app)
    assert deliveries == [1, 2]
    assert await fate(app, message_id) == "failed"


async def gone(app: App, message_id: str, within: float = 10.0) -> bool:
    """Whether the message is deleted (acked) in storage within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while await get(app, message_id) is not None:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_an_explicit_ack_is_stored_while_the_consumer_still_runs(app: App) -> None:
    """Cloudflare: explicitly acked messages are not delivered again even if the consumer
    fails later, which includes a worker killed mid-batch; so the ack is written at once,
    not when the handler returns."""
    q = app.queue("q", max_batch_size=10, max_batch_timeout=0, retry_delay=600)
    seen: dict[str, bool] = {}

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        batch.messages[0].ack()
        seen["stored"] = await gone(app, batch.messages[0].id)
        raise RuntimeError("the consumer fails after its ack")

    ids = await q.send_batch([{"body": i} for i in range(3)])
    await drain(app, max_batches=1)
    assert seen == {"stored": True}
    assert [await fate(app, i) for i in ids] == ["acked", "ready", "ready"]


async def test_a_plain_def_consumers_ack_and_ack_all_are_stored_while_it_runs(app: App) -> None:
    """The same from a consumer running in the handler thread pool, for `ack()` and for
    `ack_all()`."""
    q = app.queue("q", max_batch_size=10, max_batch_timeout=0, retry_delay=600)
    loop = asyncio.get_running_loop()
    seen: list[bool] = []

    def stored(message_id: str) -> bool:
        return asyncio.run_coroutine_threadsafe(gone(app, message_id), loop).result(30)

    @q.consumer
    def consume(batch: MessageBatch[int]) -> None:
        batch.messages[1].ack()
        seen.append(stored(batch.messages[1].id))
        batch.ack_all()
        seen.extend(stored(m.id) for m in batch.messages)
        raise RuntimeError("the consumer fails after acking")

    ids = await q.send_batch([{"body": i} for i in range(3)])
    await drain(app, max_batches=1)
    assert seen == [True, True, True, True]
    assert [await fate(app, i) for i in ids] == ["acked", "acked", "acked"]
