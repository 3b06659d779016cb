"""The PostgreSQL backend: any number of workers on any number of machines.

Each batch is claimed with one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
LOCKED)` statement, so workers take disjoint batches without waiting on each other; the
outcomes of many deliveries go back in one statement; a `send_batch` is one statement.
Idle workers sleep on LISTEN/NOTIFY: every statement that changes what waiters wait
for notifies in the same transaction, so a notification is sent exactly when the
change commits, and this process's own listener hears it too (the change signal).
A job's end (`done`) goes to a channel of its own, listened to only by processes that
wait for one (see `PostgresExecutor.ensure_listening`).

Connections are per event loop (an `App` is used from the worker's loop and from the
private loop of the sync twins): one pool and one listening connection per loop, both
opened lazily. Every table name is schema-qualified in the SQL itself, so `?schema=`
needs no search_path on our connections and statements run unchanged on a caller's
connection (transactional enqueue).

Only what differs from SQLite in shape is written here; the rest is `SqlStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.pool_async import StopWorker

from ...errors import (
    BackendUnavailable,
    DatabaseNotFound,
    InvalidDatabaseUrl,
    InvalidMessage,
    SchemaOutdated,
    SchemaTooNew,
    StorageRejected,
)
from .. import sqlfile
from ..base import (
    DONE_TOPIC,
    ClaimedMessage,
    ClaimParams,
    ClaimResult,
    CronTickRecordParams,
    DeadLetterReprocessParams,
    DocInsertParams,
    EnqueueParams,
    EnqueueResult,
    JobBatchCreateParams,
    JobCancelResult,
    JobEnqueueParams,
    JobIdParams,
    JobRetryResult,
    NewMessage,
    PruneParams,
    ReadyInfo,
    ReadyInfoParams,
    RetryResult,
    Settlement,
    SettleResult,
)
from ..base import CancelResult as Cancel
from ..changes import ChangeSignal
from ..rows import Rows
from ..store import (
    CONCURRENCY_POLL,
    SqlStore,
    delivery_order,
    flow_scan,
    insert_args,
    limit_arrays,
)
from ..url import REDACTED, check_password, hide_credentials, redact_url, split_database_url
from .arrays import adapt_arrays, array_literal

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
# The clock of a statement that runs after waiting for a lock in its transaction.
_STMT_NOW = "extract(epoch FROM statement_timestamp())::float8"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Seconds to make one connection (TCP, TLS, authentication) when the URL gives no
# `connect_timeout`: libpq waits for ever, psycopg up to 130 s; 10 s failed on loaded
# machines, while a refused connection fails at once whatever this is.
DEFAULT_CONNECT_TIMEOUT = 30
_LISTEN_MAX_BACKOFF = 5.0
# A key can change hands between our look and our claim (it expired, or its job was
# deleted); a few rounds settle it, more means something is wrong.
_IDEMPOTENCY_ROUNDS = 4
# What a server-side prepared statement meeting a transaction-pooling bouncer raises.
_PREPARED_ERRORS = (pg_errors.InvalidSqlStatementName, pg_errors.DuplicatePreparedStatement)


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """What a `postgresql://` URL asks for: libpq conninfo, schema and pool sizes."""

    conninfo: str
    schema: str
    min_size: int = 1
    max_size: int = 10
    password: str | None = None
    # Seconds one connection may take (the URL's `connect_timeout`, as psycopg applies it).
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # Behind PgBouncer in transaction pooling mode (`?pgbouncer=1`): no server-side
    # prepared statements and no session settings on our connections.
    pgbouncer: bool = False
    # Where to LISTEN (`?listen_url=`): a direct connection to the server; None means the
    # main connection string, or no listening at all (polling) behind PgBouncer.
    listen_conninfo: str | None = None
    listen_password: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The passwords that must never appear in a message, as given and percent-encoded
        (libpq echoes a URL's parts), and libpq's `PGPASSWORD` if set."""
        given = (self.password, self.listen_password, os.environ.get("PGPASSWORD"))
        found = {s for p in given if p for s in (p, quote(p, safe=""))}
        return tuple(sorted(found, key=len, reverse=True))  # a longer spelling first


def _size(options: dict[str, str], name: str, default: int, url: str) -> int:
    raw = options.pop(name, None)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidDatabaseUrl(f"{name}={raw!r} in {url!r} must be a positive integer")
    return int(raw)


# The options taskflare reads off a PostgreSQL URL (the rest go to libpq).
TASKFLARE_OPTIONS = ("schema", "pool_min_size", "pool_max_size", "pgbouncer", "listen_url")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _flag(options: dict[str, str], name: str, url: str) -> bool:
    raw = options.pop(name, "0").lower()
    if raw not in _TRUE | _FALSE:
        raise InvalidDatabaseUrl(f"{name}={raw!r} in {url!r} must be 1 or 0 (true or false)")
    return raw in _TRUE


def _conninfo(url: str, shown: str) -> tuple[str, str | None, float]:
    """libpq conninfo of a URL (with taskflare's connect timeout unless the URL gives
    one), its password, and the seconds a connection may take.

    A URL libpq refuses is `InvalidDatabaseUrl` with libpq's reason (`invalid URI query
    parameter: "shema"`) and, for an unknown option, the ones taskflare adds."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        given = urlsplit(url).password
        for secret in (given, unquote(given or "")):
            if secret:
                reason = reason.replace(secret, REDACTED)
        reason = hide_credentials(reason)
        if "query parameter" in reason:
            reason += f" (taskflare's own options: {', '.join(TASKFLARE_OPTIONS)})"
        raise InvalidDatabaseUrl(
            f"invalid PostgreSQL URL {shown!r}" + (f": {reason}" if reason else "")
        ) from exc
    params.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
    raw = str(params["connect_timeout"])
    if not raw.strip().isdigit():
        raise InvalidDatabaseUrl(
            f"connect_timeout={raw!r} in {shown!r} must be a whole number of seconds "
            f"(default {DEFAULT_CONNECT_TIMEOUT})",
            fields=("database_url",),
        )
    password = params.get("password")
    seconds = timeout_from_conninfo(params)  # as psycopg applies it: at least 2; 0 is 130
    return make_conninfo("", **params), str(password) if password else None, seconds


def parse_postgres_url(url: str) -> PostgresSettings:
    """Split taskflare's own options off a URL: `schema`, `pool_min_size`,
    `pool_max_size`, `pgbouncer` (1: behind PgBouncer in transaction pooling mode) and
    `listen_url` (a URL-encoded direct URL for LISTEN). Raises `InvalidDatabaseUrl`."""
    check_password(url)
    parts = split_database_url(url)
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
    pgbouncer = _flag(options, "pgbouncer", redact_url(url))
    listen_url = options.pop("listen_url", None)
    listen_conninfo = listen_password = None
    if listen_url is not None:
        if not listen_url.startswith(("postgresql://", "postgres://")):
            raise InvalidDatabaseUrl(
                f"listen_url in {redact_url(url)!r} must be a URL-encoded postgresql:// URL"
            )
        check_password(listen_url, "listen_url")
        listen_conninfo, listen_password, _ = _conninfo(listen_url, redact_url(listen_url))
    # quote, not quote_plus: libpq reads a "+" in a URL as itself, not as a space. Built
    # by hand: urlunsplit drops the "//" of a URL without a host (postgresql:///db).
    query = urlencode(options, quote_via=quote)
    libpq_url = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    conninfo, password, connect_timeout = _conninfo(libpq_url, redact_url(url))
    return PostgresSettings(
        conninfo=conninfo,
        connect_timeout=connect_timeout,
        schema=schema,
        min_size=min_size,
        max_size=max_size,
        password=password,
        pgbouncer=pgbouncer,
        listen_conninfo=listen_conninfo,
        listen_password=listen_password,
    )


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# A transaction left open by a failed pipelined claim.
_OPEN = (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR)
_IDLE = psycopg.pq.TransactionStatus.IDLE
# After the claim connection could not be opened, claims use the pool this long [s].
_CLAIM_RETRY = 5.0


def native(statement: str) -> tuple[str, tuple[str, ...]]:
    """`statement` with PostgreSQL's own placeholders ($1, $2, ...; a name used twice is
    one parameter) and the parameter names in their order. The limited claim is sent
    this way: longer than psycopg's cache of converted queries holds (4 096 bytes), it
    was parsed again on every claim."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, statement).replace("%%", "%"), tuple(names)


def _statements(schema: str) -> dict[str, str]:
    quoted = f'"{schema}"'  # the name is validated: lower-case letters, digits, '_'
    return {
        name: text.replace("{schema}", quoted)
        .replace("{now}", _NOW)
        .replace("{stmt_now}", _STMT_NOW)
        for name, text in _RAW_SQL.items()
    }


async def _configure(conn: Conn) -> None:
    """Plan every execution of a prepared statement for its own parameters: a generic
    plan of the array-parameter claim and settle statements scans whole partial indexes
    (dead entries included), which once made a 20k drain ten times slower. No JIT
    compilation: every statement here is short (index seeks and bounded scans), and on a
    large table an estimate above `jit_above_cost` made PostgreSQL spend a quarter of a
    second compiling a statement that then ran in milliseconds."""
    await conn.execute("SET plan_cache_mode = force_custom_plan", prepare=False)
    await conn.execute("SET jit = off", prepare=False)


async def _rows(cur: psycopg.AsyncCursor[Any]) -> Rows:
    result = cur.pgresult
    if result is None or not result.nfields:
        return Rows((), [], cur.rowcount)
    # The names straight from the result: `cur.description` builds an object a column.
    columns = tuple((result.fname(i) or b"").decode() for i in range(result.nfields))
    return Rows(columns, await cur.fetchall(), cur.rowcount)


class _ThreadedCursor:
    """A plain psycopg cursor behind the async cursor calls `PostgresExecutor.on` makes:
    `execute` runs in a worker thread; the rows are already on the client after it."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    async def execute(
        self, query: str, params: Mapping[str, Any], *, prepare: bool | None = None
    ) -> _ThreadedCursor:
        await asyncio.to_thread(self._cur.execute, query, params, prepare=prepare)
        return self

    @property
    def pgresult(self) -> Any:
        return self._cur.pgresult

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class _LoopPool(AsyncConnectionPool[Conn]):
    """psycopg_pool's pool, whose background tasks end when their loop cancels them.

    When a loop ends, `asyncio.run` cancels every task left once and waits for them all.
    psycopg_pool's tasks could swallow that one cancellation and then wait forever, and
    `asyncio.run` with them:
    - a maintenance worker runs tasks (open a connection, reset a returned one) that
      catch `CancelledError` to keep the pool consistent, then waits for the next task;
      a loop ending while a connection is still being opened (`pool_min_size` of them
      start at once, and the pool grows on demand) hit that;
    - the scheduler waits with `asyncio.wait_for`, which on Python 3.11 returns normally
      when the awaited event is set in the same loop iteration as the cancellation (a
      worker's cancelled connection attempt schedules a retry, which sets it).
    Here a worker whose task was cancelled ends (`Task.cancelling()` still counts a
    cancellation whose exception was swallowed), and a cancelled worker stops the
    scheduler the way `close()` does. Only a loop cancelling all of its tasks (it is
    ending) cancels a pool worker: nothing else holds them."""

    async def worker(self, q: Any) -> None:  # type: ignore[override]
        me = asyncio.current_task()
        try:
            while True:
                task = await q.get()
                if isinstance(task, StopWorker):
                    return
                try:
                    await task.run()
                except Exception as exc:  # as psycopg_pool's own worker: log, go on
                    log.warning("pool maintenance %s failed: %r", task, exc)
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._sched.enter(0, None)  # None: the scheduler's stop
            raise


class _LoopResources:
    """The pool, the listening connection and the claim connection that serve one event
    loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Pool) -> None:
        self.loop = loop
        self.pool = pool
        self.opened = False
        self.served = False  # whether the pool has handed out a connection yet
        self.listener: asyncio.Task[None] | None = None
        self.listen_conn: psycopg.AsyncConnection[Any] | None = None
        # Whether the listener also listens for jobs ending (the `done` channel).
        self.listen_done = False
        # Listeners replaced by one that listens to more, still closing.
        self.retired: set[asyncio.Task[None]] = set()
        # The claim connection (see `PostgresExecutor.on_claim_connection`): in use (or
        # being opened), and when to try opening it again after a failure.
        self.claim_conn: Conn | None = None
        self.claim_busy = False
        self.claim_retry_at = 0.0

    async def aclose(self) -> None:
        """Stop listening and close the connections; runs on this resource's own loop."""
        tasks = [*self.retired, *([self.listener] if self.listener is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.listen_conn is not None:
            await self.listen_conn.close()
        if self.claim_conn is not None:
            await self.claim_conn.close()
        await self.pool.close()

    def abandon(self) -> None:
        """Drop the sockets of a loop that is gone (nothing async can run there any more)."""
        conns: list[Any] = list(getattr(self.pool, "_pool", ()))
        if self.listen_conn is not None:
            conns.append(self.listen_conn)
        if self.claim_conn is not None:
            conns.append(self.claim_conn)
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


class PostgresExecutor:
    """Runs named statements on pooled connections (autocommit: one statement, one
    transaction) and keeps the per-loop pools and listeners."""

    def __init__(
        self, settings: PostgresSettings, url: str, signal: ChangeSignal, *, pool_timeout: float
    ) -> None:
        self.url_for_logs = redact_url(url)
        self.schema = settings.schema
        self.channel = f"taskflare_{settings.schema}"[:63]
        # Where a job's end is notified: every worker listens on `channel`, and each would
        # hear every job end of every worker (group-committed: one notification per
        # settle), N processes N times each; only what waits for a job's end listens
        # here. The ':' keeps it apart from every `channel` (schema names have none).
        self.done_channel = f"{self.channel[:58]}:done"
        self.statements_run = 0
        self.sql = _statements(settings.schema)
        self._settings = settings
        # Behind PgBouncer: never prepare, not even on a caller's connection.
        self.pgbouncer = settings.pgbouncer
        self.prepare: bool | None = False if settings.pgbouncer else None
        self._signal = signal
        self._pool_timeout = pool_timeout
        self._loops: dict[asyncio.AbstractEventLoop, _LoopResources] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.schema_ready = False
        self.auto_migrate = True
        self._reached = False
        self._polling_logged = False

    # -- running --------------------------------------------------------------------------

    def unavailable(self, exc: BaseException, doing: str) -> BackendUnavailable:
        """A `BackendUnavailable` naming the database (password removed) and the action."""
        text = self._hide(f"{type(exc).__name__}: {exc}".strip())
        if isinstance(exc, _PREPARED_ERRORS) and not self._settings.pgbouncer:
            text += (
                " (behind PgBouncer in transaction pooling mode? add pgbouncer=1 to the "
                "database URL)"
            )
        return BackendUnavailable(f"PostgreSQL {self.url_for_logs}: cannot {doing}: {text}")

    def _hide(self, text: str) -> str:
        for secret in self._settings.secrets:
            text = text.replace(secret, "***")
        return hide_credentials(text)

    async def fetch(self, name: str, params: Mapping[str, Any]) -> Rows:
        """Run statement `name` in its own transaction and return its rows."""

        async def run(conn: Conn) -> Rows:
            return await self.on(conn, name, params)

        return await self.run(run, name)

    async def on(
        self, conn: Conn | psycopg.AsyncCursor[Any], name: str, params: Mapping[str, Any]
    ) -> Rows:
        """Run statement `name` on this connection (or cursor), inside whatever transaction
        it is in."""
        self.statements_run += 1
        args = adapt_arrays({**params, "channel": self.channel, "done_channel": self.done_channel})
        cur = await conn.execute(self.sql[name], args, prepare=self.prepare)
        return await _rows(cur)

    async def run(
        self, fn: Callable[[Conn], Awaitable[T]], doing: str, *, check_schema: bool = True
    ) -> T:
        """Run `fn` on a pooled connection; retry once if the connection had gone stale.

        After a server restart every idle pooled connection is dead; the first use of
        each fails. Such a failure (and a deadlock victim) is retried at once on a fresh
        connection; every statement here is safe to repeat (leases guard outcomes,
        enqueue ignores ids already stored). A value the server refuses becomes
        `StorageRejected`; anything else `BackendUnavailable`.
        """
        if check_schema and not self.schema_ready:
            await self.ensure_schema()
        res = await self._pool()
        pool = res.pool
        for attempt in (1, 2):
            used: Conn | None = None
            try:
                # getconn/putconn, not `pool.connection()`: that also enters the
                # connection's own context, whose commit (a no-op in autocommit) took
                # the connection's lock and ran psycopg's wait loop on every call. The
                # pool rolls back a connection returned inside a transaction and
                # replaces a broken one, as before.
                used = await pool.getconn(self._wait_for(res))
                res.served = True
                try:
                    return await fn(used)
                finally:
                    await pool.putconn(used)
            except PoolTimeout as exc:
                raise self.unavailable(exc, doing) from exc
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
                raise self.unavailable(exc, doing) from exc
            except (
                psycopg.DataError,
                psycopg.IntegrityError,
                UnicodeEncodeError,
                OverflowError,
            ) as exc:
                raise StorageRejected(
                    f"PostgreSQL {self.url_for_logs} refused a value ({doing}): {exc}"
                ) from exc
            except psycopg.Error as exc:
                raise self.unavailable(exc, doing) from exc
        raise AssertionError("unreachable")

    async def on_claim_connection(
        self, name: str, values: Mapping[str, Any], *, open_connection: bool = True
    ) -> Rows | None:
        """Run statement `name` by itself on this loop's claim connection; None when that
        connection is in use, cannot be had (or is not open and `open_connection` is
        False), or the statement failed there (the caller then runs it on a pooled
        connection, where a failure is reported as usual; a claim that failed did not
        commit, and one whose connection was lost after it committed has its messages
        delivered again when the lease expires).

        The claim connection runs nothing but a worker's claims and its looks at a queue
        after a claim took nothing (`queue_ready_info`, which does not open it: only a
        process that claims has one), so its session carries the claim's settings
        (`claim_session`) and the claim is one statement: one round trip, no BEGIN,
        settings and COMMIT around it, no pool checkout, and a server process that only
        claims. Never behind PgBouncer (no session settings there)."""
        query = self.sql[name]

        async def run(conn: Conn) -> Rows:
            return await _rows(await conn.execute(query, values))

        return await self.run_on_claim_connection(run, 1, open_connection=open_connection)

    async def run_on_claim_connection(
        self,
        fn: Callable[[Conn], Awaitable[Rows]],
        statements: int,
        *,
        open_connection: bool = True,
    ) -> Rows | None:
        """`fn` (a claim of `statements` statements) on this loop's claim connection, as
        `on_claim_connection` runs its statement: None when that connection is in use,
        cannot be had (or is not open and `open_connection` is False), or the claim
        failed there."""
        if self.pgbouncer or not self.schema_ready:
            return None
        res = self._resources()
        if res.claim_busy:
            return None
        res.claim_busy = True
        conn = res.claim_conn
        try:
            if conn is None:
                if not open_connection or time.monotonic() < res.claim_retry_at:
                    return None
                conn = res.claim_conn = await self._open_claim_connection(res)
                if conn is None:
                    return None
            self.statements_run += statements
            try:
                return await fn(conn)
            except (psycopg.Error, UnicodeEncodeError, OverflowError) as exc:
                if conn.closed or conn.info.transaction_status != _IDLE:
                    log.info(
                        "PostgreSQL %s: the claim connection was lost (%s)",
                        self.url_for_logs,
                        self._hide(str(exc)),
                    )
                    await self._drop_claim_connection(res)
                return None
            except BaseException:  # cancelled mid-claim: the connection's state is unknown
                await self._drop_claim_connection(res)
                raise
        finally:
            res.claim_busy = False

    async def _open_claim_connection(self, res: _LoopResources) -> Conn | None:
        """Connect and configure a claim connection (None, and a pause, on failure)."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._settings.conninfo, autocommit=True, prepare_threshold=0
            )
        except psycopg.Error as exc:
            log.warning("%s", self.unavailable(exc, "open the claim connection"))
            res.claim_retry_at = time.monotonic() + _CLAIM_RETRY
            return None
        try:
            await conn.execute(self.sql["claim_session"], prepare=False)
        except psycopg.Error as exc:
            log.warning("%s", self.unavailable(exc, "configure the claim connection"))
            res.claim_retry_at = time.monotonic() + _CLAIM_RETRY
            await conn.close()
            return None
        return conn

    async def _drop_claim_connection(self, res: _LoopResources) -> None:
        conn, res.claim_conn = res.claim_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def claim_backend_pid(self) -> int | None:
        """The server process of this loop's claim connection, if open (for tests)."""
        conn = self._resources().claim_conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    async def on_callers_connection(
        self, connection: Any, fn: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]]
    ) -> T:
        """Run `fn` on a cursor of the caller's connection, inside the caller's transaction.

        `connection` is a psycopg 3 `AsyncConnection` or a plain `Connection` (what Django
        and most Flask apps hold); a plain one runs its statements in a worker thread so
        the event loop is not blocked. Anything else: `InvalidMessage`."""
        if not isinstance(connection, (psycopg.AsyncConnection, psycopg.Connection)):
            raise InvalidMessage(
                "connection= must be a psycopg 3 Connection or AsyncConnection; got "
                f"{type(connection).__name__}"
            )
        if not self.schema_ready:
            await self.ensure_schema()
        try:
            if isinstance(connection, psycopg.Connection):
                with psycopg.Cursor(connection) as sync_cur:
                    return await fn(cast(psycopg.AsyncCursor[Any], _ThreadedCursor(sync_cur)))
            async with psycopg.AsyncCursor(connection) as cur:
                return await fn(cur)
        except (psycopg.OperationalError, psycopg.InterfaceError, *_PREPARED_ERRORS) as exc:
            raise self.unavailable(exc, "enqueue on the given connection") from exc
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
            raise StorageRejected(f"PostgreSQL refused a value: {exc}") from exc

    # -- pools --------------------------------------------------------------------------

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
                bouncer = self._settings.pgbouncer
                pool: Pool = _LoopPool(
                    self._settings.conninfo,
                    connection_class=cast(type[Conn], psycopg.AsyncConnection),
                    # Statements are prepared on first use (parsed once a connection) and
                    # planned for each execution's parameters (see _configure). Behind
                    # PgBouncer a client connection is not a server session: nothing is
                    # prepared (unnamed statements are planned per execution anyway).
                    kwargs={"autocommit": True, "prepare_threshold": None if bouncer else 0},
                    configure=None if bouncer else _configure,
                    min_size=self._settings.min_size,
                    max_size=self._settings.max_size,
                    open=False,
                    timeout=self._pool_timeout,
                    name=f"taskflare-{self.schema}",
                )
                found = self._loops[loop] = _LoopResources(loop, pool)
            return found

    async def _pool(self) -> _LoopResources:
        """This loop's pool (opened on first use) and what goes with it."""
        res = self._resources()
        if not res.opened:
            if not self._reached:
                await self._probe()
            await res.pool.open(wait=False)
            res.opened = True
        return res

    def _wait_for(self, res: _LoopResources) -> float:
        """Seconds to wait for a pooled connection: `pool_timeout`, except until the pool
        has given one, when its first connection is still being made (a server slow to
        accept, a loaded machine): then as long as a connection may take."""
        if res.served:
            return self._pool_timeout
        return max(self._pool_timeout, self._settings.connect_timeout)

    async def _probe(self) -> None:
        """Connect once, directly, before the first pool opens.

        A pool retries a failing connection until its timeout and logs a warning for
        every try; a wrong password, a missing database or a server that is not there
        would take `pool_timeout` seconds and several multi-line warnings to report.
        The probe reports it at once, in one line."""
        try:  # within the URL's connect_timeout, as every other connection
            conn = await psycopg.AsyncConnection.connect(self._settings.conninfo, autocommit=True)
        except psycopg.Error as exc:
            text = self._hide(" ".join(str(exc).split()))
            raise BackendUnavailable(f"PostgreSQL {self.url_for_logs}: {text}") from exc
        await conn.close()
        self._reached = True

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

    # -- schema -------------------------------------------------------------------------

    async def _applied_versions(self, conn: Conn) -> list[int]:
        table = f'"{self.schema}".schema_migrations'
        exists = (await self.on(conn, "migrations_table_exists", {"table": table})).scalar()
        if not exists:
            return []
        return [row[0] for row in (await self.on(conn, "migrations_applied", {})).rows]

    async def _migrate_on(self, conn: Conn) -> list[int]:
        done: list[int] = []
        async with conn.transaction():
            # Two processes migrating at once: the second waits here, then finds the
            # versions the first applied (CREATE SCHEMA IF NOT EXISTS alone can race).
            await self.on(conn, "migrate_lock", {"schema": self.schema})
            if not (await self.on(conn, "schema_exists", {"schema": self.schema})).scalar():
                await self.on(conn, "schema_create", {})
            await self.on(conn, "migrations_table", {})
            applied = await self._applied_versions(conn)
            await self.on(conn, "migration_search_path", {"search_path": f'"{self.schema}"'})
            for migration in MIGRATIONS:
                if migration.version in applied:
                    continue
                await conn.execute(migration.sql, prepare=False)
                await self.on(
                    conn, "migration_record", {"version": migration.version, "name": migration.name}
                )
                done.append(migration.version)
        return done

    def _verify(self, applied: list[int]) -> None:
        current = max(applied, default=0)
        if current == 0 and not self.auto_migrate:
            raise DatabaseNotFound(
                f"no taskflare database in schema {self.schema!r} of {self.url_for_logs}; "
                "nothing was created"
            )
        if current > LATEST_VERSION:
            raise SchemaTooNew(
                f"schema {self.schema!r} of {self.url_for_logs} has version {current}, newer "
                f"than this taskflare ({LATEST_VERSION}); upgrade taskflare"
            )
        missing = sqlfile.missing_versions(MIGRATIONS, applied)
        if missing:
            raise SchemaOutdated(
                f"schema {self.schema!r} of {self.url_for_logs} has version {current}; this "
                f"taskflare needs {LATEST_VERSION} (missing: {', '.join(map(str, missing))}). "
                f"Run: taskflare migrate {self.url_for_logs}"
            )

    async def ensure_schema(self) -> None:
        """Check the schema version once; migrate a fresh (empty) schema automatically."""
        applied = await self.run(
            self._applied_versions, "read the schema version", check_schema=False
        )
        if not applied and self.auto_migrate:
            await self.run(self._migrate_on, "create the schema", check_schema=False)
            applied = await self.run(
                self._applied_versions, "read the schema version", check_schema=False
            )
        self._verify(applied)
        self.schema_ready = True

    async def migrate(self) -> list[int]:
        """Apply every pending migration in one transaction, under an advisory lock."""
        done = await self.run(self._migrate_on, "migrate", check_schema=False)
        self.schema_ready = False
        return done

    # -- listening ----------------------------------------------------------------------

    def ensure_listening(self, *, done: bool = False) -> None:
        """Start this loop's LISTEN connection if it is not running (behind PgBouncer
        without `listen_url`: never; waiters then poll). `done`: it listens for jobs
        ending too, from now on. The first such wait starts a listener on both channels
        that takes over from the running one once it listens (no moment without a
        listener for new work) and then raises `done` once, so a job that ended while it
        connected wakes the waiter all the same."""
        if self._settings.pgbouncer and self._settings.listen_conninfo is None:
            if not self._polling_logged:
                self._polling_logged = True
                log.info(
                    "PostgreSQL %s: behind PgBouncer without listen_url: polling for new "
                    "work instead of LISTEN",
                    self.url_for_logs,
                )
            return
        res = self._resources()
        replaced = None
        if done and not res.listen_done:
            res.listen_done = True
            if res.listener is not None and not res.listener.done():
                replaced = res.listener
                res.retired.add(replaced)
                replaced.add_done_callback(res.retired.discard)
                res.listener = None
        if res.listener is None or res.listener.done():
            res.listener = asyncio.create_task(
                self._listen(res, replaced), name=f"taskflare-listen-{self.schema}"
            )

    async def _listen(
        self, res: _LoopResources, replaced: asyncio.Task[None] | None = None
    ) -> None:
        """Hold a LISTEN connection for this loop, reconnecting with backoff when it breaks;
        `replaced`: the listener this one takes over from once it listens."""
        delay = 0.1
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._settings.listen_conninfo or self._settings.conninfo, autocommit=True
                )
            except psycopg.OperationalError as exc:
                if not lost:
                    log.warning("%s", self.unavailable(exc, "listen for new work"))
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LISTEN_MAX_BACKOFF)
                continue
            # Whether the listener replaced was connected (then it heard all but job ends).
            handover = replaced is not None and res.listen_conn is not None
            res.listen_conn = conn
            try:
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    if res.listen_done:
                        await conn.execute(f'LISTEN "{self.done_channel}"')
                    if lost:
                        log.warning(
                            "PostgreSQL %s: listening for new work again", self.url_for_logs
                        )
                    lost = False
                    delay = 0.1
                    if replaced is not None:
                        replaced.cancel()
                        replaced = None
                    if handover:
                        handover = False
                        self._signal.raise_topics((DONE_TOPIC,))
                    else:
                        # Anything may have changed while nobody was listening.
                        self._signal.raise_all()
                    async for notice in conn.notifies():
                        self._signal.raise_topics((notice.payload,))
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("%s; reconnecting", self.unavailable(exc, "listen for new work"))
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LISTEN_MAX_BACKOFF)
            finally:
                if res.listen_conn is conn:
                    res.listen_conn = None


def job_params(message: NewMessage | None) -> dict[str, Any]:
    """The parameters of a one-job insert (all NULL without a job: a skipped cron tick)."""
    if message is None:
        keys = "id queue body content_type priority delay type max_attempts"
        names = [*keys.split(), "idempotency_key", "correlation_id", "batch_id", "flow_keys"]
        return dict.fromkeys(names)
    return {
        "id": message.id,
        "queue": message.queue,
        "body": message.body,
        "content_type": message.content_type,
        "priority": message.priority,
        "delay": float(message.delay_seconds),
        "type": message.type,
        "max_attempts": message.max_attempts,
        "idempotency_key": message.idempotency_key,
        "correlation_id": message.correlation_id,
        "batch_id": message.batch_id,
        "flow_keys": None if message.flow_keys is None else list(message.flow_keys),
        "trace_context": message.trace_context,
    }


# What every message of a uniform batch shares (see `message_enqueue_uniform`).
_SHARED = operator.attrgetter(
    "queue",
    "content_type",
    "priority",
    "delay_seconds",
    "type",
    "max_attempts",
    "idempotency_key",
    "correlation_id",
    "batch_id",
    "trace_context",
)


def _flow_literals(messages: Sequence[NewMessage]) -> list[str | None]:
    """Each message's limit buckets as a JSON array (None: no limits)."""
    flows = [m.flow_keys for m in messages]
    if flows.count(None) == len(flows):
        return flows  # type: ignore[return-value]  # every one None
    return [None if f is None else orjson.dumps(f).decode() for f in flows]


def _uniform_args(messages: Sequence[NewMessage], flush_later: bool) -> dict[str, Any] | None:
    """The parameters of `message_enqueue_uniform` when every message shares what
    `_SHARED` names, else None."""
    every = list(map(_SHARED, messages))  # compared in C, no Python frame a message
    if every.count(every[0]) != len(every):
        return None
    first = messages[0]
    return {
        "queue": first.queue,
        "content_type": first.content_type,
        "priority": first.priority,
        "delay": float(first.delay_seconds),
        "type": first.type,
        "max_attempts": first.max_attempts,
        "idempotency_key": first.idempotency_key,
        "correlation_id": first.correlation_id,
        "batch_id": first.batch_id,
        "trace_context": first.trace_context,
        "ids": [m.id for m in messages],
        "bodies": [m.body for m in messages],
        "flow_keys": _flow_literals(messages),
        "flush_later": flush_later,
    }


def _enqueue_many_args(
    messages: Sequence[NewMessage], flush_later: bool = False
) -> tuple[str, dict[str, Any]]:
    """`message_enqueue_many` (or its traced twin) and its parameters, a column each."""
    args: dict[str, Any] = {
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
        "flow_keys": _flow_literals(messages),
        "flush_later": flush_later,
    }
    if any(m.trace_context is not None for m in messages):
        args["trace_contexts"] = [m.trace_context for m in messages]
        return "message_enqueue_many_traced", args
    return "message_enqueue_many", args


def traced(statement: str, traced: bool) -> str:
    """`statement`, or its `_traced` variant that also writes the trace context column."""
    return f"{statement}_traced" if traced else statement


def _settle_statement(settlement: Settlement) -> str:
    """The smallest statement that applies `settlement`: the two common cases (a message
    batch all acked; jobs completed) have statements of their own, cheaper to send and to
    plan than the full one."""
    s = settlement
    if s.acks and not (s.retries or s.fails or s.completes or s.cancels or s.attempts):
        return "settle_acks"
    if s.completes and not (s.acks or s.retries or s.fails or s.cancels):
        return "settle_completes"
    return "message_settle_many"


def _settle_params(settlement: Settlement) -> dict[str, Any]:
    acks, retries, fails = settlement.acks, settlement.retries, settlement.fails
    completes, cancels, attempts = settlement.completes, settlement.cancels, settlement.attempts
    return {
        "ack_ids": [a.id for a in acks],
        "ack_leases": [a.lease_id for a in acks],
        "retry_ids": [r.id for r in retries],
        "retry_leases": [r.lease_id for r in retries],
        "retry_delays": [float(r.delay_seconds) for r in retries],
        "retry_errors": [r.error for r in retries],
        "retry_expired": [r.require_expired for r in retries],
        "retry_refunds": [r.refund for r in retries],
        "fail_ids": [f.id for f in fails],
        "fail_leases": [f.lease_id for f in fails],
        "fail_errors": [f.error for f in fails],
        "fail_expired": [f.require_expired for f in fails],
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
    }


class PostgresBackend(SqlStore):
    """Backend over one schema of a PostgreSQL database.

    `pool_timeout` [s]: how long a call waits for a pooled connection (so how soon it
    fails while the server is down); the first call of each event loop waits as long as
    a connection may take (the URL's `connect_timeout`, 30 s by default) if longer.
    """

    # An insert blocks no reader, claimer or other writer (MVCC), so a call of up to
    # 5 000 jobs is one statement and one round trip (docs/decisions.md, "Bulk enqueue").
    enqueue_chunk = 5000

    def __init__(self, url: str, *, auto_migrate: bool = True, pool_timeout: float = 5.0) -> None:
        self._changes = ChangeSignal()
        settings = parse_postgres_url(url)
        self._db = PostgresExecutor(settings, url, self._changes, pool_timeout=pool_timeout)
        self._db.auto_migrate = auto_migrate
        super().__init__(self._db)
        self.url_for_logs = self._db.url_for_logs
        self.schema = settings.schema
        self.channel = self._db.channel
        self._native = {
            n: native(self._db.sql[n])
            for n in (
                "flow_lock",
                "message_claim_limited",
                "message_claim_limited_fast",
                "job_enqueue_plain",
                "job_enqueue_plain_traced",
            )
        }

    @property
    def statements_run(self) -> int:
        """Statements executed so far (for tests that count round trips)."""
        return self._db.statements_run

    async def migrate(self) -> list[int]:
        """Apply pending migrations."""
        return await self._db.migrate()

    async def refresh_statistics(self) -> bool:
        """ANALYZE the message table when its planner statistics are far behind (see
        `statistics_stale` in queries.sql), one worker at a time; True if this call did.

        Raises `BackendUnavailable` when the database cannot be reached (or refuses, e.g.
        a role that does not own the table)."""

        async def run(conn: Conn) -> bool:
            if not (await self._db.on(conn, "statistics_stale", {"min_rows": 1000})).scalar():
                return False
            async with conn.transaction():
                if not (await self._db.on(conn, "statistics_lock", {})).scalar():
                    return False
                await conn.execute(self._db.sql["statistics_refresh"], prepare=False)
            return True

        return bool(await self._db.run(run, "refresh planner statistics"))

    async def close(self) -> None:
        """Close every pool and listener; safe to call twice."""
        await self._db.close()

    # -- notifier -----------------------------------------------------------------------

    def change_seq(self, topic: str) -> int:
        """Moves on every NOTIFY of `topic` from any process, this one included."""
        return self._changes.seq(topic)

    async def wait_for_change(self, topic: str, since: int, timeout: float) -> bool:
        """Sleep until a NOTIFY of `topic` arrives, or `timeout` passes."""
        self._db.ensure_listening(done=topic == DONE_TOPIC)
        return await self._changes.wait(topic, since, timeout)

    # -- messages -----------------------------------------------------------------------

    async def message_enqueue_many(self, params: EnqueueParams) -> None:
        """Insert a batch in one statement (and NOTIFY in the same transaction).

        A batch whose messages share everything but id, body and limit buckets (every
        `enqueue_many` chunk, most `send_batch` calls) goes as `message_enqueue_uniform`:
        the shared values as scalars, a plain INSERT. When that meets an id already
        stored (the same messages stored again), on a retry of it (a pooled connection
        lost mid-statement, when the first try may have committed) and for any other
        batch, `message_enqueue_many` runs instead: its ON CONFLICT makes storing a
        message again a no-op, as before.

        With `connection` (a psycopg `AsyncConnection`), the insert runs on it, inside
        the caller's transaction: the messages exist if and only if that commits.
        """
        messages = params.messages
        if not messages:
            return
        # Never on a caller's connection: the setting would hold for their transaction.
        flush_later = not params.durable and params.connection is None
        uniform = _uniform_args(messages, flush_later)
        traced = messages[0].trace_context is not None
        if uniform is None or params.connection is not None:
            statement, args = _enqueue_many_args(messages, flush_later)
            if params.connection is not None:
                await self._db.on_callers_connection(
                    params.connection, lambda cur: self._db.on(cur, statement, args)
                )
            else:
                await self._db.fetch(statement, args)
            return
        tries = 0

        async def run(conn: Conn) -> None:
            nonlocal tries
            tries += 1
            if tries == 1:
                name = "message_enqueue_uniform_traced" if traced else "message_enqueue_uniform"
                try:
                    await self._db.on(conn, name, uniform)
                    return
                except pg_errors.UniqueViolation:
                    pass  # an id stored before (a repeated store): the rest, as ever
            await self._db.on(conn, *_enqueue_many_args(messages, flush_later))

        await self._db.run(run, "message_enqueue_uniform")

    async def message_claim_many(self, params: ClaimParams) -> ClaimResult:
        """Lease one batch in a single UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING
        (a queue with limits: `message_claim_limited` after the queue's flow lock)."""
        if params.limits:
            return await self._claim_limited(params)
        args = {
            "queue": params.queue,
            "limit": params.limit,
            "lease_id": params.lease_id,
            "owner": params.owner,
            "visibility_timeout": float(params.visibility_timeout),
            "min_count": params.min_count,
            "max_wait": float(params.max_wait),
            "types": None if params.types is None else list(params.types),
            "channel": self._db.channel,
        }
        values = adapt_arrays(args)
        if not params.describe_empty and (params.min_count <= 1 or params.max_wait <= 0):
            # Work is expected, and whatever is ready is taken (no batch to fill): the
            # claim alone (planned in about half the time), on its generic plan: on the
            # claim connection, the statement by itself (`on_claim_connection`); when that
            # is busy, on a pooled connection after claim_expected_settings. Behind
            # PgBouncer nothing is prepared to reuse.
            found = await self._db.on_claim_connection("message_claim_expected", values)
            if found is None:
                settings = "claim_settings" if self._db.pgbouncer else "claim_expected_settings"
                found = await self._claim("message_claim_expected", values, settings)
            claimed = found.into(ClaimedMessage)
            delivery_order(claimed)
            return ClaimResult(claimed)
        rows = await self._claim("message_claim_many", values)
        if rows.rows and rows.rows[0][0] is None:  # nothing claimed: the row describes the queue
            ready = Rows(rows.columns[12:], [rows.rows[0][12:]]).first(ReadyInfo)
            return ClaimResult([], ready)
        claimed = Rows(rows.columns[:12], [r[:12] for r in rows.rows]).into(ClaimedMessage)
        delivery_order(claimed)
        return ClaimResult(claimed)

    async def queue_ready_info(self, params: ReadyInfoParams) -> ReadyInfo:
        """What the queue holds; in a worker, on its claim connection when that is free:
        there it is planned once (a generic plan), where planning it for each call was
        most of the database's work for an idle worker's pickup."""
        values = {"queue": params.queue, "limit": params.limit, "types": params.types}
        rows = await self._db.on_claim_connection(
            "queue_ready_info", adapt_arrays(values), open_connection=False
        )
        if rows is None:
            return await super().queue_ready_info(params)
        info = rows.first(ReadyInfo)
        assert info is not None
        return info

    async def _claim(
        self, name: str, values: Mapping[str, Any], settings_name: str = "claim_settings"
    ) -> Rows:
        """Claim statement `name` in a transaction of its own after `claim_settings` (no
        WAL flush wait, no sort of the ready rows; or `claim_expected_settings`, which
        also plans it once a connection): BEGIN, both statements and COMMIT go out
        together, one round trip, and the settings end with the transaction."""
        settings = self._db.sql[settings_name]
        claim = self._db.sql[name]
        prepare = self._db.prepare

        async def run(conn: Conn) -> Rows:
            self._db.statements_run += 1  # one round trip
            cur = conn.cursor()
            try:
                async with conn.pipeline():
                    await conn.execute("BEGIN", prepare=False)
                    await conn.execute(settings, prepare=prepare)
                    await cur.execute(claim, values, prepare=prepare)
                    await conn.execute("COMMIT", prepare=False)
            except BaseException:
                if not conn.closed and conn.info.transaction_status in _OPEN:
                    await conn.rollback()
                raise
            return await _rows(cur)

        return await self._db.run(run, name)

    async def _claim_limited(self, params: ClaimParams) -> ClaimResult:
        """The queue's flow lock, then the claim, pipelined in one transaction (the claim
        waits for the lock and then sees every earlier claim's leases and tokens).

        A claim that expects work (`describe_empty` False: the worker's claims while a
        queue drains) and whose limits all allow at least a claim's worth is first
        `message_claim_limited_fast`: the plain claim and its spent tokens, while no
        limit is near. When that takes nothing because a limit is near, and for every
        other claim, the claim is `message_claim_limited`; when nothing was ready, the
        result is empty, as an empty plain claim's."""
        limit = params.limit
        small = any(
            (math.floor(lim.burst) if lim.is_rate else lim.amount) < limit for lim in params.limits
        )
        concurrency = [lim.amount for lim in params.limits if not lim.is_rate]
        cap = min(concurrency) - limit if concurrency else None
        args = {
            "queue": params.queue,
            "limit": limit,
            "scan": flow_scan(limit),
            "lease_id": params.lease_id,
            "owner": params.owner,
            "visibility_timeout": float(params.visibility_timeout),
            "types": None if params.types is None else list(params.types),
            "concurrency_poll": CONCURRENCY_POLL,
            "channel": self._db.channel,
            # The queue's running jobs above which a concurrency limit may be near.
            "running_cap": cap,
            "running_rows": None if cap is None else math.floor(cap) + 1,
            **limit_arrays(params.limits),
        }
        values = adapt_arrays(args)
        if not small and not params.describe_empty:
            rows = await self._claim_under_lock("message_claim_limited_fast", values, params)
            if rows.rows and rows.rows[0][0] is not None:
                claimed = Rows(rows.columns[:13], [r[:13] for r in rows.rows]).into(ClaimedMessage)
                delivery_order(claimed)
                return ClaimResult(claimed)
            if rows.rows and not rows.rows[0][13]:
                # Nothing ready (no limit near): as an empty plain claim, the caller asks
                # queue_ready_info; the full claim would have found nothing either.
                return ClaimResult([])
        rows = await self._claim_under_lock("message_claim_limited", values, params)
        if rows.rows and rows.rows[0][0] is None:
            ready = Rows(rows.columns[13:], [rows.rows[0][13:]]).first(ReadyInfo)
            return ClaimResult([], ready)
        claimed = Rows(rows.columns[:13], [r[:13] for r in rows.rows]).into(ClaimedMessage)
        delivery_order(claimed)
        return ClaimResult(claimed)

    async def _claim_under_lock(
        self, statement: str, values: Mapping[str, Any], params: ClaimParams
    ) -> Rows:
        """`flow_lock` and the claim `statement`, sent together: one round trip, one
        transaction. No BEGIN and COMMIT: statements pipelined up to one Sync message
        run in one implicit transaction (PostgreSQL's extended query protocol), which
        commits at the Sync; each statement still takes its own snapshot, so the claim
        sees what committed while it waited for the lock. The explicit pair cost the
        worker about as much CPU as the lock and the claim together. A failed try on the
        claim connection did not commit (its implicit transaction ends at the Sync):
        it is made again on a pooled connection."""
        lock_sql, lock_names = self._native["flow_lock"]
        claim_sql, claim_names = self._native[statement]

        async def run(conn: Conn) -> Rows:
            cur: psycopg.AsyncRawCursor[Any] = psycopg.AsyncRawCursor(conn)
            try:
                async with conn.pipeline():
                    await cur.execute(lock_sql, [values[n] for n in lock_names])
                    await cur.execute(claim_sql, [values[n] for n in claim_names])
            except BaseException:
                if not conn.closed and conn.info.transaction_status in _OPEN:
                    await conn.rollback()
                raise
            return await _rows(cur)

        # On the claim connection when it is free (see `on_claim_connection`): no pool checkout,
        # and the claims' large plans are made on that one session, not on each pooled
        # connection a claim happens to get.
        found = await self._db.run_on_claim_connection(run, 2)
        if found is not None:
            return found

        async def pooled(conn: Conn) -> Rows:
            self._db.statements_run += 2
            return await run(conn)

        return await self._db.run(pooled, f"claim from queue {params.queue!r}")

    async def message_settle_many(self, settlement: Settlement) -> SettleResult:
        """Apply every outcome (dead-lettering, job results, attempt rows) in one statement."""
        if not settlement:
            return SettleResult()
        rows = await self._db.fetch(_settle_statement(settlement), _settle_params(settlement))
        return SettleResult({str(i): str(s) for i, s, _ in rows.rows if i is not None})

    # -- jobs ---------------------------------------------------------------------------

    async def job_batch_create(self, params: JobBatchCreateParams) -> None:
        """Record a new batch of jobs; with `connection`, inside the caller's transaction."""
        if params.connection is None:
            await super().job_batch_create(params)
            return
        args = {"id": params.id, "type": params.type, "total": params.total}
        await self._db.on_callers_connection(
            params.connection, lambda cur: self._db.on(cur, "job_batch_create", args)
        )

    async def job_enqueue(self, params: JobEnqueueParams) -> EnqueueResult:
        """Insert one job (and NOTIFY) in one statement; an unexpired job holding the same
        (type, key) wins. With `connection`, inside the caller's transaction."""
        message = params.message
        if message.idempotency_key is None and params.connection is None:
            return await self._enqueue_plain(message)
        args = {
            **job_params(message),
            "ttl": float(params.idempotency_ttl),
            "stale_holder": None,
            "key_scope": params.key_scope or message.type,
            "guard_states": list(params.guard_states),
        }
        if params.connection is None:

            async def run(conn: Conn) -> EnqueueResult:
                return await self._enqueue_job(message, args, lambda n, a: self._db.on(conn, n, a))

            return await self._db.run(run, f"enqueue a {message.type!r} job")

        async def on_cursor(cur: psycopg.AsyncCursor[Any]) -> EnqueueResult:
            return await self._enqueue_job(message, args, lambda n, a: self._db.on(cur, n, a))

        return await self._db.on_callers_connection(params.connection, on_cursor)

    async def _enqueue_plain(self, message: NewMessage) -> EnqueueResult:
        """A job without an idempotency key, on a pooled connection: `job_enqueue_plain`
        with positional parameters straight from the message. The named form built
        three dicts, an unused array literal and a result set per enqueue, and psycopg
        matched the names to the placeholders on every call."""
        sql, names = self._native[traced("job_enqueue_plain", message.trace_context is not None)]
        flow_keys = message.flow_keys
        values = {
            **job_params(message),
            "flow_keys": None if flow_keys is None else array_literal(flow_keys),
            "channel": self.channel,
        }
        args = [values[name] for name in names]

        async def run(conn: Conn) -> None:
            # A repeat of the same id stores nothing: not stored, as with the named form.
            self._db.statements_run += 1
            await psycopg.AsyncRawCursor(conn).execute(sql, args)

        await self._db.run(run, f"enqueue a {message.type!r} job")
        return EnqueueResult(message.id, duplicate=False)

    async def _enqueue_job(
        self,
        message: NewMessage,
        args: dict[str, Any],
        run: Callable[[str, dict[str, Any]], Awaitable[Rows]],
    ) -> EnqueueResult:
        if message.idempotency_key is None:
            # Without a key there is nothing to take: a plain insert, planned in a third of
            # the time of the statement below. Not stored: a repeat of this enqueue was.
            await run(traced("job_enqueue_plain", message.trace_context is not None), args)
            return EnqueueResult(message.id, duplicate=False)
        statement = traced("job_enqueue", message.trace_context is not None)
        for _ in range(_IDEMPOTENCY_ROUNDS):
            stored = (await run(statement, args)).scalar()
            if stored or message.idempotency_key is None:
                # Not stored without a key: the id exists, from a repeat of this enqueue.
                return EnqueueResult(message.id, duplicate=False)
            holder = (await run("idempotency_holder", args)).dicts()
            if not holder:  # the key expired and was pruned meanwhile: claim again
                continue
            job_id, job_exists = holder[0]["job_id"], holder[0]["job_exists"]
            if job_id == message.id:  # a repeat of this enqueue had already won
                return EnqueueResult(message.id, duplicate=False)
            if job_exists:
                return EnqueueResult(str(job_id), duplicate=True)
            args["stale_holder"] = job_id  # its job is gone (purged): take the key over
        raise BackendUnavailable(
            f"idempotency key {message.idempotency_key!r} of type {message.type!r} kept "
            f"changing hands; gave up after {_IDEMPOTENCY_ROUNDS} rounds"
        )

    async def job_cancel(self, params: JobIdParams) -> JobCancelResult:
        """Cancel a pending job now, or request it for a running one, in one statement."""
        found = (await self._db.fetch("job_cancel", {"id": params.id})).dicts()
        if not found:
            return JobCancelResult(Cancel.MISSING)
        row = found[0]
        if row["cancelled"]:
            return JobCancelResult(Cancel.CANCELLED)
        if row["requested"]:
            return JobCancelResult(Cancel.REQUESTED)
        return JobCancelResult(Cancel.FINISHED, str(row["state"]))

    async def job_retry(self, params: JobIdParams) -> JobRetryResult:
        """Back to pending with a fresh attempt budget (and NOTIFY), if failed or cancelled."""
        outcome = (await self._db.fetch("job_retry", {"id": params.id})).scalar()
        if outcome is None:
            return JobRetryResult(RetryResult.MISSING)
        if outcome == "retried":
            return JobRetryResult(RetryResult.RETRIED)
        if str(outcome).startswith("held:"):
            return JobRetryResult(RetryResult.KEY_HELD, None, str(outcome)[len("held:") :])
        return JobRetryResult(RetryResult.WRONG_STATE, str(outcome))

    async def job_prune(self, params: PruneParams) -> int:
        """Delete up to `limit` finished rows past retention, their history, expired keys."""
        args = {
            "completed_before": params.completed_before,
            "failed_before": params.failed_before,
            "limit": params.limit,
        }
        return int((await self._db.fetch("job_prune", args)).scalar())

    # -- documents ----------------------------------------------------------------------

    async def doc_insert(self, params: DocInsertParams) -> bool:
        """Insert if absent; with a limit, under a per-namespace transaction lock, so two
        inserts cannot both see the namespace one short of full (READ COMMITTED would let
        them)."""
        args = insert_args(params)
        if params.max_count is None:
            return bool((await self._db.fetch("doc_insert", args)).rows)

        async def run(conn: Conn) -> bool:
            async with conn.transaction():
                await self._db.on(conn, "doc_lock_namespace", args)
                return bool((await self._db.on(conn, "doc_insert", args)).rows)

        return await self._db.run(run, "insert a document")

    # -- cron and dead letters ----------------------------------------------------------

    async def cron_tick_record(self, params: CronTickRecordParams) -> bool:
        """Insert the tick row and, when it is new, its job (and NOTIFY), in one statement."""
        tick = params.tick
        args = {
            **job_params(params.job),
            "name": tick.name,
            "tick": float(tick.tick),
            "status": tick.status,
        }
        return bool((await self._db.fetch("cron_tick_record", args)).scalar())

    async def dead_letter_reprocess(self, params: DeadLetterReprocessParams) -> int:
        """Jobs back as themselves, plain messages moved back, in one statement (NOTIFY)."""
        args = {
            "dlq": params.dead_letter_queue,
            "ids": None if params.ids is None else list(params.ids),
            "origin": params.origin_queue,
        }
        return int((await self._db.fetch("dead_letter_reprocess", args)).scalar())


# Exposed for tests that look at the settle statement.
_ = time
