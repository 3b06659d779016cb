"""Running one batch: decode → run the handler with a timeout → classify each message's outcome.

The executor knows nothing about SQL: it turns claimed messages into a `Settlement`
(plain data) for the backend to apply.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ..backends.base import (
    ClaimedMessage,
    FailOutcome,
    LeaseRef,
    RetryOutcome,
    Settlement,
)
from ..encoding import decode_body
from ..ids import uuid7
from ..messages import Message, MessageBatch, resolve_outcome, timestamp_from_epoch
from ..queue import Queue

log = logging.getLogger("taskflare.worker")


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What happened to one batch: its settlement and how long the handler ran."""

    settlement: Settlement
    duration: float
    error: str | None


def decode_batch(
    queue: Queue, claimed: Sequence[ClaimedMessage]
) -> tuple[MessageBatch[Any], list[tuple[ClaimedMessage, str]]]:
    """Build the `MessageBatch`; messages whose body cannot be decoded are set aside."""
    messages: list[Message[Any]] = []
    undecodable: list[tuple[ClaimedMessage, str]] = []
    for item in claimed:
        try:
            body = decode_body(item.body, item.content_type)
        except Exception as exc:
            undecodable.append((item, f"body cannot be decoded as {item.content_type}: {exc!r}"))
            continue
        messages.append(
            Message(
                item.id,
                timestamp_from_epoch(item.created_at),
                body,
                item.attempts,
                item.content_type,
            )
        )
    return MessageBatch(queue.name, messages), undecodable


async def run_handler(queue: Queue, batch: MessageBatch[Any], thread_pool: Executor) -> str | None:
    """Run the consumer on `batch`; return None on success or the error text on failure."""
    spec = queue.consumer_spec
    assert spec is not None
    try:
        async with asyncio.timeout(spec.timeout) as scope:
            if spec.is_async:
                await spec.handler(batch)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(thread_pool, spec.handler, batch)
    except TimeoutError:
        if not scope.expired():
            return traceback.format_exc()
    except Exception:
        log.exception("consumer of %r raised", queue.name)
        return traceback.format_exc()
    else:
        # A handler that swallowed its cancellation still ran past its timeout.
        if not scope.expired():
            return None
    log.warning(
        "consumer of %r timed out after %ss; undecided messages will be retried",
        queue.name,
        spec.timeout,
    )
    return f"consumer timed out after {spec.timeout:g} seconds"


def classify(
    queue: Queue,
    batch: MessageBatch[Any],
    claimed: Sequence[ClaimedMessage],
    error: str | None,
    undecodable: Sequence[tuple[ClaimedMessage, str]] = (),
) -> Settlement:
    """Turn the handler's result and the explicit ack/retry calls into outcomes."""
    config = queue.config
    leases = {c.id: c.lease_id for c in claimed}
    acks: list[LeaseRef] = []
    retries: list[RetryOutcome] = []
    fails: list[FailOutcome] = []

    def fail(message_id: str, reason: str | None) -> None:
        dlq = config.dead_letter_queue
        fails.append(
            FailOutcome(message_id, leases[message_id], reason, dlq, uuid7() if dlq else None)
        )

    for message in batch.messages:
        delay = resolve_outcome(
            message, handler_failed=error is not None, batch=batch, retry_delay=config.retry_delay
        )
        if delay is None:
            acks.append(LeaseRef(message.id, leases[message.id]))
            continue
        reason = error if message.decision is None else "retried by the consumer"
        if message.attempts >= config.max_attempts:
            fail(message.id, reason)
        else:
            retries.append(RetryOutcome(message.id, leases[message.id], delay, reason))
    for item, reason in undecodable:
        fail(item.id, reason)
    return Settlement(acks, retries, fails)


async def execute_batch(
    queue: Queue, claimed: Sequence[ClaimedMessage], thread_pool: Executor
) -> BatchReport:
    """Decode, run and classify one claimed batch."""
    started = time.perf_counter()
    batch, undecodable = decode_batch(queue, claimed)
    error: str | None = None
    try:
        if batch.messages:
            error = await run_handler(queue, batch, thread_pool)
    except asyncio.CancelledError:
        # Cancelled past the shutdown grace period: record the outcome, then stop.
        error = "the worker shut down before the consumer finished"
        report = BatchReport(classify(queue, batch, claimed, error, undecodable), 0.0, error)
        raise _CancelledWithReport(report) from None
    settlement = classify(queue, batch, claimed, error, undecodable)
    return BatchReport(settlement, time.perf_counter() - started, error)


class _CancelledWithReport(asyncio.CancelledError):
    """A batch cancelled at shutdown, carrying the outcomes to record before exiting."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__()
        self.report = report
