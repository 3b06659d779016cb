"""Queue declarations: a queue's settings (validated as Cloudflare Queues does) and its consumer."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from ..errors import InvalidQueueConfig
from ..messages import MessageBatch

BatchHandler = Callable[[MessageBatch[Any]], Awaitable[None] | None]

DEFAULT_CONSUMER_TIMEOUT = 15 * 60.0
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_number(name: str, value: object, low: float, high: float, *, integer: bool) -> float:
    """`value` as a number in [low, high] (an integer if asked), else `InvalidQueueConfig`."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidQueueConfig(f"{name} must be {kind}, got {value!r}")
    if integer and not float(value).is_integer():
        raise InvalidQueueConfig(f"{name} must be {kind}, got {value!r}")
    if not low <= value <= high:
        raise InvalidQueueConfig(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return value


def check_queue_name(name: object) -> str:
    """A queue name: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise InvalidQueueConfig(
            f"invalid queue name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue's settings; built through `QueueConfig.create`, which validates every value.

    Fields (units in brackets): `max_batch_size` messages per batch (1-100);
    `max_batch_timeout` [s] a batch waits to fill (0-60); `max_retries` redeliveries
    after the first (0-100); `retry_delay` [s] before a retried message is delivered
    again (0-86400); `delivery_delay` [s] every message sent waits before delivery unless
    its send gives a delay, 0 included (0-86400, Cloudflare's queue-level delay);
    `dead_letter_queue` where messages go after their last attempt;
    `max_concurrency` batches of this queue running at once per worker (None: the
    worker's concurrency); `visibility_timeout` [s] a delivery stays leased without a
    heartbeat (0.1-43200); `max_message_bytes` / `max_batch_bytes` [bytes] size limits
    of one message and of one `send_batch`; `allow_pickle` accept pickled bodies.
    """

    name: str
    max_batch_size: int = 10
    max_batch_timeout: float = 5.0
    max_retries: int = 3
    retry_delay: float = 0.0
    delivery_delay: float = 0.0
    dead_letter_queue: str | None = None
    max_concurrency: int | None = None
    visibility_timeout: float = 30.0
    max_message_bytes: int = 131_072
    max_batch_bytes: int = 262_144
    allow_pickle: bool = False

    @classmethod
    def create(cls, name: str, **settings: Any) -> QueueConfig:
        """Validate settings the way Cloudflare Queues does and return the config."""
        check_queue_name(name)
        unknown = set(settings) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidQueueConfig(
                f"unknown queue setting(s) {', '.join(sorted(unknown))} for queue {name!r}"
            )
        config = cls(name=name, **settings)
        check_number("max_batch_size", config.max_batch_size, 1, 100, integer=True)
        check_number("max_batch_timeout", config.max_batch_timeout, 0, 60, integer=False)
        check_number("max_retries", config.max_retries, 0, 100, integer=True)
        check_number("retry_delay", config.retry_delay, 0, 86_400, integer=False)
        check_number("delivery_delay", config.delivery_delay, 0, 86_400, integer=False)
        check_number("visibility_timeout", config.visibility_timeout, 0.1, 43_200, integer=False)
        check_number(
            "max_message_bytes", config.max_message_bytes, 1, 64 * 1024 * 1024, integer=True
        )
        check_number("max_batch_bytes", config.max_batch_bytes, 1, 256 * 1024 * 1024, integer=True)
        if config.max_concurrency is not None:
            check_number("max_concurrency", config.max_concurrency, 1, 10_000, integer=True)
        if config.dead_letter_queue is not None:
            check_queue_name(config.dead_letter_queue)
            if config.dead_letter_queue == name:
                raise InvalidQueueConfig(f"queue {name!r} cannot be its own dead_letter_queue")
        if not isinstance(config.allow_pickle, bool):
            raise InvalidQueueConfig(
                f"allow_pickle must be True or False, got {config.allow_pickle!r}"
            )
        return replace(
            config,
            max_batch_size=int(config.max_batch_size),
            max_retries=int(config.max_retries),
            max_message_bytes=int(config.max_message_bytes),
            max_batch_bytes=int(config.max_batch_bytes),
            max_batch_timeout=float(config.max_batch_timeout),
            retry_delay=float(config.retry_delay),
            delivery_delay=float(config.delivery_delay),
            visibility_timeout=float(config.visibility_timeout),
            max_concurrency=None if config.max_concurrency is None else int(config.max_concurrency),
        )

    @property
    def max_attempts(self) -> int:
        """Deliveries a message gets before it fails: `max_retries + 1`."""
        return self.max_retries + 1

    def to_json(self) -> str:
        """The settings as JSON, stored with the queue for admin tools."""
        return orjson.dumps(asdict(self)).decode()


@dataclass(frozen=True, slots=True)
class Consumer:
    """A queue's batch handler and how to run it (`timeout` in seconds)."""

    handler: BatchHandler
    is_async: bool
    timeout: float

    @classmethod
    def create(cls, queue: str, handler: BatchHandler, timeout: float) -> Consumer:
        """Validate the handler and its timeout (0.001 s to 7 days)."""
        check_number("timeout", timeout, 0.001, 7 * 86_400, integer=False)
        if not callable(handler):
            raise InvalidQueueConfig(f"consumer of {queue!r} must be callable")
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004
        )
        return cls(handler, is_async, float(timeout))
