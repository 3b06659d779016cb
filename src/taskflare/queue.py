"""A queue: its settings (validated like Cloudflare's), its producer API and its consumer."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, overload

import orjson

from .backends.base import NewMessage
from .encoding import encode_body, normalize_content_type
from .errors import (
    BatchTooLarge,
    DuplicateConsumer,
    EmptyBatch,
    InvalidMessage,
    InvalidQueueConfig,
    MessageTooLarge,
)
from .ids import uuid7
from .messages import MessageBatch, check_delay
from .stored import StoredMessage

if TYPE_CHECKING:
    from .app import App
    from .jobs import JobType

BatchHandler = Callable[[MessageBatch[Any]], Awaitable[None] | None]

MAX_SEND_BATCH_MESSAGES = 100
DEFAULT_CONSUMER_TIMEOUT = 15 * 60.0
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _number(name: str, value: object, low: float, high: float, *, integer: bool) -> float:
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
    """A queue's settings; built through `QueueConfig.create`, which validates every value."""

    name: str
    max_batch_size: int = 10
    max_batch_timeout: float = 5.0
    max_retries: int = 3
    retry_delay: float = 0.0
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
        config = cls(name=name, **settings)
        _number("max_batch_size", config.max_batch_size, 1, 100, integer=True)
        _number("max_batch_timeout", config.max_batch_timeout, 0, 60, integer=False)
        _number("max_retries", config.max_retries, 0, 100, integer=True)
        _number("retry_delay", config.retry_delay, 0, 86_400, integer=False)
        _number("visibility_timeout", config.visibility_timeout, 0.1, 43_200, integer=False)
        _number("max_message_bytes", config.max_message_bytes, 1, 64 * 1024 * 1024, integer=True)
        _number("max_batch_bytes", config.max_batch_bytes, 1, 256 * 1024 * 1024, integer=True)
        if config.max_concurrency is not None:
            _number("max_concurrency", config.max_concurrency, 1, 10_000, integer=True)
        if config.dead_letter_queue is not None:
            check_queue_name(config.dead_letter_queue)
            if config.dead_letter_queue == name:
                raise InvalidQueueConfig(f"queue {name!r} cannot be its own dead_letter_queue")
        config = replace(
            config,
            max_batch_size=int(config.max_batch_size),
            max_retries=int(config.max_retries),
            max_message_bytes=int(config.max_message_bytes),
            max_batch_bytes=int(config.max_batch_bytes),
            max_batch_timeout=float(config.max_batch_timeout),
            retry_delay=float(config.retry_delay),
            visibility_timeout=float(config.visibility_timeout),
            max_concurrency=None if config.max_concurrency is None else int(config.max_concurrency),
        )
        if not isinstance(config.allow_pickle, bool):
            raise InvalidQueueConfig(
                f"allow_pickle must be True or False, got {config.allow_pickle!r}"
            )
        return config

    @property
    def max_attempts(self) -> int:
        """Deliveries a message gets before it fails: `max_retries + 1`."""
        return self.max_retries + 1

    def to_json(self) -> str:
        """The settings as JSON, stored with the queue for admin tools."""
        return orjson.dumps(asdict(self)).decode()


@dataclass(frozen=True, slots=True)
class Consumer:
    """A queue's batch handler and how to run it."""

    handler: BatchHandler
    is_async: bool
    timeout: float


class Queue:
    """A named queue: send messages to it, and register the one consumer that processes them."""

    def __init__(self, app: App, config: QueueConfig, *, implicit: bool = False) -> None:
        self.app = app
        self.config = config
        self.consumer_spec: Consumer | None = None
        # True for a queue created by naming it (a dead-letter queue, a job type's queue);
        # declaring it explicitly later replaces its settings.
        self.implicit = implicit
        self.job_types: dict[str, JobType] = {}

    @property
    def name(self) -> str:
        """The queue's name."""
        return self.config.name

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    # -- consumer -------------------------------------------------------------------

    @overload
    def consumer(self, handler: BatchHandler) -> BatchHandler: ...

    @overload
    def consumer(self, *, timeout: float = ...) -> Callable[[BatchHandler], BatchHandler]: ...

    def consumer(
        self, handler: BatchHandler | None = None, *, timeout: float = DEFAULT_CONSUMER_TIMEOUT
    ) -> BatchHandler | Callable[[BatchHandler], BatchHandler]:
        """Register the batch handler (`async def` or plain `def`) of this queue.

        Use as `@queue.consumer` or `@queue.consumer(timeout=60)`; a batch whose handler
        runs longer than `timeout` seconds is cancelled and its undecided messages retried.
        """
        _number("timeout", timeout, 0.001, 7 * 86_400, integer=False)

        def register(fn: BatchHandler) -> BatchHandler:
            if not callable(fn):
                raise InvalidQueueConfig(f"consumer of {self.name!r} must be callable")
            if self.job_types:
                raise DuplicateConsumer(
                    f"queue {self.name!r} runs job types ({', '.join(self.job_types)}); "
                    "a message consumer needs a queue of its own"
                )
            if self.consumer_spec is not None:
                raise DuplicateConsumer(
                    f"queue {self.name!r} already has a consumer "
                    f"({getattr(self.consumer_spec.handler, '__qualname__', '?')}); "
                    "each queue has exactly one"
                )
            is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
                getattr(fn, "__call__", None)  # noqa: B004
            )
            self.consumer_spec = Consumer(fn, is_async, float(timeout))
            return fn

        if handler is not None:
            return register(handler)
        return register

    # -- producer -------------------------------------------------------------------

    def _prepare(
        self, body: Any, delay_seconds: object, content_type: object, where: str = "body"
    ) -> NewMessage:
        ctype = normalize_content_type(
            content_type, allow_pickle=self.config.allow_pickle, queue=self.name
        )
        delay = check_delay(delay_seconds)
        data = encode_body(body, ctype)
        if len(data) > self.config.max_message_bytes:
            raise MessageTooLarge(
                f"{where} is {len(data):_} bytes; the limit for queue {self.name!r} is "
                f"{self.config.max_message_bytes:_}"
            )
        return NewMessage(
            id=uuid7(), queue=self.name, body=data, content_type=ctype, delay_seconds=delay
        )

    def prepare_batch(
        self, messages: Sequence[Mapping[str, Any]], delay_seconds: float = 0
    ) -> list[NewMessage]:
        """Validate and encode a `send_batch` request; raise before anything is stored."""
        check_delay(delay_seconds)
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise InvalidMessage("send_batch() takes a list of {'body': ...} items")
        if not messages:
            raise EmptyBatch("send_batch() requires at least one message")
        if len(messages) > MAX_SEND_BATCH_MESSAGES:
            raise BatchTooLarge(
                f"batch has {len(messages)} messages; the limit is {MAX_SEND_BATCH_MESSAGES}"
            )
        prepared = [
            self._prepare_item(index, item, delay_seconds) for index, item in enumerate(messages)
        ]
        total = sum(len(m.body) for m in prepared)
        if total > self.config.max_batch_bytes:
            raise BatchTooLarge(
                f"batch is {total:_} bytes; the limit for queue {self.name!r} is "
                f"{self.config.max_batch_bytes:_}"
            )
        return prepared

    def _prepare_item(self, index: int, item: object, batch_delay: float) -> NewMessage:
        if not isinstance(item, Mapping) or "body" not in item:
            raise InvalidMessage(f"batch item {index} must be a mapping with a 'body' key")
        known = {"body", "delay_seconds", "delaySeconds", "content_type", "contentType"}
        unknown = set(item) - known
        if unknown:
            raise InvalidMessage(f"batch item {index} has unknown keys: {sorted(unknown)}")
        delay = item.get("delay_seconds", item.get("delaySeconds"))
        ctype = item.get("content_type", item.get("contentType", "json"))
        return self._prepare(
            item["body"],
            batch_delay if delay is None else delay,
            ctype,
            where=f"batch item {index}",
        )

    async def send(
        self,
        body: Any,
        *,
        delay_seconds: float = 0,
        content_type: str = "json",
        connection: Any | None = None,
    ) -> str:
        """Store one message durably and return its id; it is delivered after `delay_seconds`.

        `connection`: your own psycopg `AsyncConnection` (PostgreSQL only); the message
        is written inside its current transaction and exists only if that commits.
        """
        message = self._prepare(body, delay_seconds, content_type)
        await self._store([message], connection)
        return message.id

    async def send_batch(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        delay_seconds: float = 0,
        connection: Any | None = None,
    ) -> list[str]:
        """Store up to 100 messages (256 KB) all or nothing; per-item delay beats the call's.

        `connection`: as for `send`, the batch joins your own transaction (PostgreSQL).
        """
        prepared = self.prepare_batch(messages, delay_seconds)
        await self._store(prepared, connection)
        return [m.id for m in prepared]

    def send_sync(self, body: Any, *, delay_seconds: float = 0, content_type: str = "json") -> str:
        """Blocking twin of `send`, for code that is not async."""
        message = self._prepare(body, delay_seconds, content_type)
        self.app.run_sync(self._store([message]))
        return message.id

    def send_batch_sync(
        self, messages: Sequence[Mapping[str, Any]], *, delay_seconds: float = 0
    ) -> list[str]:
        """Blocking twin of `send_batch`."""
        prepared = self.prepare_batch(messages, delay_seconds)
        self.app.run_sync(self._store(prepared))
        return [m.id for m in prepared]

    async def _store(self, messages: list[NewMessage], connection: Any | None = None) -> None:
        backend = await self.app.backend()
        if connection is None:
            await backend.message_enqueue_many(messages)
        else:
            await backend.message_enqueue_many(messages, connection=connection)

    # -- administration -------------------------------------------------------------

    async def pause(self) -> None:
        """Stop deliveries from this queue (sends still succeed) until `resume()`."""
        await (await self.app.backend()).queue_pause(self.name, True)

    async def resume(self) -> None:
        """Deliver from this queue again."""
        await (await self.app.backend()).queue_pause(self.name, False)

    async def get_message(self, message_id: str) -> StoredMessage | None:
        """A message of this queue as stored (acked messages are gone), or None."""
        record = await (await self.app.backend()).message_get(message_id)
        if record is None or record.queue != self.name:
            return None
        return StoredMessage.from_record(record)

    async def list_messages(
        self, state: str | None = None, limit: int = 100
    ) -> list[StoredMessage]:
        """This queue's stored messages, oldest first; `state` e.g. "failed" or "ready"."""
        records = await (await self.app.backend()).message_list(self.name, state, limit)
        return [StoredMessage.from_record(r) for r in records]

    async def counts(self) -> dict[str, int]:
        """How many messages this queue holds in each state."""
        rows = await (await self.app.backend()).queue_counts(self.name)
        return dict(rows[0].by_state) if rows else {}
