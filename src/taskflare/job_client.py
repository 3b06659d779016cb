"""The producer side of jobs: enqueue, read, wait for, cancel and retry jobs.

`JobClient` holds the registry (to validate payloads against their job type) and the
app's storage handle; `App` exposes its methods as its own (`app.enqueue`, ...), each
with a blocking `*_sync` twin.
"""

from __future__ import annotations

import base64
import builtins
import math
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from .backends.base import (
    DONE_TOPIC,
    CancelResult,
    CronTick,
    CronTickRecordParams,
    EnqueueParams,
    JobAttemptsParams,
    JobBatchCreateParams,
    JobBatchTotalParams,
    JobEnqueueParams,
    JobFilter,
    JobIdParams,
    MessageGetParams,
    NewMessage,
    QueueCountsParams,
    RetryResult,
    State,
)
from .errors import (
    InvalidJobConfig,
    InvalidJobOption,
    InvalidJobState,
    InvalidMessage,
    InvalidPayload,
    InvalidQuery,
    JobCancelled,
    JobFailed,
    JobNotFound,
    MessageTooLarge,
    TaskflareError,
    in_item,
)
from .events import log_event, wanted
from .ids import uuid7, uuid7_many
from .jobs import (
    Job,
    JobAttempt,
    JobPage,
    JobStatus,
    check_max_attempts,
    check_priority,
    run_at_delay,
)
from .limits import StoredFlow, Unique, check_key, check_keys_apply, unique_params
from .messages import check_delay
from .queue import format_bytes
from .registry import Registry
from .registry.hooks import LifecycleEvent
from .registry.job_types import JobType, encode_payload
from .registry.queues import QueueConfig, check_queue_name
from .registry.triggers import DEFAULT_CRON_QUEUE
from .storage import Storage
from .text import SURROGATE, check_name, check_text

T = TypeVar("T")

DEFAULT_IDEMPOTENCY_TTL = 86_400.0
MAX_LIST_LIMIT = 1000
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_JOB_QUEUE = DEFAULT_CRON_QUEUE
# How long `wait` sleeps on the change signal before looking again anyway, in case a
# notification was lost (a PostgreSQL listener reconnecting).
WAIT_FALLBACK_POLL = 1.0
DEFAULT_LIMITS = QueueConfig.create(DEFAULT_JOB_QUEUE)


def encode_cursor(created_at: float, job_id: str) -> str:
    """An opaque cursor for the next page of `list_jobs`."""
    return base64.urlsafe_b64encode(orjson.dumps([created_at, job_id])).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor stands for; `InvalidQuery` if it is not one of ours."""
    invalid = InvalidQuery(
        f"invalid cursor {cursor[:80]!r} (not one an earlier page ended with)",
        fields=("cursor",),
    )
    try:
        created_at, job_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        check_text(job_id, "cursor")
    except Exception as exc:
        raise invalid from exc
    # What encode_cursor wrote: a finite time and an id (not `"nan"`, `true` or a number,
    # which float() and str() would take).
    if type(created_at) not in (int, float) or not math.isfinite(created_at):
        raise invalid
    return float(created_at), job_id


def _stored_id(job_id: object) -> str:
    """`job_id` to look up: `InvalidMessage` if it is no string; `JobNotFound` for text
    no stored id can be (a NUL; PostgreSQL could not even compare it), as for any other
    id this library never handed out."""
    if not isinstance(job_id, str):
        raise InvalidMessage(
            f"job id must be a string, got {builtins.type(job_id).__name__}", fields=("job id",)
        )
    if "\x00" in job_id or SURROGATE.search(job_id):  # no stored id holds one
        raise JobNotFound(f"no job with id {job_id!r}")
    return job_id


def parse_status(value: str | JobStatus) -> JobStatus:
    """A job status by name; `InvalidQuery` (a `ValueError`) listing the names."""
    try:
        return JobStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise InvalidQuery(
            f"unknown status {value!r}; use one of {names}", fields=("status",)
        ) from None


def bulk_payloads(payloads: Iterable[Any], chunk_size: int | None = None) -> list[Any]:
    """The payloads of an `enqueue_many` call as a list, its `chunk_size` checked:
    `InvalidPayload` naming `payloads` for a dict, a string or a non-iterable;
    `InvalidJobConfig` for a chunk size outside 1..10 000."""
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or not 1 <= chunk_size <= 10_000
    ):
        raise InvalidJobConfig(f"chunk_size must be 1..10000, got {chunk_size!r}")
    if isinstance(payloads, (str, bytes, Mapping)) or not isinstance(payloads, Iterable):
        raise InvalidPayload(
            f"payloads must be a list of payloads, got {builtins.type(payloads).__name__}",
            fields=("payloads",),
        )
    return list(payloads)


class JobClient:
    """Enqueue and look after jobs of one app."""

    def __init__(self, registry: Registry, storage: Storage) -> None:
        self._registry = registry
        self._storage = storage
        # The stored queue settings' flow control, for job types this app does not
        # declare (loaded by `load_stored_flow`; None until then).
        self.stored_flow: StoredFlow | None = None

    async def load_stored_flow(self) -> StoredFlow:
        """Read the flow control every queue's workers and server stored with its settings
        (job types' limits and uniqueness, queues' rate limits and kinds), for enqueueing
        job types this app does not declare (`strict=False`)."""
        backend = await self._storage.backend()
        settings = {
            row.name: orjson.loads(row.settings_json)
            for row in await backend.queue_rows(QueueCountsParams())
            if row.settings_json
        }
        self.stored_flow = StoredFlow.from_settings(settings)
        return self.stored_flow

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` from code that is not async (the app's private loop)."""
        return self._storage.run_sync(coro)

    # -- enqueue --------------------------------------------------------------------------

    def prepare_job(
        self,
        type: str,
        payload: Any,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        delay_seconds: float = 0,
        run_at: datetime | float | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        queue: str | None = None,
        batch_id: str | None = None,
        strict: bool = True,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
    ) -> NewMessage:
        """Validate a job and build the message that stores it (nothing is stored yet).

        The payload is checked against the type's model and against the size limit of
        the queue it goes to. `strict=False` (admin tools without the app's code) takes an
        unknown type with default options and an unvalidated payload, on the queue the
        stored queue settings name for it (else `default`), with the limits and uniqueness
        stored for it (`load_stored_flow` first); `AppCodeRequired` when one of them needs
        the app's code (a key function: give `rate_key`/`concurrency_key`).
        """
        job_type = self._registry.job_types.get(type)
        if job_type is None and strict:
            self._registry.job_type(type)  # raises UnknownJobType naming the known ones
        if job_type is not None:
            target = self._job_queue(job_type, queue)
            body = job_type.encode(payload)
            default_priority, default_attempts = job_type.priority, job_type.max_attempts
        else:
            check_name(type, "type", max_length=200)
            body = encode_payload(type, payload)
            if self.stored_flow is None:
                raise InvalidJobConfig(
                    f"job type {type!r} is not declared in this app: read the stored queue "
                    "settings first (await app.jobs.load_stored_flow()) so its limits apply"
                )
            stored_queue = self.stored_flow.type_queues.get(type, DEFAULT_JOB_QUEUE)
            target = check_queue_name(queue or stored_queue)
            self.stored_flow.check_route(type, stored_queue, target)
            default_priority, default_attempts = self.stored_flow.type_defaults.get(
                type, (0, DEFAULT_MAX_ATTEMPTS)
            )
        if idempotency_key is not None:
            check_name(idempotency_key, "idempotency_key")
        if correlation_id is not None:
            check_name(correlation_id, "correlation_id")
        self._check_size(type, body, target)
        delay = run_at_delay(run_at, check_delay(delay_seconds), now=time.time())
        rate_key, concurrency_key = self._given_keys(type, rate_key, concurrency_key)
        flow_keys = self._flow_keys(type, target, body, rate_key, concurrency_key)
        return NewMessage(
            id=uuid7(),
            queue=target,
            body=body,
            content_type="json",
            delay_seconds=delay,
            priority=default_priority
            if priority is None
            else check_priority(priority, InvalidJobOption),
            type=type,
            max_attempts=default_attempts
            if max_attempts is None
            else check_max_attempts(max_attempts, InvalidJobOption),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            batch_id=batch_id,
            flow_keys=flow_keys,
        )

    def _job_queue(self, job_type: JobType, queue: str | None) -> str:
        """The queue a job of a declared type goes to: `queue` when given, else the
        type's. Any worker consuming `queue` whose app has the type runs it there, with
        the type's options (`Registry.claim_types`). `UnknownQueue` when `queue` is not a
        job queue of this app; `JobRouteRefused` when the type has rate or concurrency
        limits and `queue` is not its own."""
        if queue is None or queue == job_type.queue:
            return job_type.queue
        self._registry.check_route(job_type, queue)
        return queue

    def _given_keys(
        self, type: str, rate_key: str | None, concurrency_key: str | None
    ) -> tuple[str | None, str | None]:
        """The keys given at enqueue, checked (`InvalidMessage` naming the option): each
        must be a usable key, and one of the type's limits must use it
        (`check_keys_apply`), whether the limits are in this app's code or stored."""
        if rate_key is not None:
            rate_key = check_key(rate_key, "rate", "rate_key")
        if concurrency_key is not None:
            concurrency_key = check_key(concurrency_key, "concurrency", "concurrency_key")
        if rate_key is None and concurrency_key is None:
            return None, None
        job_type = self._registry.job_types.get(type)
        if job_type is not None:
            check_keys_apply(type, job_type.limits, rate_key, concurrency_key)
        elif self.stored_flow is not None:
            stored = self.stored_flow
            if type in stored.undeclared and type not in stored.type_limits:
                return rate_key, concurrency_key  # its buckets say AppCodeRequired
            limits = stored.type_limits.get(type)
            source = ", as the app's workers stored its limits"
            check_keys_apply(type, limits, rate_key, concurrency_key, source)
        return rate_key, concurrency_key

    def _flow_keys(
        self,
        type: str,
        queue: str,
        body: bytes,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
    ) -> tuple[str, ...] | None:
        """The limit buckets a job needs (None without limits: nothing is computed), for
        keys `_given_keys` checked."""
        keys = {"rate_key": rate_key, "concurrency_key": concurrency_key}
        spec = self._registry.queues.get(queue)
        job_type = self._registry.job_types.get(type)
        if job_type is None and spec is None and self.stored_flow is not None:
            return self.stored_flow.buckets(type, queue, orjson.loads(body), **keys)
        limited = job_type is not None and job_type.limits is not None and job_type.limits.active
        if spec is None or not (spec.rate_limit or limited):
            return None
        buckets = spec.flow_keys(job_type, orjson.loads(body), **keys)
        return tuple(buckets) if buckets else None

    def _check_size(self, type: str, body: bytes, queue: str) -> None:
        spec = self._registry.queues.get(queue)
        limit = (spec.config if spec else DEFAULT_LIMITS).max_message_bytes
        if len(body) > limit:
            raise MessageTooLarge(
                f"payload of job type {type!r} is {format_bytes(len(body))}; the limit for "
                f"queue {queue!r} is {format_bytes(limit)}"
            )

    def prepare_jobs(
        self,
        type: str,
        payloads: Sequence[Any],
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        delay_seconds: float = 0,
        run_at: datetime | float | None = None,
        correlation_id: str | None = None,
        queue: str | None = None,
        batch_id: str | None = None,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
    ) -> list[NewMessage]:
        """`prepare_job` for many payloads of one type with the same options: the options
        are checked once, each payload is validated and size-checked on its own, and an
        error about a payload names it (`payloads[3]: ...`). `run_at`, `queue`,
        `rate_key` and `concurrency_key` apply to every job of the call."""
        job_type = self._registry.job_type(type)  # UnknownJobType naming the known ones
        # Checked here, once, so that an error names the option and not a payload.
        rate_key, concurrency_key = self._given_keys(type, rate_key, concurrency_key)
        queue = self._job_queue(job_type, queue)
        prio = job_type.priority if priority is None else check_priority(priority, InvalidJobOption)
        attempts = (
            job_type.max_attempts
            if max_attempts is None
            else check_max_attempts(max_attempts, InvalidJobOption)
        )
        delay = run_at_delay(run_at, check_delay(delay_seconds), now=time.time())
        if correlation_id is not None:
            check_name(correlation_id, "correlation_id")
        spec = self._registry.queues.get(queue)
        limit = (spec.config if spec else DEFAULT_LIMITS).max_message_bytes
        encode = job_type.encode
        # A type without a payload model stores `orjson.dumps(payload)`: encoded here
        # directly, and through `encode` (its checks, its errors) only when that fails
        # or the text holds a `null` (where a NaN or an infinity would show).
        dumps = orjson.dumps if job_type.adapter is None else None
        ids = uuid7_many(len(payloads))  # one clock read and lock for the whole call
        messages: list[NewMessage] = []
        flowing = True  # until the first payload shows the type needs no limit buckets
        for index, payload in enumerate(payloads):
            try:
                if dumps is None:
                    body = encode(payload)
                else:
                    try:
                        body = dumps(payload)
                    except TypeError:
                        body = encode(payload)  # raises, naming what is not JSON
                    if b"null" in body:
                        body = encode(payload)
                if len(body) > limit:
                    self._check_size(type, body, queue)
                flow_keys = (
                    self._flow_keys(type, queue, body, rate_key, concurrency_key)
                    if flowing
                    else None
                )
            except TaskflareError as exc:
                raise in_item(exc, f"payloads[{index}]") from None
            flowing = flow_keys is not None  # how many buckets never depends on the payload
            # Positional: the dataclass's constructor, no `replace` per payload.
            messages.append(
                NewMessage(
                    ids[index],
                    queue,
                    body,
                    "json",
                    delay,
                    prio,
                    type,
                    attempts,
                    None,
                    correlation_id,
                    batch_id,
                    flow_keys,
                )
            )
        return messages

    async def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        delay_seconds: float = 0,
        run_at: datetime | float | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        queue: str | None = None,
        idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
        connection: Any | None = None,
        strict: bool = True,
        batch_id: str | None = None,
        unique: Unique | None = None,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
    ) -> Job:
        """Validate and store a job in one round trip; return it (`job.duplicate` if an
        earlier job held the idempotency key, or matches it under `unique`: that job is
        returned instead).

        `unique`: a `Unique` (default: the job type's), see `taskflare.Unique`; it cannot
        be combined with `idempotency_key`. `rate_key` / `concurrency_key`: the key of the
        job type's keyed rate / concurrency limits (overriding their key functions).

        `run_at`: an aware datetime (a naive one is refused) or epoch seconds; or
        `delay_seconds` from now. An idempotency key guards jobs that are pending,
        running or completed; a failed or cancelled job no longer holds its key.
        `connection`: your own psycopg connection (PostgreSQL only); the job is written
        inside your transaction and exists only if it commits. `batch_id`: add the job to
        a batch made by `create_batch` (one that grows while it runs; raise its total with
        `raise_batch_total`).
        Raises `UnknownJobType`, `InvalidPayload`, `MessageTooLarge`, `InvalidDelay`,
        `InvalidMessage` (a bad key or id), `BackendUnavailable`.
        """
        if not strict and type not in self._registry.job_types:
            await self.load_stored_flow()
        message = self.prepare_job(
            type,
            payload,
            priority=priority,
            max_attempts=max_attempts,
            delay_seconds=delay_seconds,
            run_at=run_at,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            queue=queue,
            strict=strict,
            batch_id=None if batch_id is None else check_name(batch_id, "batch_id"),
            rate_key=rate_key,
            concurrency_key=concurrency_key,
        )
        ttl = check_delay(idempotency_ttl, "idempotency_ttl")
        if ttl <= 0:  # a key that expires as it is taken guards nothing
            raise InvalidJobOption(
                f"idempotency_ttl must be more than 0 seconds, got {idempotency_ttl!r}: "
                "a key that expires at once lets a repeat enqueue a second job",
                fields=("idempotency_ttl",),
            )
        params = JobEnqueueParams(message, ttl, connection)
        if unique is None:
            unique = self.unique_of(type)
        if unique is not None:
            if not isinstance(unique, Unique):
                raise InvalidJobOption(
                    f"unique must be a taskflare.Unique, got {unique!r}", fields=("unique",)
                )
            if idempotency_key is not None:
                raise InvalidMessage(
                    "idempotency_key and unique cannot be combined; use one of them",
                    fields=("idempotency_key",),
                )
            params = unique_params(unique, message)
        backend = await self._storage.backend()
        tracing = self._registry.hooks.tracing
        if tracing is None:
            stored = await backend.job_enqueue(params)
        else:
            with tracing.send("job", message.queue, [message], batch=False) as traced:
                params = replace(params, message=traced[0])
                stored = await backend.job_enqueue(params)
        if stored.duplicate:
            existing = await self.get_job(stored.id)
            if existing is not None:
                existing.duplicate = True
                return existing
        if wanted("enqueued"):
            log_event(
                "enqueued",
                job_id=message.id,
                type=message.type,
                queue=message.queue,
                attempt=0,
                correlation_id=message.correlation_id,
            )
        self._registry.hooks.enqueued("job", [message])
        return self._as_stored(message)

    def _as_stored(self, message: NewMessage) -> Job:
        """The job just stored, as it stands now (times from this machine's clock): what
        `Job.from_record` makes of the row, built without the record in between."""
        assert message.type is not None
        now = time.time()
        created_at = datetime.fromtimestamp(now, UTC)
        delay = message.delay_seconds
        return Job(
            id=message.id,
            type=message.type,
            queue=message.queue,
            status=JobStatus.PENDING,
            payload=orjson.loads(message.body),
            priority=message.priority,
            attempts=0,
            max_attempts=message.max_attempts or 1,
            result=None,
            progress=None,
            progress_note=None,
            error=None,
            created_at=created_at,
            started_at=None,
            completed_at=None,
            run_at=datetime.fromtimestamp(now + delay, UTC) if delay else created_at,
            idempotency_key=message.idempotency_key,
            correlation_id=message.correlation_id,
            batch_id=message.batch_id,
            handle=self,
        )

    async def enqueue_many(
        self,
        type: str,
        payloads: Iterable[Any],
        *,
        chunk_size: int | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        delay_seconds: float = 0,
        run_at: datetime | float | None = None,
        correlation_id: str | None = None,
        queue: str | None = None,
        connection: Any | None = None,
        unique: Unique | None = None,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
    ) -> str:
        """Enqueue many jobs of one type in chunks (one transaction each); return the batch
        id (see `get_batch`). Every payload is validated before anything is stored.
        `chunk_size` (1..10 000) defaults to the storage's: 1 000 on SQLite, 5 000 on
        PostgreSQL. `rate_key` / `concurrency_key`: the key of the type's keyed limits for
        every job of the call (as `enqueue`'s; a key function gives each job its own).
        `payloads` must be a list (or another iterable that is not a dict or a string:
        `InvalidPayload` naming `payloads`); an empty one stores nothing and returns "".

        `run_at`, `queue` and `connection` mean what they mean for `enqueue`, for every job
        of the call: `run_at` an aware datetime or epoch seconds (not with
        `delay_seconds`: `InvalidDelay` naming both); `queue` one of this app's job queues
        (else `UnknownQueue`); `connection` your own psycopg connection (PostgreSQL only,
        else `InvalidMessage`): the batch record and every chunk are written inside your
        transaction, so the jobs exist if and only if it commits.

        With a `unique` (given here, else the one declared on the job type), every payload
        goes through the same check as `enqueue`: one matching a job in the declared
        states, or an earlier payload of this call, is not stored (its job is the existing
        one), concurrent-safe across processes; such jobs are stored one statement each,
        and the batch holds (and counts) only the jobs this call stored.
        """
        payloads = bulk_payloads(payloads, chunk_size)
        if not payloads:  # as Sidekiq's push_bulk([]) and Oban's insert_all([]): nothing
            return ""
        batch_id = uuid7()
        messages = self.prepare_jobs(
            type,
            payloads,
            priority=priority,
            max_attempts=max_attempts,
            delay_seconds=delay_seconds,
            run_at=run_at,
            correlation_id=correlation_id,
            queue=queue,
            batch_id=batch_id,
            rate_key=rate_key,
            concurrency_key=concurrency_key,
        )
        if unique is None:
            unique = self.unique_of(type)
        if unique is not None:
            if not isinstance(unique, Unique):
                raise InvalidJobOption(
                    f"unique must be a taskflare.Unique, got {unique!r}", fields=("unique",)
                )
            stored = await self.store_unique(unique, messages, connection=connection)
            count = sum(1 for _, new in stored if new)
            await self.create_batch(batch_id, type, count, connection=connection)
            return batch_id
        if chunk_size is None:
            chunk_size = (await self._storage.backend()).enqueue_chunk
        await self.store_batch(batch_id, type, messages, chunk_size, connection=connection)
        return batch_id

    def unique_of(self, type: str) -> Unique | None:
        """The uniqueness declared on `type` (by this app, else as stored), or None."""
        job_type = self._registry.job_types.get(type)
        if job_type is not None:
            return None if job_type.limits is None else job_type.limits.unique
        limits = None if self.stored_flow is None else self.stored_flow.limits(type)
        return None if limits is None else limits.unique

    async def store_unique(
        self,
        unique: Unique,
        messages: Sequence[NewMessage],
        names: Sequence[str] = (),
        *,
        connection: Any | None = None,
    ) -> list[tuple[str, bool]]:
        """Store prepared jobs under `unique`, each as `enqueue` does; per message, the id
        of its job (the existing one for a duplicate, also of an earlier message of the
        same call) and whether this call stored it. An error names the message by
        `names` (default: `payloads[3]`). `connection`: inside the caller's transaction,
        as `enqueue`'s."""
        every = []  # check all first
        for index, message in enumerate(messages):
            try:
                params = unique_params(unique, message)
                every.append(
                    params if connection is None else replace(params, connection=connection)
                )
            except TaskflareError as exc:
                where = names[index] if names else f"payloads[{index}]"
                raise in_item(exc, where) from None
        backend = await self._storage.backend()
        out: list[tuple[str, bool]] = []
        seen: dict[tuple[str | None, str | None], str] = {}
        stored: list[NewMessage] = []
        for params in every:
            key = (params.key_scope, params.message.idempotency_key)
            if key in seen:  # the same job as an earlier payload of this call
                out.append((seen[key], False))
                continue
            result = await backend.job_enqueue(params)
            seen[key] = result.id
            out.append((result.id, not result.duplicate))
            if not result.duplicate:
                stored.append(params.message)
        if stored:
            self._registry.hooks.enqueued("job", stored)
        return out

    async def store_batch(
        self,
        batch_id: str,
        type: str,
        messages: Sequence[NewMessage],
        chunk_size: int,
        *,
        connection: Any | None = None,
    ) -> None:
        """Record a batch and store its prepared jobs in chunks (one producer span for them
        all when tracing is on). Every chunk but the last commits without waiting for the
        disk; the last one's commit flushes them all, so the call returns once every
        chunk is durable after one flush (a database's log is flushed in order).
        `connection`: the record and every chunk inside the caller's transaction."""
        await self.create_batch(batch_id, type, len(messages), connection=connection)
        tracing = self._registry.hooks.tracing
        if tracing is None or not messages:
            await self._store_chunks(messages, chunk_size, connection)
            return
        with tracing.send("job", messages[0].queue, messages, batch=True) as traced:
            await self._store_chunks(traced, chunk_size, connection)

    async def _store_chunks(
        self, messages: Sequence[NewMessage], chunk_size: int, connection: Any | None
    ) -> None:
        for start in range(0, len(messages), chunk_size):
            last = start + chunk_size >= len(messages)
            await self.store_chunk(
                messages[start : start + chunk_size], durable=last, connection=connection
            )

    async def create_batch(
        self, batch_id: str, type: str, total: int, *, connection: Any | None = None
    ) -> None:
        """Record a batch of `total` jobs before its chunks are stored (`connection`:
        inside the caller's transaction; `InvalidMessage` where the backend cannot)."""
        backend = await self._storage.backend()
        await backend.job_batch_create(JobBatchCreateParams(batch_id, type, total, connection))

    async def raise_batch_total(self, batch_id: str, total: int) -> None:
        """Raise the total of a batch that grows while it runs (never lowers it)."""
        backend = await self._storage.backend()
        await backend.job_batch_raise_total(JobBatchTotalParams(batch_id, total))

    async def store_chunk(
        self,
        messages: Sequence[NewMessage],
        *,
        durable: bool = True,
        connection: Any | None = None,
    ) -> None:
        """Store prepared jobs (of a batch already recorded) in one transaction (the
        caller's, with `connection`); `durable=False`: its commit does not wait for the
        disk (a later durable commit flushes it)."""
        backend = await self._storage.backend()
        await backend.message_enqueue_many(EnqueueParams(messages, connection, durable))
        self._registry.hooks.enqueued("job", messages)

    # -- reading --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id as stored now, with its attempt history; None if unknown."""
        try:
            job_id = _stored_id(job_id)
        except JobNotFound:
            return None
        backend = await self._storage.backend()
        record = await backend.message_get(MessageGetParams(job_id))
        if record is None or record.type is None:
            return None
        attempts = await backend.job_attempts(JobAttemptsParams([job_id]))
        history = tuple(JobAttempt.from_record(a) for a in attempts)
        return Job.from_record(record, handle=self, history=history)

    async def list_jobs(
        self,
        *,
        status: str | JobStatus | None = None,
        type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Jobs newest first, filtered, each with its history; pass `page.next_cursor`
        back for the next page. `ValueError` for a bad status, limit (1..1000) or cursor."""
        state = None if status is None else parse_status(status).to_state()
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise InvalidQuery(
                f"limit must be 1..{MAX_LIST_LIMIT}, got {limit!r}", fields=("limit",)
            )
        for label, value in (("type", type), ("queue", queue)):
            if value is not None:
                check_text(value, label, max_length=200)
        before = None if cursor is None else decode_cursor(cursor)
        backend = await self._storage.backend()
        records = await backend.job_list(JobFilter(state, type, queue, limit + 1, before))
        page = records[:limit]
        histories: dict[str, list[JobAttempt]] = {}
        if page:
            for attempt in await backend.job_attempts(JobAttemptsParams([r.id for r in page])):
                histories.setdefault(attempt.job_id, []).append(JobAttempt.from_record(attempt))
        jobs = [
            Job.from_record(r, handle=self, history=tuple(histories.get(r.id, ()))) for r in page
        ]
        more = len(records) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return JobPage(jobs, next_cursor)

    async def wait_finished(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has finished, or as it stands after `timeout` seconds.

        Sleeps on the backend's `done` signal (raised when any job finishes, in this
        process or any other), so it returns as soon as the outcome is stored; looks
        again every second anyway in case a notification was lost. `JobNotFound` if there
        is no such job.
        """
        job_id = _stored_id(job_id)
        backend = await self._storage.backend()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seq = backend.change_seq(DONE_TOPIC)
            record = await backend.message_get(MessageGetParams(job_id))
            if record is None or record.type is None:
                raise JobNotFound(f"no job with id {job_id!r}")
            wait = WAIT_FALLBACK_POLL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if JobStatus.from_state(record.state).finished or wait <= 0:
                break
            await backend.wait_for_change(DONE_TOPIC, seq, wait)
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def wait_for_job(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for a job to finish: its result, or `JobFailed`/`JobCancelled`, or
        `TimeoutError` after `timeout` seconds."""
        job = await self.wait_finished(job_id, timeout)
        if job.status is JobStatus.FAILED:
            raise JobFailed(f"job {job_id} ({job.type}) failed: {job.error}", job=job)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelled(f"job {job_id} ({job.type}) was cancelled", job=job)
        if job.status is not JobStatus.COMPLETED:
            raise TimeoutError(f"timed out after {timeout}s waiting for job {job_id}")
        return job.result

    # -- changing -------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a pending one at once, a running one cooperatively.

        Decided once, in the database: once accepted, the job ends `cancelled` even if
        its handler returns meanwhile. A finished job cannot be cancelled:
        `InvalidJobState` (with its status). Unknown: `JobNotFound`.
        """
        backend = await self._storage.backend()
        outcome = await backend.job_cancel(JobIdParams(_stored_id(job_id)))
        if outcome.result is CancelResult.MISSING:
            raise JobNotFound(f"no job with id {job_id!r}")
        if outcome.result is CancelResult.FINISHED:
            status = JobStatus.from_state(outcome.state or State.COMPLETED).value
            raise InvalidJobState(
                f"job {job_id} is already {status}; only pending or running jobs can be cancelled"
            )
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} vanished while being cancelled")
        if outcome.result is CancelResult.CANCELLED:  # a running job's line comes from its worker
            log_event(
                "cancelled",
                job_id=job.id,
                type=job.type,
                queue=job.queue,
                attempt=job.attempts,
                correlation_id=job.correlation_id,
            )
            if self._registry.hooks.wants("cancelled"):
                self._registry.hooks.emit(
                    LifecycleEvent(
                        "cancelled",
                        "job",
                        job.queue,
                        job.id,
                        job.attempts,
                        type=job.type,
                        correlation_id=job.correlation_id,
                    )
                )
        return job

    async def retry(self, job_id: str) -> Job:
        """Put a failed or cancelled job back to pending with a fresh attempt budget.

        `InvalidJobState` for a job in another status; `JobNotFound` if unknown.
        """
        backend = await self._storage.backend()
        outcome = await backend.job_retry(JobIdParams(_stored_id(job_id)))
        if outcome.result is RetryResult.MISSING:
            raise JobNotFound(f"no job with id {job_id!r}")
        if outcome.result is RetryResult.WRONG_STATE:
            status = JobStatus.from_state(outcome.state or State.READY).value
            raise InvalidJobState(
                f"job {job_id} is {status}; only failed or cancelled jobs can be retried"
            )
        if outcome.result is RetryResult.KEY_HELD:
            raise InvalidJobState(
                f"job {job_id} cannot be retried: job {outcome.holder} has taken its "
                "idempotency key since it ended; retry or wait for that job instead"
            )
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} vanished while being retried")
        return job

    async def fire_cron(self, name: str) -> str:
        """Run a cron trigger once now (like Cloudflare's `/__scheduled?cron=`): the one
        called `name`, else the one whose expression `name` is; return the job id. The
        tick is recorded as `manual`, so it never hides a missed tick."""
        trigger = self._registry.cron_trigger(name)
        now = datetime.now(UTC)
        job = self.prepare_job(trigger.job_type, trigger.tick_payload(now))
        backend = await self._storage.backend()
        await backend.cron_tick_record(
            CronTickRecordParams(CronTick(trigger.name, now.timestamp(), "manual"), job)
        )
        return job.id
