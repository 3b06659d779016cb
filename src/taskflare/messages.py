"""What a consumer receives: `Message` and `MessageBatch`, and how their ack/retry calls resolve.

The rules follow Cloudflare Queues: for each message the first explicit call wins,
whether it was made on the message (`ack()`, `retry()`) or on the batch (`ack_all()`,
`retry_all()`); later conflicting calls are ignored with a warning. Messages with no
explicit call are acked when the handler returns and retried when it raises.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from .errors import InvalidDelay

log = logging.getLogger("taskflare.consumer")

Body = TypeVar("Body")

MAX_DELAY_SECONDS = 365 * 86400.0


def check_delay(value: object, what: str = "delay_seconds") -> float:
    """Validate a delay: a finite, non-negative number of seconds (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidDelay(f"{what} must be a number of seconds, got {value!r}", fields=(what,))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidDelay(f"{what} must be a finite number, got {value!r}", fields=(what,))
    # The range is checked on the number given, not on float(value): an int too large
    # for a float (2**1100) is refused by the limit, not by an OverflowError.
    if value < 0:
        raise InvalidDelay(f"{what} must not be negative, got {value!r}", fields=(what,))
    if value > MAX_DELAY_SECONDS:
        if isinstance(value, int):  # of any size: no float conversion
            seconds, days = f"{value:,}", f"{value // 86_400:,}"
        else:
            seconds, days = f"{value:,.0f}", f"{value / 86_400:,.0f}"
        raise InvalidDelay(
            f"{what} is {seconds} seconds ({days} days); the limit is "
            f"{MAX_DELAY_SECONDS:,.0f} seconds (one year)",
            fields=(what,),
        )
    return float(value)


@dataclass(slots=True)
class Decision:
    """An explicit choice for one message: ack, or retry with an optional delay."""

    ack: bool
    delay_seconds: float | None = None
    by_batch: bool = False


class Message(Generic[Body]):
    """One delivered message. Call `ack()` or `retry()` to decide its fate explicitly."""

    __slots__ = ("_decision", "_on_ack", "_timestamp", "attempts", "body", "content_type", "id")

    def __init__(
        self,
        id: str,
        timestamp: datetime | float,
        body: Body,
        attempts: int,
        content_type: str,
    ) -> None:
        self.id = id
        self._timestamp = timestamp  # an epoch [s] becomes a datetime when first read
        self.body = body
        self.attempts = attempts
        self.content_type = content_type
        self._decision: Decision | None = None
        # Set by the worker while the consumer runs: records an explicit ack at once.
        self._on_ack: Callable[[Message[Any]], None] | None = None

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, attempts={self.attempts}, body={self.body!r})"

    @property
    def timestamp(self) -> datetime:
        """When the message was sent, an aware UTC datetime (Cloudflare's `timestamp`)."""
        value = self._timestamp
        if not isinstance(value, datetime):
            value = self._timestamp = datetime.fromtimestamp(value, tz=UTC)
        return value

    def ack(self) -> None:
        """Mark this message done: it will not be delivered again, whatever the handler does.

        The worker records the ack while the handler still runs (not when it returns), so
        a worker that dies later in the batch, even by kill -9, does not deliver this
        message again (Cloudflare: "Messages that are explicitly acknowledged will not be
        re-delivered, even if your queue consumer fails")."""
        if self._decision is None:
            self._decision = Decision(ack=True)
            if self._on_ack is not None:
                self._on_ack(self)
        elif not self._decision.ack:
            how = "retry_all()" if self._decision.by_batch else "retry()"
            log.warning("message %s: ack() ignored, %s was already called", self.id, how)

    def retry(self, delay_seconds: float | None = None) -> None:
        """Mark this message for redelivery, after `delay_seconds` (else the batch's or queue's)."""
        delay = None if delay_seconds is None else check_delay(delay_seconds)
        if self._decision is None or not self._decision.ack:
            self._decision = Decision(ack=False, delay_seconds=delay)
        elif self._decision.ack:
            how = "ack_all()" if self._decision.by_batch else "ack()"
            log.warning("message %s: retry() ignored, %s was already called", self.id, how)

    def _decide_by_batch(self, decision: Decision) -> None:
        if self._decision is None:
            self._decision = decision
            if decision.ack and self._on_ack is not None:
                self._on_ack(self)

    @property
    def decision(self) -> Decision | None:
        """The explicit choice made for this message, if any."""
        return self._decision


class MessageBatch(Generic[Body]):
    """A batch of messages from one queue, as handed to a consumer."""

    __slots__ = ("_batch_call", "_retry_all_delay", "messages", "queue")

    def __init__(self, queue: str, messages: list[Message[Body]]) -> None:
        self.queue = queue
        self.messages = messages
        self._batch_call: str | None = None
        self._retry_all_delay: float | None = None

    def __repr__(self) -> str:
        return f"MessageBatch(queue={self.queue!r}, messages={len(self.messages)})"

    def __len__(self) -> int:
        return len(self.messages)

    def ack_all(self) -> None:
        """Ack every message not already decided, even if the handler later raises (or
        the worker dies: recorded at once, as `Message.ack`)."""
        if self._batch_call is not None:
            if self._batch_call != "ack_all":
                log.warning("batch of %s: ack_all() ignored, retry_all() came first", self.queue)
            return
        self._batch_call = "ack_all"
        decision = Decision(ack=True, by_batch=True)
        for message in self.messages:
            message._decide_by_batch(decision)

    def retry_all(self, delay_seconds: float | None = None) -> None:
        """Retry every message not already decided, after `delay_seconds` if given."""
        delay = None if delay_seconds is None else check_delay(delay_seconds)
        if self._batch_call is not None:
            if self._batch_call != "retry_all":
                log.warning("batch of %s: retry_all() ignored, ack_all() came first", self.queue)
            return
        self._batch_call = "retry_all"
        self._retry_all_delay = delay
        decision = Decision(ack=False, by_batch=True)
        for message in self.messages:
            message._decide_by_batch(decision)

    @property
    def retry_all_delay(self) -> float | None:
        """The delay given to `retry_all()`, if it was called with one."""
        return self._retry_all_delay


def timestamp_from_epoch(seconds: float) -> datetime:
    """A stored epoch time as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def resolve_outcome(
    message: Message[Any], *, handler_failed: bool, batch: MessageBatch[Any], retry_delay: float
) -> float | None:
    """None when the message is acked, else the delay before its redelivery.

    Delay precedence: the message's own `retry(delay_seconds=)`, else `retry_all()`'s,
    else the queue's `retry_delay`.
    """
    decision = message.decision
    if decision is None:
        if not handler_failed:
            return None
        return retry_delay
    if decision.ack:
        return None
    if decision.delay_seconds is not None:
        return decision.delay_seconds
    if batch.retry_all_delay is not None:
        return batch.retry_all_delay
    return retry_delay
