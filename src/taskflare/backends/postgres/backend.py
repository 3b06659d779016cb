"""The PostgreSQL backend: any number of workers on any number of machines.

Each batch is claimed with one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
LOCKED)` statement, so workers take disjoint batches without waiting on each other; the
outcomes of many batches go back in one statement; a `send_batch` is one statement.
Idle workers sleep on LISTEN/NOTIFY: every statement that makes work ready notifies in
the same transaction, so a notification is sent exactly when the work is committed.

Connections are per event loop (an `App` is used from the worker's loop and from the
private loop of the sync twins): one pool and one listening connection per loop, both
opened lazily. Every table name is schema-qualified in the SQL itself, so `?schema=`
needs no search_path on our connections and statements run unchanged on a caller's
connection (transactional enqueue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...errors import (
    BackendUnavailable,
    InvalidDatabaseUrl,
    InvalidMessage,
    SchemaOutdated,
    SchemaTooNew,
)
from .. import sqlfile
from ..base import (
    ClaimedMessage,
    ClaimParams,
    FailOutcome,
    LeaseRef,
    MessageRecord,
    NewMessage,
    QueueCounts,
    QueueSettings,
    ReadyInfo,
    RescueParams,
    RescueResult,
    Settlement,
    SettleResult,
    WorkerReport,
)
from ..changes import ChangeSignal
from .jobs import PostgresJobStore

log = logging.getLogger("taskflare.postgres")

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Pool = AsyncConnectionPool[Conn]

_PACKAGE = "taskflare.backends.postgres"
_RAW_SQL = sqlfile.load_queries(_PACKAGE)
MIGRATIONS = sqlfile.load_migrations(_PACKAGE)
LATEST_VERSION = MIGRATIONS[-1].version

DEFAULT_SCHEMA = "taskflare"
# The server's clock in epoch seconds. now() is fixed for a transaction, so every
# timestamp one statement writes agrees, and it can bound an index scan.
_NOW = "extract(epoch FROM now())::float8"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CONNECT_TIMEOUT = "10"
_LISTEN_MAX_BACKOFF = 5.0
# How long the queue description returned by an empty claim may stand in for a query.
_READY_INFO_REUSE = 0.1


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """What a `postgresql://` URL asks for: libpq conninfo, schema and pool sizes."""

    conninfo: str
    schema: str
    min_size: int = 1
    max_size: int = 10
    password: str | None = None


def _size(options: dict[str, str], name: str, default: int, url: str) -> int:
    raw = options.pop(name, None)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidDatabaseUrl(f"{name}={raw!r} in {url!r} must be a positive integer")
    return int(raw)


def parse_postgres_url(url: str) -> PostgresSettings:
    """Split taskflare's own options (`schema`, `pool_min_size`, `pool_max_size`) off a URL."""
    from .. import redact_url

    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = options.pop("schema", DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.match(schema):
        raise InvalidDatabaseUrl(
            f"schema={schema!r} in {redact_url(url)!r}: use 1-63 lower-case letters, digits "
            "or '_', starting with a letter or '_'"
        )
    min_size = _size(options, "pool_min_size", 1, redact_url(url))
    max_size = _size(options, "pool_max_size", max(10, min_size), redact_url(url))
    if min_size > max_size:
        raise InvalidDatabaseUrl(
            f"pool_min_size={min_size} is larger than pool_max_size={max_size} "
            f"in {redact_url(url)!r}"
        )
    libpq_url = parts._replace(query=urlencode(options)).geturl()
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.ProgrammingError as exc:
        raise InvalidDatabaseUrl(f"invalid PostgreSQL URL {redact_url(url)!r}") from exc
    params.setdefault("connect_timeout", _CONNECT_TIMEOUT)
    password = params.get("password")
    return PostgresSettings(
        conninfo=make_conninfo("", **params),
        schema=schema,
        min_size=min_size,
        max_size=max_size,
        password=str(password) if password else None,
    )


def _statements(schema: str) -> dict[str, str]:
    quoted = f'"{schema}"'  # the name is validated: lower-case letters, digits, '_'
    return {
        name: text.replace("{schema}", quoted).replace("{now}", _NOW)
        for name, text in _RAW_SQL.items()
    }


class _LoopResources:
    """The pool and the listening connection that serve one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Pool) -> None:
        self.loop = loop
        self.pool = pool
        self.opened = False
        self.listener: asyncio.Task[None] | None = None
        self.listen_conn: psycopg.AsyncConnection[Any] | None = None

    async def aclose(self) -> None:
        """Stop listening and close the pool; runs on this resource's own loop."""
        if self.listener is not None:
            self.listener.cancel()
            await asyncio.gather(self.listener, return_exceptions=True)
        if self.listen_conn is not None:
            await self.listen_conn.close()
        await self.pool.close()

    def abandon(self) -> None:
        """Drop the sockets of a loop that is gone (nothing async can run there any more)."""
        conns: list[Any] = list(getattr(self.pool, "_pool", ()))
        if self.listen_conn is not None:
            conns.append(self.listen_conn)
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


class PostgresBackend(PostgresJobStore):
    """Backend over one schema of a PostgreSQL database."""

    def __init__(self, url: str, *, auto_migrate: bool = True, pool_timeout: float = 5.0) -> None:
        from .. import redact_url

        settings = parse_postgres_url(url)
        self.url_for_logs = redact_url(url)
        self.schema = settings.schema
        self.channel = f"taskflare_{settings.schema}"[:63]
        self._settings = settings
        self._sql = _statements(settings.schema)
        self._auto_migrate = auto_migrate
        self._pool_timeout = pool_timeout
        self._loops: dict[asyncio.AbstractEventLoop, _LoopResources] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._schema_ready = False
        self._changes = ChangeSignal()
        self._ready_cache: dict[tuple[str, int], tuple[float, ReadyInfo]] = {}

    # -- connections ----------------------------------------------------------------

    def _unavailable(self, exc: BaseException, doing: str) -> BackendUnavailable:
        text = f"{type(exc).__name__}: {exc}".strip()
        if self._settings.password:
            text = text.replace(self._settings.password, "***")
        return BackendUnavailable(f"PostgreSQL {self.url_for_logs}: cannot {doing}: {text}")

    def _resources(self) -> _LoopResources:
        if self._closed:
            raise BackendUnavailable(f"the PostgreSQL backend for {self.url_for_logs} is closed")
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._loops.get(loop)
            if found is None:
                for other, res in list(self._loops.items()):
                    if other.is_closed():
                        del self._loops[other]
                        res.abandon()
                pool: Pool = AsyncConnectionPool(
                    self._settings.conninfo,
                    connection_class=cast(type[Conn], psycopg.AsyncConnection),
                    # No server-side prepared statements: PostgreSQL's generic plans for
                    # the array-parameter claim/settle statements scan whole partial
                    # indexes (dead entries included), which made a 20k drain 10x slower
                    # than planning each execution. It also keeps PgBouncer happy.
                    kwargs={"autocommit": True, "prepare_threshold": None},
                    min_size=self._settings.min_size,
                    max_size=self._settings.max_size,
                    open=False,
                    timeout=self._pool_timeout,
                    name=f"taskflare-{self.schema}",
                )
                found = self._loops[loop] = _LoopResources(loop, pool)
            return found

    async def _pool(self) -> Pool:
        res = self._resources()
        if not res.opened:
            await res.pool.open(wait=False)
            res.opened = True
        return res.pool

    async def _run(
        self, fn: Callable[[Conn], Awaitable[T]], doing: str, *, check_schema: bool = True
    ) -> T:
        """Run `fn` on a pooled connection; retry once if the connection had gone stale.

        After a server restart every idle pooled connection is dead; the first use of
        each fails. Such a failure (and a deadlock victim) is retried at once on a fresh
        connection; every statement here is safe to repeat (leases guard outcomes,
        enqueue ignores ids already stored). Anything else becomes `BackendUnavailable`.
        """
        if check_schema and not self._schema_ready:
            await self._ensure_schema()
        pool = await self._pool()
        for attempt in (1, 2):
            used: Conn | None = None
            try:
                async with pool.connection() as conn:
                    used = conn
                    return await fn(conn)
            except PoolTimeout as exc:
                raise self._unavailable(exc, doing) from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                stale = used is not None and used.closed
                if attempt == 1 and (stale or isinstance(exc, pg_errors.TransactionRollback)):
                    if stale:
                        log.info(
                            "PostgreSQL %s: a pooled connection was lost (%s); retrying",
                            self.url_for_logs,
                            exc,
                        )
                        with contextlib.suppress(Exception):
                            await pool.check()
                    continue
                raise self._unavailable(exc, doing) from exc
        raise AssertionError("unreachable")

    async def _fetch(self, conn: Conn, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        cur = await conn.execute(self._sql[name], params)
        return await cur.fetchall()

    async def _one(self, name: str, params: dict[str, Any], doing: str) -> tuple[Any, ...]:
        async def run(conn: Conn) -> tuple[Any, ...]:
            return (await self._fetch(conn, name, params))[0]

        return await self._run(run, doing)

    # -- schema -------------------------------------------------------------------------

    async def _applied_versions(self, conn: Conn) -> list[int]:
        table = f'"{self.schema}".schema_migrations'
        exists = (await self._fetch(conn, "migrations_table_exists", {"table": table}))[0][0]
        if not exists:
            return []
        return [row[0] for row in await self._fetch(conn, "migrations_applied", {})]

    async def _migrate_on(self, conn: Conn) -> list[int]:
        done: list[int] = []
        async with conn.transaction():
            # Two processes migrating at once: the second waits here, then finds the
            # versions the first applied (CREATE SCHEMA IF NOT EXISTS alone can race).
            await conn.execute(self._sql["migrate_lock"], {"schema": self.schema})
            if not (await self._fetch(conn, "schema_exists", {"schema": self.schema}))[0][0]:
                await conn.execute(self._sql["schema_create"])
            await conn.execute(self._sql["migrations_table"])
            applied = await self._applied_versions(conn)
            await conn.execute(
                self._sql["migration_search_path"], {"search_path": f'"{self.schema}"'}
            )
            for migration in MIGRATIONS:
                if migration.version in applied:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    self._sql["migration_record"],
                    {"version": migration.version, "name": migration.name},
                )
                done.append(migration.version)
        return done

    def _verify(self, applied: list[int]) -> None:
        current = max(applied, default=0)
        if current > LATEST_VERSION:
            raise SchemaTooNew(
                f"schema {self.schema!r} of {self.url_for_logs} has version {current}, newer "
                f"than this taskflare ({LATEST_VERSION}); upgrade taskflare"
            )
        if current < LATEST_VERSION:
            raise SchemaOutdated(
                f"schema {self.schema!r} of {self.url_for_logs} has version {current}; this "
                f"taskflare needs {LATEST_VERSION}. Run: taskflare migrate {self.url_for_logs}"
            )

    async def _ensure_schema(self) -> None:
        """Check the schema version once; migrate a fresh (empty) schema automatically."""
        applied = await self._run(
            self._applied_versions, "read the schema version", check_schema=False
        )
        if not applied and self._auto_migrate:
            await self._run(self._migrate_on, "create the schema", check_schema=False)
            applied = await self._run(
                self._applied_versions, "read the schema version", check_schema=False
            )
        self._verify(applied)
        self._schema_ready = True

    async def migrate(self) -> list[int]:
        """Apply every pending migration in one transaction, under an advisory lock."""
        done = await self._run(self._migrate_on, "migrate", check_schema=False)
        self._schema_ready = False
        return done

    async def close(self) -> None:
        """Close every loop's pool and listener; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            resources = list(self._loops.values())
            self._loops.clear()
        current = asyncio.get_running_loop()
        for res in resources:
            if res.loop is current:
                await res.aclose()
            elif res.loop.is_closed() or not res.loop.is_running():
                res.abandon()
            else:
                future = asyncio.run_coroutine_threadsafe(res.aclose(), res.loop)
                try:
                    await asyncio.wait_for(asyncio.wrap_future(future), 10)
                except Exception as exc:  # that loop is stuck or dying: drop its sockets
                    log.warning("could not close connections of another event loop: %r", exc)
                    res.abandon()

    # -- change notification ----------------------------------------------------------

    @property
    def change_seq(self) -> int:
        """Moves on this process's own sends and on every NOTIFY from any process."""
        return self._changes.seq

    async def wait_for_change(self, since: int, timeout: float) -> None:
        """Sleep until a NOTIFY (or a local change) arrives, or `timeout` passes."""
        res = self._resources()
        if res.listener is None or res.listener.done():
            res.listener = asyncio.create_task(
                self._listen(res), name=f"taskflare-listen-{self.schema}"
            )
        await self._changes.wait(since, timeout)

    async def _listen(self, res: _LoopResources) -> None:
        """Hold a LISTEN connection for this loop, reconnecting with backoff when it breaks."""
        delay = 0.1
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._settings.conninfo, autocommit=True
                )
            except psycopg.OperationalError as exc:
                if not lost:
                    log.warning("%s", self._unavailable(exc, "listen for new work"))
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LISTEN_MAX_BACKOFF)
                continue
            res.listen_conn = conn
            try:
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    if lost:
                        log.warning(
                            "PostgreSQL %s: listening for new work again", self.url_for_logs
                        )
                    lost = False
                    delay = 0.1
                    # Work may have become ready while nobody was listening.
                    self._changes.bump()
                    async for _ in conn.notifies():
                        self._changes.bump()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("%s; reconnecting", self._unavailable(exc, "listen for new work"))
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LISTEN_MAX_BACKOFF)
            finally:
                res.listen_conn = None

    # -- messages -----------------------------------------------------------------------

    async def message_enqueue_many(
        self, messages: Sequence[NewMessage], connection: Any | None = None
    ) -> None:
        """Insert a batch in one statement (and NOTIFY in the same transaction).

        With `connection` (a psycopg `AsyncConnection`), the insert runs on it, inside
        the caller's transaction: the messages exist if and only if that commits.
        """
        if not messages:
            return
        params = {
            "ids": [m.id for m in messages],
            "queues": [m.queue for m in messages],
            "bodies": [m.body for m in messages],
            "content_types": [m.content_type for m in messages],
            "priorities": [m.priority for m in messages],
            "delays": [float(m.delay_seconds) for m in messages],
            "types": [m.type for m in messages],
            "max_attempts": [m.max_attempts for m in messages],
            "idempotency_keys": [m.idempotency_key for m in messages],
            "correlation_ids": [m.correlation_id for m in messages],
            "batch_ids": [m.batch_id for m in messages],
            "channel": self.channel,
        }
        if connection is None:

            async def run(conn: Conn) -> None:
                await conn.execute(self._sql["message_enqueue_many"], params)

            await self._run(run, "enqueue")
        else:
            await self._on_callers_connection(
                connection, lambda cur: cur.execute(self._sql["message_enqueue_many"], params)
            )
        self._changes.bump()

    async def _on_callers_connection(
        self, connection: Any, fn: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]]
    ) -> T:
        """Run `fn` on a cursor of the caller's connection, inside the caller's transaction."""
        if not isinstance(connection, psycopg.AsyncConnection):
            raise InvalidMessage(
                "connection= must be a psycopg.AsyncConnection (psycopg 3, async); got "
                f"{type(connection).__name__}"
            )
        if not self._schema_ready:
            await self._ensure_schema()
        try:
            async with psycopg.AsyncCursor(connection) as cur:
                return await fn(cur)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc, "enqueue on the given connection") from exc

    async def message_claim_many(self, params: ClaimParams) -> list[ClaimedMessage]:
        """Lease one batch in a single UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING."""
        args = {
            "queue": params.queue,
            "limit": params.limit,
            "lease_id": params.lease_id,
            "owner": params.owner,
            "visibility_timeout": float(params.visibility_timeout),
            "min_count": params.min_count,
            "max_wait": float(params.max_wait),
        }

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            return await self._fetch(conn, "message_claim_many", args)

        rows = await self._run(run, f"claim from queue {params.queue!r}")
        if rows and rows[0][0] is None:  # nothing claimed: the row describes the queue
            count, oldest, next_at, paused, now = rows[0][11:]
            info = ReadyInfo(int(count), oldest, next_at, bool(paused), float(now))
            self._ready_cache[(params.queue, params.limit)] = (time.monotonic(), info)
            return []
        claimed = [ClaimedMessage(*row[:11]) for row in rows]
        claimed.sort(key=lambda m: (-m.priority, m.id))
        return claimed

    def _settle_params(self, settlement: Settlement) -> dict[str, Any]:
        acks, retries, fails = settlement.acks, settlement.retries, settlement.fails
        completes, cancels, attempts = (
            settlement.completes,
            settlement.cancels,
            settlement.attempts,
        )
        return {
            "ack_ids": [a.id for a in acks],
            "ack_leases": [a.lease_id for a in acks],
            "retry_ids": [r.id for r in retries],
            "retry_leases": [r.lease_id for r in retries],
            "retry_delays": [float(r.delay_seconds) for r in retries],
            "retry_errors": [r.error for r in retries],
            "fail_ids": [f.id for f in fails],
            "fail_leases": [f.lease_id for f in fails],
            "fail_errors": [f.error for f in fails],
            "dlq_ids": [f.dlq_message_id if f.dead_letter_queue else None for f in fails],
            "dlq_queues": [f.dead_letter_queue if f.dlq_message_id else None for f in fails],
            "complete_ids": [c.id for c in completes],
            "complete_leases": [c.lease_id for c in completes],
            "complete_results": [c.result or b"null" for c in completes],
            "cancel_ids": [c.id for c in cancels],
            "cancel_leases": [c.lease_id for c in cancels],
            "cancel_reasons": [c.reason for c in cancels],
            "attempt_jobs": [a.job_id for a in attempts],
            "attempt_numbers": [a.attempt for a in attempts],
            "attempt_workers": [a.worker_id for a in attempts],
            "attempt_starts": [a.started_at for a in attempts],
            "attempt_ends": [a.finished_at for a in attempts],
            "attempt_outcomes": [a.outcome for a in attempts],
            "attempt_errors": [a.error for a in attempts],
            "attempt_tracebacks": [a.traceback for a in attempts],
            "channel": self.channel,
        }

    async def _settle_on(self, conn: Conn, settlement: Settlement) -> SettleResult:
        rows = await self._fetch(conn, "message_settle_many", self._settle_params(settlement))
        acked, retried, failed, dead_lettered, _, completed, cancelled = rows[0]
        if retried or dead_lettered:
            self._changes.bump()
        return SettleResult(int(acked), int(retried), int(failed), int(completed), int(cancelled))

    async def message_settle_many(self, settlement: Settlement) -> SettleResult:
        """Apply every outcome (dead-lettering, job results, attempt rows) in one statement."""
        s = settlement
        if not (s.acks or s.retries or s.fails or s.completes or s.cancels or s.attempts):
            return SettleResult()

        async def run(conn: Conn) -> SettleResult:
            return await self._settle_on(conn, settlement)

        return await self._run(run, "record outcomes")

    async def message_release_many(self, refs: Sequence[LeaseRef]) -> int:
        """Hand claimed-but-unstarted messages back, attempts restored."""
        if not refs:
            return 0
        params = {
            "ids": [r.id for r in refs],
            "leases": [r.lease_id for r in refs],
            "channel": self.channel,
        }
        count = int((await self._one("message_release_many", params, "release messages"))[0])
        if count:
            self._changes.bump()
        return count

    async def message_get(self, message_id: str) -> MessageRecord | None:
        """One message by id, or None."""

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            return await self._fetch(conn, "message_get", {"id": message_id})

        rows = await self._run(run, "read a message")
        return MessageRecord(*rows[0]) if rows else None

    async def message_list(
        self, queue: str, state: str | None = None, limit: int = 100
    ) -> list[MessageRecord]:
        """Messages of one queue, optionally of one state, oldest first."""
        params = {"queue": queue, "state": state, "limit": limit}

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            return await self._fetch(conn, "message_list", params)

        return [MessageRecord(*row) for row in await self._run(run, "list messages")]

    # -- leases -------------------------------------------------------------------------

    async def lease_extend_many(self, lease_ids: Sequence[str], visibility_timeout: float) -> int:
        """Heartbeat: push live leases' expiry forward."""
        if not lease_ids:
            return 0
        params = {"lease_ids": list(lease_ids), "visibility_timeout": float(visibility_timeout)}

        async def run(conn: Conn) -> int:
            cur = await conn.execute(self._sql["lease_extend_many"], params)
            return cur.rowcount

        return await self._run(run, "extend leases")

    async def lease_rescue_expired(self, params: RescueParams) -> RescueResult:
        """Requeue expired leases; fail (and dead-letter) those already out of attempts."""
        args = {"queue": params.queue, "max_attempts": params.max_attempts, "channel": self.channel}

        async def run(conn: Conn) -> RescueResult:
            async with conn.transaction():
                rows = await self._fetch(conn, "lease_rescue_expired", args)
                requeued = sum(int(row[2]) for row in rows if row[0] is None)
                exhausted = [row for row in rows if row[0] is not None]
                failed = 0
                if exhausted:
                    from ...ids import uuid7

                    fails = [
                        FailOutcome(
                            id=row[0],
                            lease_id=row[1],
                            error=(
                                f"lease expired after the last of {params.max_attempts} "
                                "deliveries: the worker holding this message stopped or "
                                "lost contact"
                            ),
                            dead_letter_queue=params.dead_letter_queue,
                            dlq_message_id=uuid7() if params.dead_letter_queue else None,
                        )
                        for row in exhausted
                    ]
                    failed = (await self._settle_on(conn, Settlement(fails=fails))).failed
            return RescueResult(requeued, failed)

        result = await self._run(run, f"rescue expired leases of queue {params.queue!r}")
        if result.requeued:
            self._changes.bump()
        return result

    # -- queues -------------------------------------------------------------------------

    async def queue_declare_many(self, queues: Sequence[QueueSettings]) -> None:
        """Create or update queue rows with their settings, in one statement."""
        if not queues:
            return
        params = {"names": [q.name for q in queues], "settings": [q.settings_json for q in queues]}

        async def run(conn: Conn) -> None:
            await conn.execute(self._sql["queue_declare_many"], params)

        await self._run(run, "declare queues")

    async def queue_pause(self, queue: str, paused: bool) -> None:
        """Set or clear a queue's paused flag (resuming notifies idle workers)."""
        params = {"name": queue, "paused": paused, "channel": self.channel}
        await self._one("queue_pause", params, f"pause or resume queue {queue!r}")
        if not paused:
            self._changes.bump()

    async def queue_ready_info(self, queue: str, limit: int) -> ReadyInfo:
        """Ready count (up to `limit`), oldest ready time, next delayed time, paused, DB now.

        Right after an empty claim of the same queue, the description that claim
        returned is used instead of a second query: the worker asks exactly then, and
        any change since has bumped `change_seq` (locally or by NOTIFY), so the worker
        looks again at once instead of trusting it.
        """
        cached = self._ready_cache.pop((queue, limit), None)
        if cached is not None and time.monotonic() - cached[0] < _READY_INFO_REUSE:
            return cached[1]
        row = await self._one(
            "queue_ready_info", {"queue": queue, "limit": limit}, f"inspect queue {queue!r}"
        )
        count, oldest, next_at, paused, now = row
        return ReadyInfo(int(count), oldest, next_at, bool(paused), float(now))

    async def queue_counts(self, queue: str | None = None) -> list[QueueCounts]:
        """Per-queue message counts by state."""

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            return await self._fetch(conn, "queue_counts", {"queue": queue})

        result: dict[str, QueueCounts] = {}
        rows = await self._run(run, "count messages")
        for name, paused, state, count, oldest, settings in rows:
            entry = result.get(name)
            if entry is None:
                entry = result[name] = QueueCounts(
                    name=name, paused=bool(paused), settings_json=settings
                )
            if state is not None:
                entry.by_state[state] = int(count)
            if oldest is not None:
                result[name] = QueueCounts(name, entry.paused, entry.by_state, oldest, settings)
        return list(result.values())

    # -- administration -----------------------------------------------------------------

    async def queue_purge(self, queue: str) -> int:
        """Delete unfinished messages of a queue (delayed ones too)."""
        return await self._rowcount("queue_purge", {"queue": queue}, f"purge queue {queue!r}")

    async def dead_letter_reprocess(self, dlq: str, ids: Sequence[str] | None) -> int:
        """Jobs back as themselves, plain messages moved back, in one statement (NOTIFY)."""
        params = {
            "dlq": dlq,
            "ids": None if ids is None else list(ids),
            "channel": self.channel,
        }
        rows = await self._rows("dead_letter_reprocess", params, f"reprocess {dlq!r}")
        count = int(rows[0][0])
        if count:
            self._changes.bump()
        return count

    async def worker_report(self, report: WorkerReport) -> None:
        """Upsert this worker's row (`last_seen` from the server's clock)."""
        params = {
            "id": report.id,
            "hostname": report.hostname,
            "pid": report.pid,
            "started_at": float(report.started_at),
            "stats": report.stats_json,
        }
        await self._rowcount("worker_report", params, "report worker stats")

    async def worker_list(self, since: float) -> list[WorkerReport]:
        """Workers seen since `since`."""
        rows = await self._rows("worker_list", {"since": float(since)}, "list workers")
        return [WorkerReport(*row) for row in rows]
