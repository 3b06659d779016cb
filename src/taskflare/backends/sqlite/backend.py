"""The embedded backend: one SQLite file in WAL mode, shared safely by several processes.

All statements of a process run on one dedicated thread that owns the connection, so
the event loop never blocks on a busy database and the `App` works from any loop or
thread. Writers take the lock up front (`BEGIN IMMEDIATE`) so SQLite's busy handler can
queue them instead of failing with "database is locked"; on top of the busy timeout a
write is retried with backoff for up to `lock_wait` seconds.

Only the operations that need several statements in one transaction are written here;
the rest is `SqlStore`, shared with PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import pathname2url

import orjson

from ...errors import (
    BackendUnavailable,
    DatabaseNotFound,
    SchemaOutdated,
    SchemaTooNew,
    StorageRejected,
)
from ..base import (
    ACKED,
    CANCEL_TOPIC,
    ClaimedMessage,
    ClaimParams,
    ClaimResult,
    CronTickRecordParams,
    DeadLetterReprocessParams,
    EnqueueParams,
    EnqueueResult,
    JobBatchCreateParams,
    JobCancelResult,
    JobDeleteParams,
    JobEnqueueParams,
    JobIdParams,
    JobRetryResult,
    LeaseRef,
    NewMessage,
    PruneParams,
    ReadyInfo,
    RetryResult,
    Settlement,
    SettleResult,
    State,
)
from ..base import CancelResult as Cancel
from ..changes import ChangeSignal
from ..rows import Rows
from ..sqlfile import missing_versions
from ..store import (
    CONCURRENCY_POLL,
    SqlStore,
    claimable,
    delivery_order,
    flow_scan,
    not_transactional,
)
from .commitwatch import CommitWatch
from .fileevents import FileEvents, announce_commit
from .sql import LATEST_VERSION, MIGRATIONS, SQL
from .statementthread import StatementThread
from .walwatch import WalIndexWatch

log = logging.getLogger("taskflare.sqlite")

# How long the watch of other processes' writes outlives its last waiter [s].
WATCH_LINGER = 1.0

T = TypeVar("T")

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass(frozen=True, slots=True)
class _Statement:
    text: str
    params: frozenset[str]
    writes: bool


def _compile(queries: Mapping[str, str]) -> dict[str, _Statement]:
    compiled = {}
    for name, text in queries.items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        compiled[name] = _Statement(
            text, frozenset(_PARAM.findall(code)), bool(_WRITES.search(code))
        )
    return compiled


_STATEMENTS = _compile(SQL)


def _adapt(statement: _Statement, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The statement's parameters as sqlite3 takes them: sequences as JSON, :now filled."""
    args: dict[str, Any] = {}
    for name in statement.params:
        if name == "now" and name not in params:
            args[name] = now
            continue
        value = params[name]
        if isinstance(value, (list, tuple)):
            value = orjson.dumps(value).decode()
        args[name] = value
    return args


def _rows(cursor: sqlite3.Cursor) -> Rows:
    rows = cursor.fetchall()
    columns = tuple(d[0] for d in cursor.description or ())
    return Rows(columns, rows, cursor.rowcount)


class Transaction:
    """The statements of one `BEGIN IMMEDIATE ... COMMIT`, run on the connection's thread."""

    def __init__(self, executor: SQLiteExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn
        self.now = time.time()

    def fetch(self, name: str, params: Mapping[str, Any]) -> Rows:
        """Run one statement; return its rows (and rowcount)."""
        statement = _STATEMENTS[name]
        self._executor.statements_run += 1
        return _rows(self._conn.execute(statement.text, _adapt(statement, params, self.now)))

    def savepoint(self) -> None:
        """Open a nested savepoint, to be released or rolled back before the next one."""
        self._conn.execute("SAVEPOINT tf_step")

    def release(self) -> None:
        """Keep what was done since `savepoint`."""
        self._conn.execute("RELEASE tf_step")

    def rollback_to(self) -> None:
        """Undo what was done since `savepoint` (and close it)."""
        self._conn.execute("ROLLBACK TO tf_step")
        self._conn.execute("RELEASE tf_step")

    def execute(self, name: str, params: Mapping[str, Any]) -> int:
        """Run one statement for its effect; its rowcount (no rows are read)."""
        statement = _STATEMENTS[name]
        self._executor.statements_run += 1
        return self._conn.execute(statement.text, _adapt(statement, params, self.now)).rowcount

    def execute_many(self, name: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once per parameter set."""
        statement = _STATEMENTS[name]
        self._executor.statements_run += 1
        self._conn.executemany(statement.text, [_adapt(statement, p, self.now) for p in params])


class SQLiteExecutor:
    """Owns the connection and its thread; runs named statements and transactions."""

    def __init__(
        self,
        path: str,
        signal: ChangeSignal,
        *,
        synchronous: str,
        busy_timeout: float,
        lock_wait: float,
        auto_migrate: bool,
        create: bool = True,
    ) -> None:
        self.path = path
        self._create = create
        self.url_for_logs = f"sqlite:///{path}"
        self.statements_run = 0  # statements executed (transaction control not counted)
        self._signal = signal
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._lock_wait = lock_wait
        self._auto_migrate = auto_migrate
        self._thread = StatementThread("taskflare-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._topics: set[str] = set()  # raised by triggers in the open transaction
        self._data_version: int | None = None
        self._poll_lock = threading.Lock()
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the opened file
        self._file_path = path  # absolute once opened: a later chdir must not matter
        self._away = False  # the file opened is not at its path (logged once)

    # -- running ----------------------------------------------------------------------

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the connection's thread."""
        if self._closed:
            raise BackendUnavailable("the SQLite backend is closed")
        return await self._thread.submit(fn)

    async def fetch(self, name: str, params: Mapping[str, Any], *, durable: bool = True) -> Rows:
        """Run one statement: a read as it is, a write in its own transaction (`durable`:
        see `transaction`)."""
        if _STATEMENTS[name].writes:
            return await self.transaction(lambda tx: tx.fetch(name, params), durable=durable)
        return await self.call(lambda: self._read(name, params))

    async def transaction(self, fn: Callable[[Transaction], T], *, durable: bool = True) -> T:
        """Run `fn` inside BEGIN IMMEDIATE ... COMMIT on the connection's thread.

        `durable=False` commits without waiting for the disk (`synchronous=NORMAL` for this
        transaction only) where losing the transaction to a power cut is harmless: a
        claim lost that way leaves its messages ready, to be delivered again, as on
        PostgreSQL. The next durable commit flushes it along with its own."""
        return await self.call(lambda: self.transaction_here(fn, durable=durable))

    def transaction_here(self, fn: Callable[[Transaction], T], *, durable: bool = True) -> T:
        """`transaction`, from a function already running on the connection's thread
        (given to `call`): several steps in one hop to that thread."""
        if durable or self._synchronous not in _FSYNC_EVERY_COMMIT:
            return self._write(fn)
        return self._write_fast(fn)

    def read_here(self, name: str, params: Mapping[str, Any]) -> Rows:
        """`fetch` of a read statement, from a function already running on the
        connection's thread (given to `call`)."""
        return self._read(name, params)

    def _write_fast(self, fn: Callable[[Transaction], T]) -> T:
        conn = self._connection()
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self._write_on(conn, fn)
        finally:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _read(self, name: str, params: Mapping[str, Any]) -> Rows:
        conn = self._connection()
        statement = _STATEMENTS[name]
        self.statements_run += 1
        return self._with_retry(
            lambda: _rows(conn.execute(statement.text, _adapt(statement, params, time.time())))
        )

    def _write(self, fn: Callable[[Transaction], T]) -> T:
        return self._write_on(self._connection(), fn)

    def _write_on(self, conn: sqlite3.Connection, fn: Callable[[Transaction], T]) -> T:
        def attempt() -> T:
            self._topics.clear()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(Transaction(self, conn))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._topics.clear()
                raise
            topics = set(self._topics)
            self._topics.clear()
            if topics:
                self._signal.raise_topics(topics)
                if self.path != ":memory:" and any(map(_announced, topics)):
                    announce_commit(self.path)
            return result

        return self._with_retry(attempt)

    def _with_retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._lock_wait
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise BackendUnavailable(f"SQLite {self.path!r}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except (
                sqlite3.IntegrityError,
                sqlite3.DataError,
                sqlite3.InterfaceError,
                UnicodeEncodeError,
                OverflowError,
                orjson.JSONEncodeError,  # a list parameter holding text JSON cannot carry
            ) as exc:
                raise StorageRejected(f"SQLite {self.path!r} refused a value: {exc}") from exc
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"SQLite {self.path!r}: {exc}") from exc

    # -- connection and schema ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The open connection, checked to still be on the file at its path: once per
        transaction (and per read outside one), never per statement (see `_check_file`)."""
        if self._conn is not None:
            self._check_file()
            return self._conn
        if self._file_id is not None:  # the file went away once: only the same file will do
            self._check_file()
        conn = self._open()
        self._check_schema(conn)
        self._install_notify(conn)
        self._conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        if not self._create and self.path != ":memory:" and not Path(self.path).is_file():
            raise DatabaseNotFound(f"no SQLite database at {self._where()}; nothing was created")
        try:
            if self.path != ":memory:":
                self._file_path = os.path.abspath(self._file_path)
                Path(self._file_path).parent.mkdir(parents=True, exist_ok=True)
            # Reopening the file that went away and came back: never create one instead.
            target, uri = (
                (f"file:{pathname2url(self._file_path)}?mode=rw", True)
                if self._file_id is not None
                else (self._file_path, False)
            )
            conn = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, timeout=0, uri=uri
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            if self.path != ":memory:":
                self._with_retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # The baseline for noticing other connections' commits: without it the first
            # poll only learned the version, and a commit before it woke no one.
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        if self.path != ":memory:":
            try:
                stat = os.stat(self._file_path)
            except OSError:
                stat = None
            if stat is not None:
                opened = (stat.st_dev, stat.st_ino)
                if self._file_id is not None and opened != self._file_id:
                    conn.close()  # another file took the path as it was reopened
                    raise self._gone(replaced=True)
                self._file_id = opened
        return conn

    def _check_file(self) -> None:
        """Raise `BackendUnavailable` (and close the connection) when the file opened is no
        longer at its path: deleted, or replaced by another file.

        An open connection keeps reading and writing a deleted (or replaced) file: a job
        stored there is lost to every other process, which sees no database or another
        one; and its WAL and shared-memory files, which SQLite finds by path, may by now
        belong to that other database. So the process stays with the file it opened:
        it refuses every read and write while that file is not at its path, and carries
        on if it comes back (moved back); a new file there needs a restart. One `stat`
        (about a microsecond), before each transaction, on the connection's thread (it
        closes the connection).
        """
        if self._file_id is None:
            return
        try:
            stat = os.stat(self._file_path)
        except OSError:
            raise self._gone(replaced=False) from None
        if (stat.st_dev, stat.st_ino) != self._file_id:
            raise self._gone(replaced=True)
        if self._away:
            self._away = False
            log.warning("SQLite %r: the database file is back at its path", self.path)

    def _gone(self, *, replaced: bool) -> BackendUnavailable:
        """The error for a file no longer at its path; the connection to it is closed (no
        checkpoint, and SQLite leaves the `-wal` and `-shm` files alone: it sees the file
        moved), and the first time it is logged."""
        what = "replaced by another file" if replaced else "deleted"
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if not self._away:
            self._away = True
            log.error(
                "SQLite %r: the database file was %s while this process had it open; every "
                "read and write is refused until that file is back at its path (restart "
                "the process to use a new file there)",
                self.path,
                what,
            )
        return BackendUnavailable(
            f"SQLite {self.path!r}: the database file was {what} while open; nothing was "
            "read or written"
        )

    def _install_notify(self, conn: sqlite3.Connection) -> None:
        conn.create_function("tf_notify", 1, self._notify, deterministic=False)
        conn.executescript(SQL["notify_triggers"])

    def _notify(self, topic: str) -> None:
        self._topics.add(topic)

    def _applied_versions(self, conn: sqlite3.Connection) -> list[int]:
        conn.execute(SQL["migrations_table"])
        return [row[0] for row in conn.execute(SQL["migrations_applied"])]

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        def check(tx: Transaction) -> None:
            applied = self._applied_versions(conn)
            if not applied and self._auto_migrate:
                self._apply(conn, applied)
                return
            self._verify(applied)

        try:
            self._write_on(conn, check)
        except BaseException:
            conn.close()
            raise

    def _where(self) -> str:
        """The file as errors name it: the path given, and where a relative one is."""
        if os.path.isabs(self.path) or self.path.startswith("file:"):
            return repr(self.path)
        return f"{self.path!r} ({os.path.abspath(self.path)})"

    def _verify(self, applied: list[int]) -> None:
        current = max(applied, default=0)
        if current == 0 and not self._auto_migrate:  # a file, but no taskflare tables in it
            raise DatabaseNotFound(
                f"no taskflare database in SQLite file {self._where()}; nothing was created"
            )
        if current > LATEST_VERSION:
            raise SchemaTooNew(
                f"database {self.path!r} has schema version {current}, newer than this "
                f"taskflare ({LATEST_VERSION}); upgrade taskflare"
            )
        missing = missing_versions(MIGRATIONS, applied)
        if missing:
            raise SchemaOutdated(
                f"database {self.path!r} has schema version {current}; this taskflare needs "
                f"{LATEST_VERSION} (missing: {', '.join(map(str, missing))}). "
                f"Run: taskflare migrate {self.url_for_logs}"
            )

    def _apply(self, conn: sqlite3.Connection, applied: list[int]) -> list[int]:
        done = []
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            for statement in _split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                SQL["migration_record"],
                {"version": migration.version, "name": migration.name, "now": time.time()},
            )
            done.append(migration.version)
        return done

    async def migrate(self) -> list[int]:
        """Apply every pending migration in one transaction."""

        def run() -> list[int]:
            if self._conn is not None:
                self._check_file()
            if self._conn is None:
                self._conn = self._open()
            conn = self._conn
            done = self._write_on(conn, lambda tx: self._apply(conn, self._applied_versions(conn)))
            self._install_notify(conn)
            return done

        return await self.call(run)

    async def close(self) -> None:
        """Close the connection and stop the statement thread; safe to call twice."""
        if self._closed:
            return

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._thread.submit(shut)
        self._closed = True
        self._thread.stop()

    # -- other processes' writes ----------------------------------------------------------

    def poll_data_version(self) -> bool:
        """Raise every topic when another connection committed since the last look;
        True if one did."""
        version = self._connection().execute("PRAGMA data_version").fetchone()[0]
        with self._poll_lock:
            changed = self._data_version is not None and version != self._data_version
            self._data_version = version
        if changed:
            self._signal.raise_all()
        return changed


def _announced(topic: str) -> bool:
    """Whether a commit raising `topic` is announced to other processes at once (see
    `announce_commit`): new ready work and cancellations, which idle workers wait for. A
    job's end (`done`) is not: a busy worker commits outcomes all the time, and a process
    waiting for a result hears of it from the commit's write a few milliseconds later."""
    return topic.startswith("ready:") or topic == CANCEL_TOPIC


# The synchronous settings that make every WAL commit wait for the disk.
_FSYNC_EVERY_COMMIT = frozenset({"FULL", "EXTRA"})


def _split_statements(script: str) -> list[str]:
    """Split a migration script into statements (our migrations hold no triggers)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def insert_statement(messages: Sequence[NewMessage]) -> str:
    """`message_insert`, or `message_insert_traced` when a message carries a trace context
    (an untraced insert does not name the column)."""
    if any(m.trace_context is not None for m in messages):
        return "message_insert_traced"
    return "message_insert"


def insert_params(message: NewMessage) -> dict[str, Any]:
    """The named parameters of `message_insert(_traced)` for one message."""
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


class SQLiteBackend(SqlStore):
    """Backend over one SQLite database file."""

    # A transaction holds the database's only write lock: 1 000 jobs keep claims and
    # other writers waiting ~0.1 s; 5 000 held it ~0.4-0.5 s (docs/decisions.md).
    enqueue_chunk = 1000

    # Other processes' commits: PRAGMA data_version every poll_interval [s] and whenever
    # the kernel reports a write to the file; where it cannot, the WAL-index header (one
    # pread) every header_interval [s] in between.
    poll_interval = 0.02
    header_interval = 0.004

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        lock_wait: float = 120.0,
        auto_migrate: bool = True,
        create: bool = True,
    ) -> None:
        self._changes = ChangeSignal()
        self._db = SQLiteExecutor(
            path,
            self._changes,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            lock_wait=lock_wait,
            auto_migrate=auto_migrate and create,
            create=create,
        )
        super().__init__(self._db)
        self.path = path
        self.url_for_logs = self._db.url_for_logs
        self._wal_watch = None if path == ":memory:" else WalIndexWatch(path)
        # Queues whose last claim found nothing: they are looked at with a read first, so
        # idle workers woken by other processes' writes do not queue up for the write lock
        # just to find nothing (that kept producers waiting up to ~400 ms).
        self._idle_queues: set[str] = set()
        # The watcher of other processes' commits, one per event loop, and how many wait.
        self._watchers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._watch_waiters = 0

    @property
    def statements_run(self) -> int:
        """Statements executed so far (for tests that count round trips)."""
        return self._db.statements_run

    async def migrate(self) -> list[int]:
        """Apply pending migrations."""
        return await self._db.migrate()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        current = asyncio.get_running_loop()
        for loop, task in list(self._watchers.items()):
            if loop is current:
                task.cancel()
            elif not loop.is_closed():  # a task is cancelled on its own loop's thread
                with contextlib.suppress(RuntimeError):  # it closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)
        if self._wal_watch is not None:
            self._wal_watch.close()
        await self._db.close()

    async def refresh_statistics(self) -> bool:
        """Nothing to do: SQLite's planner picks the claim's partial index from its WHERE
        clause alone, with or without `ANALYZE` statistics."""
        return False

    async def ping(self) -> None:
        """The file is still the one opened (every read checks), and the schema answers."""
        await super().ping()

    # -- notifier -----------------------------------------------------------------------

    def change_seq(self, topic: str) -> int:
        """Moves when this process raises `topic` or another process writes the file."""
        return self._changes.seq(topic)

    async def wait_for_change(self, topic: str, since: int, timeout: float) -> bool:
        """Wake on this process's own writes at once, on other processes' within a few
        milliseconds: one watch per event loop serves every waiter of this backend (see
        `CommitWatch`: told of writes by the kernel where it can, else the WAL-index header
        every `header_interval`; `PRAGMA data_version` decides)."""
        if self._changes.seq(topic) != since:
            return True
        if timeout <= 0:
            return False
        self._watch_waiters += 1
        try:
            self._ensure_watcher()
            return await self._changes.wait(topic, since, timeout)
        finally:
            self._watch_waiters -= 1

    def _ensure_watcher(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._watchers.get(loop)
        if task is None or task.done():
            for other in [other for other in self._watchers if other.is_closed()]:
                self._watchers.pop(other, None)  # a loop that closed with its watch
            self._watchers[loop] = loop.create_task(
                self._watch_other_processes(), name="taskflare-sqlite-watch"
            )

    async def _watch_other_processes(self) -> None:
        """While anyone waits, and `WATCH_LINGER` [s] longer (a busy worker does not start
        a watch per claim): see `CommitWatch`."""
        loop = asyncio.get_running_loop()
        events = None if self.path == ":memory:" else FileEvents.open(self.path)
        watch = CommitWatch(
            events,
            self._wal_watch,
            lambda: self._db.call(self._db.poll_data_version),
            poll_interval=self.poll_interval,
            header_interval=self.header_interval,
            linger=WATCH_LINGER,
        )
        try:
            await watch.run(lambda: self._watch_waiters > 0)
        except Exception as exc:  # closed, or the file went away: waiters time out
            log.debug("cannot look for other processes' writes: %s", exc)
        finally:
            if self._watchers.get(loop) is asyncio.current_task():
                del self._watchers[loop]

    # -- messages -----------------------------------------------------------------------

    async def message_enqueue_many(self, params: EnqueueParams) -> None:
        """Insert a batch of messages in one transaction (SQLite has no `connection=`)."""
        if params.connection is not None:
            raise not_transactional(self.url_for_logs)
        rows = [insert_params(m) for m in params.messages]
        if rows:
            statement = insert_statement(params.messages)
            await self._db.transaction(
                lambda tx: tx.execute_many(statement, rows), durable=params.durable
            )

    async def message_claim_many(self, params: ClaimParams) -> ClaimResult:
        """Lease one batch in one transaction (see `claim_batch`); describe the queue if
        empty (a queue with limits: `message_claim_limited`, see `_claim_limited`)."""
        if params.limits:
            return await self._claim_limited(params)
        info_args = {"queue": params.queue, "limit": params.limit, "types": params.types}
        args = {
            "queue": params.queue,
            "limit": params.limit,
            "lease_id": params.lease_id,
            "owner": params.owner,
            "visibility_timeout": float(params.visibility_timeout),
            "min_count": params.min_count,
            "max_wait": float(params.max_wait),
            "types": params.types,
        }
        idle, db = params.queue in self._idle_queues, self._db

        def run() -> Rows | ReadyInfo:
            # One hop to the connection's thread for every step: an idle queue's look
            # first, the claim, and the description of a queue it took nothing from.
            if idle:
                info = db.read_here("queue_ready_info", info_args).first(ReadyInfo)
                assert info is not None
                if not claimable(info, params.min_count, params.max_wait):
                    return info
            rows = db.transaction_here(lambda tx: claim_batch(tx, args), durable=False)
            if rows.rows:
                return rows
            info = db.read_here("queue_ready_info", info_args).first(ReadyInfo)
            assert info is not None
            return info

        found = await db.call(run)
        if isinstance(found, ReadyInfo):
            self._idle_queues.add(params.queue)
            return ClaimResult([], found)
        self._idle_queues.discard(params.queue)
        claimed = found.into(ClaimedMessage)
        delivery_order(claimed)
        return ClaimResult(claimed)

    async def _claim_limited(self, params: ClaimParams) -> ClaimResult:
        """One transaction (the write lock serializes claims): read the batch (with no
        limit near, as the plain claim reads it: `message_claim_limited_fast`; else, or
        when that read nothing, `message_claim_limited`), lease it, then spend the tokens
        its jobs took, in one statement for the whole batch (or, when it took nothing,
        say when to look again)."""
        limits_json = orjson.dumps(
            [[lim.family, lim.amount, lim.period, lim.burst] for lim in params.limits]
        ).decode()
        rated = any(lim.is_rate for lim in params.limits)
        # A limit allowing fewer jobs than this claim takes, even with none running (a
        # concurrency of 2 per key): the fast read would never read anything.
        small = any(
            (lim.burst if lim.is_rate else lim.amount) < params.limit for lim in params.limits
        )
        args = {
            "queue": params.queue,
            "limit": params.limit,
            "scan": flow_scan(params.limit),
            "lease_id": params.lease_id,
            "owner": params.owner,
            "visibility_timeout": float(params.visibility_timeout),
            "types": params.types,
            "limits": limits_json,
        }

        idle, db = params.queue in self._idle_queues, self._db
        # Each distinct flow_keys text of the claimed rows, read once (jobs of one type
        # without keys all carry the same text).
        keys: dict[str, list[str]] = {}

        def look_and_claim() -> Rows | ReadyInfo | None:
            # One hop to the connection's thread, as for the plain claim. An idle queue
            # is looked at with a read first, so workers woken by other processes' writes
            # do not queue for the write lock when nothing at all is ready (held jobs
            # still need the claim's own look).
            if idle:
                info_args = {"queue": params.queue, "limit": params.limit, "types": params.types}
                info = db.read_here("queue_ready_info", info_args).first(ReadyInfo)
                assert info is not None
                if info.paused or info.oldest_available_at is None:
                    return info
            return db.transaction_here(run, durable=False)

        def run(tx: Transaction) -> Rows | ReadyInfo | None:
            # The write lock is held: SQL and counting only; the rows become messages after.
            rows = None if small else tx.fetch("message_claim_limited_fast", args)
            if not rows:
                rows = tx.fetch("message_claim_limited", args)
            if not rows:
                return tx.fetch(
                    "flow_ready_info",
                    {
                        "queue": params.queue,
                        "types": params.types,
                        "limits": limits_json,
                        "concurrency_poll": CONCURRENCY_POLL,
                    },
                ).first(ReadyInfo)
            at = rows.columns.index("id")
            ids = [r[at] for r in rows.rows]
            leased = tx.fetch("message_claim_lease", {**args, "ids": ids}).rowcount
            if leased != len(ids):  # cannot happen: the write lock is held since the read
                raise BackendUnavailable(f"a claim leased {leased} of the {len(ids)} jobs it read")
            at = rows.columns.index("flow_keys")
            texts = Counter(r[at] for r in rows.rows)
            keys.update((t, orjson.loads(t)) for t in texts if t)
            if rated:
                spent = rate_spent(texts, keys)
                if spent:
                    tx.fetch("flow_spend", {"spent": spent, "limits": limits_json})
            return rows

        outcome = await db.call(look_and_claim)
        if not isinstance(outcome, Rows):
            self._idle_queues.add(params.queue)
            return ClaimResult([], outcome)
        self._idle_queues.discard(params.queue)
        claimed = outcome.into(ClaimedMessage)
        for message in claimed:
            raw: Any = message.flow_keys  # JSON text as stored
            message.flow_keys = list(keys[raw]) if raw else []
        delivery_order(claimed)
        return ClaimResult(claimed)

    async def message_settle_many(self, settlement: Settlement) -> SettleResult:
        """Apply acks, retries, failures (dead-lettering), completions, cancellations and
        the attempt rows of the outcomes that applied, in one transaction."""
        s = settlement

        def run(tx: Transaction) -> SettleResult:
            states: dict[str, str] = {}
            if s.acks:
                states.update(dict.fromkeys(settle_acks(tx, s.acks), ACKED))
            if s.retries:
                retries = [
                    [r.id, r.lease_id, r.delay_seconds, r.error, r.require_expired, r.refund]
                    for r in s.retries
                ]
                states.update(tx.fetch("settle_retry", {"retries": retries}).pairs())
            if s.fails:
                fails = [[f.id, f.lease_id, f.error, f.require_expired] for f in s.fails]
                failed = dict(tx.fetch("settle_fail", {"fails": fails}).pairs())
                states.update(failed)
                letters = [
                    [f.id, f.dlq_message_id, f.dead_letter_queue]
                    for f in s.fails
                    if f.dead_letter_queue and f.dlq_message_id and failed.get(f.id) == "failed"
                ]
                if letters:
                    tx.fetch("settle_dead_letter", {"dead_letters": letters})
            if s.completes:
                completes = [
                    [c.id, c.lease_id, (c.result or b"null").decode()] for c in s.completes
                ]
                states.update(tx.fetch("settle_complete", {"completes": completes}).pairs())
            if s.cancels:
                cancels = [[c.id, c.lease_id, c.reason] for c in s.cancels]
                states.update(tx.fetch("settle_cancel", {"cancels": cancels}).pairs())
            attempts = [
                {
                    "job_id": a.job_id,
                    "attempt": a.attempt,
                    "worker_id": a.worker_id,
                    "started_at": a.started_at,
                    "finished_at": a.finished_at,
                    "outcome": attempt_outcome(a.outcome, states[a.job_id]),
                    "error": a.error,
                    "traceback": a.traceback,
                }
                for a in s.attempts
                if a.job_id in states
            ]
            if attempts:
                tx.execute_many("attempt_insert", attempts)
            return SettleResult(states)

        if not s:
            return SettleResult()
        return await self._db.transaction(run)

    # -- jobs ---------------------------------------------------------------------------

    async def job_batch_create(self, params: JobBatchCreateParams) -> None:
        """Record a new batch of jobs (SQLite has no `connection=`)."""
        if params.connection is not None:
            raise not_transactional(self.url_for_logs)
        await super().job_batch_create(params)

    async def job_enqueue(self, params: JobEnqueueParams) -> EnqueueResult:
        """Insert one job; an unexpired job holding the same (type, key) wins instead."""
        if params.connection is not None:
            raise not_transactional(self.url_for_logs)
        message = params.message

        def run(tx: Transaction) -> EnqueueResult:
            if message.idempotency_key is not None:
                key = {"type": params.key_scope or message.type, "key": message.idempotency_key}
                tx.fetch(
                    "idempotency_claim",
                    {
                        **key,
                        "job_id": message.id,
                        "ttl": float(params.idempotency_ttl),
                        "guard_states": list(params.guard_states),
                    },
                )
                holder = tx.fetch("idempotency_holder", key).scalar()
                if holder != message.id:
                    return EnqueueResult(str(holder), duplicate=True)
            tx.execute(insert_statement([message]), insert_params(message))
            return EnqueueResult(message.id, duplicate=False)

        return await self._db.transaction(run)

    async def job_cancel(self, params: JobIdParams) -> JobCancelResult:
        """Cancel a pending job now, or request it for a running one, in one transaction."""
        args = {"id": params.id}

        def run(tx: Transaction) -> JobCancelResult:
            if tx.fetch("job_cancel_pending", args).rowcount:
                return JobCancelResult(Cancel.CANCELLED)
            if tx.fetch("job_cancel_request", args).rowcount:
                return JobCancelResult(Cancel.REQUESTED)
            state = tx.fetch("job_state", args).scalar()
            if state is None:
                return JobCancelResult(Cancel.MISSING)
            return JobCancelResult(Cancel.FINISHED, str(state))

        return await self._db.transaction(run)

    async def job_retry(self, params: JobIdParams) -> JobRetryResult:
        """Back to pending with a fresh attempt budget, if failed or cancelled."""
        args = {"id": params.id}

        def run(tx: Transaction) -> JobRetryResult:
            holder = tx.fetch("job_key_holder", args).scalar()
            if holder is None and tx.fetch("job_retry", args).rowcount:
                tx.fetch("job_rekey", args)
                return JobRetryResult(RetryResult.RETRIED)
            state = tx.fetch("job_state", args).scalar()
            if holder is not None and state in (State.FAILED, State.CANCELLED):
                return JobRetryResult(RetryResult.KEY_HELD, str(state), str(holder))
            if state is None:
                return JobRetryResult(RetryResult.MISSING)
            return JobRetryResult(RetryResult.WRONG_STATE, str(state))

        return await self._db.transaction(run)

    async def job_delete_many(self, params: JobDeleteParams) -> int:
        """Delete jobs, their history and the idempotency keys naming them, in one
        transaction."""
        if not params.ids:
            return 0
        args = {"ids": list(params.ids)}

        def run(tx: Transaction) -> int:
            deleted = [row[0] for row in tx.fetch("job_delete_many", args).rows]
            if deleted:
                tx.fetch("job_delete_attempts", {"ids": deleted})
                tx.fetch("job_delete_keys", {"ids": deleted})
            return len(deleted)

        return await self._db.transaction(run)

    async def job_prune(self, params: PruneParams) -> int:
        """Delete up to `limit` finished rows past retention, their history, expired keys."""
        args = {
            "completed_before": params.completed_before,
            "failed_before": params.failed_before,
            "limit": params.limit,
        }

        def run(tx: Transaction) -> int:
            ids = [row[0] for row in tx.fetch("job_prune", args).rows]
            if ids:
                tx.fetch("job_prune_attempts", {"ids": ids})
            tx.fetch("idempotency_prune", {})
            tx.fetch("once_prune", {})
            return len(ids)

        return await self._db.transaction(run)

    # -- cron and dead letters ----------------------------------------------------------

    async def cron_tick_record(self, params: CronTickRecordParams) -> bool:
        """Insert the tick row; when it is new, insert its job in the same transaction."""
        tick, job = params.tick, params.job

        def run(tx: Transaction) -> bool:
            inserted = tx.fetch(
                "cron_tick_insert",
                {
                    "name": tick.name,
                    "tick": tick.tick,
                    "status": tick.status,
                    "job_id": job.id if job else None,
                },
            ).rowcount
            if inserted and job is not None:
                tx.fetch("message_insert", insert_params(job))
            return inserted > 0

        return await self._db.transaction(run)

    async def dead_letter_reprocess(self, params: DeadLetterReprocessParams) -> int:
        """Jobs back as themselves, plain messages moved back, in one transaction."""
        args = {
            "dlq": params.dead_letter_queue,
            "ids": None if params.ids is None else list(params.ids),
            "origin": params.origin_queue,
        }

        def run(tx: Transaction) -> int:
            jobs = tx.fetch("dead_letter_reprocess_jobs", args).rowcount
            tx.fetch("dead_letter_drop_job_copies", args)
            messages = tx.fetch("dead_letter_reprocess_messages", args).rowcount
            return jobs + messages

        return await self._db.transaction(run)


def rate_spent(texts: Mapping[str | None, int], keys: Mapping[str, list[str]]) -> list[Any]:
    """The tokens a claim spends, as `flow_spend` takes them: [[bucket, jobs], ...] for
    every rate bucket (family `r...`) of the claimed jobs, from the count of each
    distinct flow_keys text among them and that text read."""
    spent: Counter[str] = Counter()
    for text, jobs in texts.items():
        if text:
            for bucket in keys[text]:
                if bucket.startswith("r"):
                    spent[bucket] += jobs
    return [[bucket, jobs] for bucket, jobs in spent.items()]


def claim_batch(tx: Transaction, args: dict[str, Any]) -> Rows:
    """Read the batch a claim takes and lease it if it meets the batch conditions (see
    `ClaimParams`); no rows when it does not. Only SQL: the rows become messages after
    the commit, so the write lock is held no longer than the statements need."""
    rows = tx.fetch("message_claim_many", args)
    if not rows.rows:
        return rows
    at = rows.columns.index("id")
    ids = [r[at] for r in rows.rows]
    if len(ids) < args["min_count"] and args["max_wait"] > 0:
        oldest = tx.fetch("message_claim_oldest", {"ids": ids}).scalar()
        if oldest > tx.now - args["max_wait"]:
            return Rows(rows.columns, [])
    leased = tx.fetch("message_claim_lease", {**args, "ids": ids}).rowcount
    if leased != len(ids):  # cannot happen: the write lock is held since the read
        raise BackendUnavailable(f"a claim leased {leased} of the {len(ids)} messages it read")
    return rows


def settle_acks(tx: Transaction, acks: Sequence[LeaseRef]) -> list[str]:
    """Delete the acked messages; return the ids whose ack applied.

    The acks of each lease go as one plain primary-key delete; only a lease some of
    whose messages it did not delete (lost leases) is undone and re-run with the
    statement that returns which ones applied, as are acks without a lease."""
    by_lease: dict[str | None, dict[str, None]] = {}
    for ack in acks:
        by_lease.setdefault(ack.lease_id, {})[ack.id] = None
    applied: list[str] = []
    for lease_id, group in by_lease.items():
        ids = list(group)
        if lease_id is not None:
            tx.savepoint()
            if tx.fetch("settle_ack_held", {"ids": ids, "lease_id": lease_id}).rowcount == len(ids):
                tx.release()
                applied += ids
                continue
            tx.rollback_to()
        pairs = [[i, lease_id] for i in ids]
        applied += [row[0] for row in tx.fetch("settle_ack", {"acks": pairs}).rows]
    return applied


def attempt_outcome(outcome: str, state: str) -> str:
    """An attempt's outcome as stored: a job whose cancel won ended `cancelled`."""
    if state == State.CANCELLED and outcome in ("completed", "retried", "failed", "snoozed"):
        return "cancelled"
    return outcome
