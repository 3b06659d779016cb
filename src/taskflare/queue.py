"""`Queue`: send messages to a declared queue, and register the one consumer that processes them.

A `Queue` is the producer-side handle of a queue declared in the registry: it validates
and encodes what is sent (Cloudflare's limits) and stores it through the app's storage
handle. Its settings and consumer live in the registry, where the worker reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

import orjson

from .backends.base import (
    EXACT_COUNT,
    DeadLetterReprocessParams,
    EnqueueParams,
    MessageGetParams,
    MessageListParams,
    NewMessage,
    QueueCountsParams,
    QueuePauseParams,
    QueuePurgeParams,
)
from .encoding import JSON, encode_body, normalize_content_type
from .errors import (
    BatchTooLarge,
    EmptyBatch,
    InvalidMessage,
    JobQueueSend,
    MessageTooLarge,
    TaskflareError,
    UnknownQueue,
    in_item,
)
from .ids import uuid7, uuid7_many
from .messages import check_delay
from .registry import JOBS, Registry
from .registry.queues import (
    DEFAULT_CONSUMER_TIMEOUT,
    BatchHandler,
    Consumer,
    QueueConfig,
    check_number,
    check_queue_name,
)
from .storage import Storage
from .stored import StoredMessage

__all__ = [
    "DEFAULT_CONSUMER_TIMEOUT",
    "MAX_SEND_BATCH_MESSAGES",
    "BatchHandler",
    "Queue",
    "QueueConfig",
    "check_queue_name",
    "format_bytes",
]

MAX_SEND_BATCH_MESSAGES = 100
# What a `send_batch` item may hold (the camelCase spellings are Cloudflare's).
_ITEM_KEYS = frozenset({"body", "delay_seconds", "delaySeconds", "content_type", "contentType"})


def format_bytes(count: int) -> str:
    """A byte count for people: `131 072 bytes (128 KiB)`."""
    plain = f"{count:,}".replace(",", " ")
    if count >= 1024 * 1024:
        return f"{plain} bytes ({count / 1024 / 1024:.1f} MiB)"
    if count >= 1024:
        return f"{plain} bytes ({count / 1024:.0f} KiB)"
    return f"{plain} bytes"


class Queue:
    """A named queue: send messages to it, and register the one consumer that processes them."""

    def __init__(self, storage: Storage, registry: Registry, name: str) -> None:
        self._storage = storage
        self._registry = registry
        self.name = name
        # The kind the queue's stored settings give ("" for none), read on the first send.
        self._stored_kind: str | None = None

    @property
    def config(self) -> QueueConfig:
        """The queue's settings."""
        return self._registry.queue(self.name).config

    @property
    def consumer_spec(self) -> Consumer | None:
        """The registered batch consumer, if any."""
        return self._registry.queue(self.name).consumer

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
        Raises `DuplicateConsumer` if the queue already has a consumer or runs job types.
        """
        check_number("timeout", timeout, 0.001, 7 * 86_400, integer=False)

        def register(fn: BatchHandler) -> BatchHandler:
            self._registry.set_consumer(self.name, Consumer.create(self.name, fn, timeout))
            return fn

        if handler is not None:
            return register(handler)
        return register

    # -- producer -------------------------------------------------------------------

    def _prepare(
        self,
        body: Any,
        delay_seconds: object,
        content_type: object,
        config: QueueConfig | None = None,
        message_id: str | None = None,
    ) -> NewMessage:
        config = config or self.config
        if delay_seconds is None:  # the send named no delay: the queue's own
            delay_seconds = config.delivery_delay
        ctype = (
            JSON
            if content_type == JSON
            else normalize_content_type(
                content_type, allow_pickle=config.allow_pickle, queue=self.name
            )
        )
        delay = check_delay(delay_seconds)
        data = encode_body(body, ctype)
        if len(data) > config.max_message_bytes:
            raise self._too_large(len(data), config)
        return NewMessage(message_id or uuid7(), self.name, data, ctype, delay)

    def _too_large(self, size: int, config: QueueConfig) -> MessageTooLarge:
        return MessageTooLarge(
            f"body is {format_bytes(size)}; the limit for queue {self.name!r} is "
            f"{format_bytes(config.max_message_bytes)}"
        )

    def prepare(
        self, body: Any, *, delay_seconds: object = None, content_type: object = "json"
    ) -> NewMessage:
        """Validate and encode one message (nothing is stored); raise before storing.
        `delay_seconds=None`: the queue's `delivery_delay`."""
        return self._prepare(body, delay_seconds, content_type)

    def prepare_batch(
        self, messages: Sequence[Mapping[str, Any]], delay_seconds: float | None = None
    ) -> list[NewMessage]:
        """Validate and encode a `send_batch` request; raise before anything is stored.
        A message's own delay beats the call's (`delay_seconds`), which beats the queue's
        `delivery_delay` (Cloudflare's precedence)."""
        if delay_seconds is None:
            delay_seconds = self.config.delivery_delay
        check_delay(delay_seconds)
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise InvalidMessage(
                f"messages must be a list of {{'body': ...}} items, got {type(messages).__name__}",
                fields=("messages",),
            )
        if not messages:
            raise EmptyBatch("send_batch() requires at least one message")
        if len(messages) > MAX_SEND_BATCH_MESSAGES:
            raise BatchTooLarge(
                f"batch has {len(messages)} messages; the limit is {MAX_SEND_BATCH_MESSAGES}"
            )
        config = self.config
        delay = float(delay_seconds)
        ids = uuid7_many(len(messages))  # one clock read and lock for the whole batch
        prepared = []
        for index, item in enumerate(messages):
            if type(item) is dict and len(item) == 1 and "body" in item:
                # The common item, {"body": ...}: a JSON body with the call's delay.
                try:
                    data = encode_body(item["body"], JSON)
                    if len(data) > config.max_message_bytes:
                        raise self._too_large(len(data), config)
                except TaskflareError as exc:
                    raise in_item(exc, f"messages[{index}]") from None
                prepared.append(NewMessage(ids[index], self.name, data, JSON, delay))
            else:
                prepared.append(self._prepare_item(index, item, delay, config, ids[index]))
        total = sum(len(m.body) for m in prepared)
        limit = config.max_batch_bytes
        if total > limit:
            raise BatchTooLarge(
                f"batch is {format_bytes(total)}; the limit for queue {self.name!r} is "
                f"{format_bytes(limit)}"
            )
        return prepared

    def _prepare_item(
        self, index: int, item: object, batch_delay: float, config: QueueConfig, message_id: str
    ) -> NewMessage:
        """One message of a batch; an error names the item (`messages[3]: ...`)."""
        where = f"messages[{index}]"
        if not isinstance(item, Mapping) or "body" not in item:
            raise InvalidMessage(f"{where} must be a mapping with a 'body' key")
        unknown = item.keys() - _ITEM_KEYS
        if unknown:
            raise InvalidMessage(f"{where} has unknown keys: {sorted(unknown)}")
        delay = item.get("delay_seconds", item.get("delaySeconds"))
        ctype = item.get("content_type", item.get("contentType", JSON))
        try:
            return self._prepare(
                item["body"], batch_delay if delay is None else delay, ctype, config, message_id
            )
        except TaskflareError as exc:
            raise in_item(exc, where) from None

    async def send(
        self,
        body: Any,
        *,
        delay_seconds: float | None = None,
        content_type: str = "json",
        connection: Any | None = None,
    ) -> str:
        """Store one message durably and return its id; it is delivered after `delay_seconds`
        (None: the queue's `delivery_delay`, 0 unless declared; 0 sends it at once).

        `JobQueueSend` for a job queue (its workers run job types, not messages).

        `connection`: your own psycopg connection (PostgreSQL only); the message is
        written inside its current transaction and exists only if that commits.
        """
        message = self._prepare(body, delay_seconds, content_type)
        await self._check_message_queue()
        await self._store([message], connection, batch=False)
        return message.id

    async def send_batch(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        delay_seconds: float | None = None,
        connection: Any | None = None,
    ) -> list[str]:
        """Store up to 100 messages (256 KB) all or nothing; per-item delay beats the call's,
        which beats the queue's `delivery_delay`.

        `connection`: as for `send`, the batch joins your own transaction (PostgreSQL).
        """
        prepared = self.prepare_batch(messages, delay_seconds)
        await self._check_message_queue()
        await self._store(prepared, connection, batch=True)
        return [m.id for m in prepared]

    def send_sync(
        self,
        body: Any,
        *,
        delay_seconds: float | None = None,
        content_type: str = "json",
        connection: Any | None = None,
    ) -> str:
        """Blocking twin of `send`, for code that is not async."""
        return self._storage.run_sync(
            self.send(
                body, delay_seconds=delay_seconds, content_type=content_type, connection=connection
            )
        )

    def send_batch_sync(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        delay_seconds: float | None = None,
        connection: Any | None = None,
    ) -> list[str]:
        """Blocking twin of `send_batch`."""
        return self._storage.run_sync(
            self.send_batch(messages, delay_seconds=delay_seconds, connection=connection)
        )

    async def _check_message_queue(self) -> None:
        """`JobQueueSend` if this is a job queue: by this app's declarations, else by its
        stored settings (read once per handle: a queue's kind does not change while it
        holds work)."""
        kind = self._registry.queue(self.name).kind
        if kind is None:
            if self._stored_kind is None:
                backend = await self._storage.backend()
                rows = await backend.queue_rows(QueueCountsParams(self.name))
                settings = rows[0].settings_json if rows else None
                stored = orjson.loads(settings).get("kind") if settings else None
                self._stored_kind = stored if isinstance(stored, str) else ""
            kind = self._stored_kind or None
        if kind == JOBS:
            raise JobQueueSend(
                f"queue {self.name!r} runs job types; a message sent to it would never run: "
                "enqueue a job instead (app.enqueue, POST /jobs, taskflare jobs enqueue)"
            )

    async def _store(
        self, messages: list[NewMessage], connection: Any | None = None, *, batch: bool
    ) -> None:
        backend = await self._storage.backend()
        tracing = self._registry.hooks.tracing
        if tracing is None:
            await backend.message_enqueue_many(EnqueueParams(messages, connection))
        else:
            with tracing.send("message", self.name, messages, batch=batch) as traced:
                await backend.message_enqueue_many(EnqueueParams(traced, connection))
        self._registry.hooks.enqueued("message", messages)

    # -- administration -------------------------------------------------------------

    async def pause(self) -> None:
        """Stop deliveries from this queue (sends still succeed) until `resume()`."""
        await (await self._storage.backend()).queue_pause(QueuePauseParams(self.name, True))

    async def resume(self) -> None:
        """Deliver from this queue again."""
        await (await self._storage.backend()).queue_pause(QueuePauseParams(self.name, False))

    async def purge(self) -> int:
        """Delete every message of this queue waiting for delivery (delayed ones too);
        return how many. Messages and jobs in flight (leased by a worker or a pull
        consumer) are kept and settled as usual; finished and failed ones are kept."""
        return await (await self._storage.backend()).queue_purge(QueuePurgeParams(self.name))

    async def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Send this queue's dead letters (all, or these ids) back to it with a fresh
        attempt budget (a dead-lettered job comes back as itself); return how many.
        Dead letters of other queues sharing the dead-letter queue stay where they are.
        `UnknownQueue` if the queue has no `dead_letter_queue`."""
        dlq = self.config.dead_letter_queue
        if dlq is None:
            raise UnknownQueue(f"queue {self.name!r} has no dead_letter_queue")
        backend = await self._storage.backend()
        return await backend.dead_letter_reprocess(
            DeadLetterReprocessParams(dlq, None if ids is None else list(ids), self.name)
        )

    async def get_message(self, message_id: str) -> StoredMessage | None:
        """A message of this queue as stored (acked messages are gone), or None."""
        record = await (await self._storage.backend()).message_get(MessageGetParams(message_id))
        if record is None or record.queue != self.name:
            return None
        return StoredMessage.from_record(record)

    async def list_messages(
        self, state: str | None = None, limit: int = 100
    ) -> list[StoredMessage]:
        """This queue's stored messages, oldest first; `state` e.g. "failed" or "ready"."""
        backend = await self._storage.backend()
        records = await backend.message_list(MessageListParams(self.name, state, limit))
        return [StoredMessage.from_record(r) for r in records]

    async def counts(self) -> dict[str, int]:
        """How many messages this queue holds in each state (exact: it reads every entry
        of the queue's by-state indexes; the dashboard and HTTP API stop at 10 000)."""
        backend = await self._storage.backend()
        rows = await backend.queue_counts(QueueCountsParams(self.name, count_limit=EXACT_COUNT))
        return dict(rows[0].by_state) if rows else {}
