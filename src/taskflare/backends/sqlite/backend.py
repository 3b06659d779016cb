"""The embedded backend: one SQLite file in WAL mode, shared safely by several processes.

All statements of a process run on one dedicated thread that owns the connection, so
the event loop never blocks on a busy database and the `App` works from any loop or
thread. Writers take the lock up front (`BEGIN IMMEDIATE`) so SQLite's busy handler can
queue them instead of failing with "database is locked"; on top of the busy timeout a
write is retried with backoff for up to `lock_wait` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ...errors import BackendUnavailable, InvalidMessage, SchemaOutdated, SchemaTooNew
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
from .jobs import SQLiteJobStore
from .sql import LATEST_VERSION, MIGRATIONS, SQL

log = logging.getLogger("taskflare.sqlite")

T = TypeVar("T")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteBackend(SQLiteJobStore):
    """Backend over one SQLite database file."""

    poll_interval = 0.02

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        lock_wait: float = 120.0,
        auto_migrate: bool = True,
    ) -> None:
        self.path = path
        self.url_for_logs = f"sqlite:///{path}"
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._lock_wait = lock_wait
        self._auto_migrate = auto_migrate
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskflare-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._changes = ChangeSignal()
        self._data_version: int | None = None
        self._idle_queues: set[str] = set()
        self._poll_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise BackendUnavailable("the SQLite backend is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(lambda: self._write(fn))

    async def _query(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return await self._call(lambda: self._read(sql, params))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self._open()
            self._check_schema(conn)
            self._conn = conn
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            if self.path != ":memory:":
                self._with_retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        return conn

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

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` inside BEGIN IMMEDIATE ... COMMIT, retrying while the file is locked."""
        return self._write_on(self._connection(), fn)

    def _read(self, sql: str, params: dict[str, Any]) -> list[Any]:
        conn = self._connection()
        return self._with_retry(lambda: conn.execute(sql, params).fetchall())

    # -- schema -------------------------------------------------------------------

    def _applied_versions(self, conn: sqlite3.Connection) -> list[int]:
        conn.execute(SQL["migrations_table"])
        return [row[0] for row in conn.execute(SQL["migrations_applied"])]

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        def check(c: sqlite3.Connection) -> None:
            applied = self._applied_versions(c)
            if not applied and self._auto_migrate:
                self._apply(c, applied)
                return
            self._verify(applied)

        try:
            self._write_on(conn, check)
        except BaseException:
            conn.close()
            raise

    def _write_on(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._with_retry(attempt)

    def _verify(self, applied: list[int]) -> None:
        current = max(applied, default=0)
        if current > LATEST_VERSION:
            raise SchemaTooNew(
                f"database {self.path!r} has schema version {current}, newer than this "
                f"taskflare ({LATEST_VERSION}); upgrade taskflare"
            )
        if current < LATEST_VERSION:
            raise SchemaOutdated(
                f"database {self.path!r} has schema version {current}; this taskflare needs "
                f"{LATEST_VERSION}. Run: taskflare migrate {self.url_for_logs}"
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
            if self._conn is None:
                self._conn = self._open()
            return self._write_on(self._conn, lambda c: self._apply(c, self._applied_versions(c)))

        return await self._call(run)

    async def close(self) -> None:
        """Close the connection and stop the statement thread; safe to call twice."""
        if self._closed:
            return

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._closed = True
        self._executor.shutdown(wait=False)

    # -- change notification ------------------------------------------------------

    @property
    def change_seq(self) -> int:
        """Moves when this process made work ready or another process wrote the file."""
        return self._changes.seq

    def _poll_data_version(self) -> None:
        version = self._connection().execute("PRAGMA data_version").fetchone()[0]
        with self._poll_lock:
            changed = self._data_version is not None and version != self._data_version
            self._data_version = version
        if changed:
            self._changes.bump()

    async def wait_for_change(self, since: int, timeout: float) -> None:
        """Wake on this process's own sends at once, and on other processes' within a poll."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if await self._changes.wait(since, min(remaining, self.poll_interval)):
                return
            await self._call(self._poll_data_version)
            if self._changes.seq != since:
                return

    # -- messages -----------------------------------------------------------------

    async def message_enqueue_many(
        self, messages: Sequence[NewMessage], connection: Any | None = None
    ) -> None:
        """Insert a batch of messages in one transaction (SQLite has no `connection=`)."""
        if connection is not None:
            raise InvalidMessage(
                "connection= (enqueue inside your own transaction) needs the PostgreSQL "
                f"backend; {self.url_for_logs} is SQLite, so nothing was enqueued"
            )

        def run(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany(SQL["message_insert"], [insert_params(m, now) for m in messages])

        await self._transaction(run)
        self._changes.bump()

    async def message_claim_many(self, params: ClaimParams) -> list[ClaimedMessage]:
        """Lease one batch in a single UPDATE ... RETURNING.

        A queue whose last claim came back empty is first looked at with a read (no
        lock): idle workers woken by other processes' writes then do not queue up for
        the write lock just to find nothing, which kept producers waiting. While a
        queue has work, claims go straight to the one UPDATE.
        """
        args = {
            "queue": params.queue,
            "limit": params.limit,
            "lease_id": params.lease_id,
            "owner": params.owner,
            "visibility_timeout": params.visibility_timeout,
            "min_count": params.min_count,
            "max_wait": params.max_wait,
        }

        def run(conn: sqlite3.Connection) -> list[Any]:
            args["now"] = time.time()
            return conn.execute(SQL["message_claim_many"], args).fetchall()

        if params.queue in self._idle_queues:
            check = {k: args[k] for k in ("queue", "limit", "min_count", "max_wait")}
            check["now"] = time.time()
            if not (await self._query(SQL["message_claim_precheck"], check))[0][0]:
                return []
        rows = await self._transaction(run)
        if rows:
            self._idle_queues.discard(params.queue)
        else:
            self._idle_queues.add(params.queue)
        claimed = [ClaimedMessage(*row) for row in rows]
        claimed.sort(key=lambda m: (-m.priority, m.id))
        return claimed

    async def message_settle_many(self, settlement: Settlement) -> SettleResult:
        """Apply acks, retries and failures (with dead-lettering) in one transaction."""
        acks = settlement.acks
        retries = settlement.retries
        fails = settlement.fails

        def run(conn: sqlite3.Connection) -> SettleResult:
            now = time.time()
            acked = retried = failed = 0
            if settlement.attempts:
                conn.executemany(
                    SQL["job_attempt_record"], [asdict(a) for a in settlement.attempts]
                )
            if acks:
                refs = orjson.dumps([[a.id, a.lease_id] for a in acks])
                acked = conn.execute(SQL["message_ack_many"], {"refs": refs}).rowcount
            if retries:
                items = orjson.dumps(
                    [[r.id, r.lease_id, r.delay_seconds, r.error] for r in retries]
                )
                retried = conn.execute(
                    SQL["message_retry_many"], {"items": items, "now": now}
                ).rowcount
            if fails:
                failed = self._fail_many(conn, fails, now)
            completed, cancelled = self._finish_jobs(conn, settlement, now)
            return SettleResult(acked, retried, failed, completed, cancelled)

        result = await self._transaction(run)
        if result.retried:
            self._changes.bump()
        return result

    def _finish_jobs(
        self, conn: sqlite3.Connection, settlement: Settlement, now: float
    ) -> tuple[int, int]:
        completed = cancelled = 0
        if settlement.completes:
            items = orjson.dumps(
                [[c.id, c.lease_id, (c.result or b"null").decode()] for c in settlement.completes]
            )
            completed = conn.execute(
                SQL["job_complete_many"], {"items": items, "now": now}
            ).rowcount
        if settlement.cancels:
            items = orjson.dumps([[c.id, c.lease_id, c.reason] for c in settlement.cancels])
            cancelled = conn.execute(SQL["job_cancel_many"], {"items": items, "now": now}).rowcount
        return completed, cancelled

    def _fail_many(self, conn: sqlite3.Connection, fails: Sequence[FailOutcome], now: float) -> int:
        items = orjson.dumps([[f.id, f.lease_id, f.error] for f in fails])
        failed_ids = {
            row[0] for row in conn.execute(SQL["message_fail_many"], {"items": items, "now": now})
        }
        to_dlq = [
            [f.id, f.dlq_message_id, f.dead_letter_queue]
            for f in fails
            if f.dead_letter_queue and f.dlq_message_id and f.id in failed_ids
        ]
        if to_dlq:
            conn.execute(
                SQL["message_dead_letter_many"], {"items": orjson.dumps(to_dlq), "now": now}
            )
            self._changes.bump()
        return len(failed_ids)

    async def message_release_many(self, refs: Sequence[LeaseRef]) -> int:
        """Hand claimed-but-unstarted messages back, attempts restored."""
        if not refs:
            return 0
        payload = orjson.dumps([[r.id, r.lease_id] for r in refs])

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(SQL["message_release_many"], {"refs": payload}).rowcount

        count = await self._transaction(run)
        if count:
            self._changes.bump()
        return count

    async def message_get(self, message_id: str) -> MessageRecord | None:
        """One message by id, or None."""
        rows = await self._query(SQL["message_get"], {"id": message_id})
        return MessageRecord(*rows[0]) if rows else None

    async def message_list(
        self, queue: str, state: str | None = None, limit: int = 100
    ) -> list[MessageRecord]:
        """Messages of one queue, optionally of one state, oldest first."""
        rows = await self._query(
            SQL["message_list"], {"queue": queue, "state": state, "limit": limit}
        )
        return [MessageRecord(*row) for row in rows]

    # -- leases ---------------------------------------------------------------------

    async def lease_extend_many(self, lease_ids: Sequence[str], visibility_timeout: float) -> int:
        """Heartbeat: push live leases' expiry forward."""
        if not lease_ids:
            return 0
        payload = orjson.dumps(list(lease_ids))

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                SQL["lease_extend_many"],
                {
                    "lease_ids": payload,
                    "now": time.time(),
                    "visibility_timeout": visibility_timeout,
                },
            ).rowcount

        return await self._transaction(run)

    async def lease_rescue_expired(self, params: RescueParams) -> RescueResult:
        """Requeue expired leases; fail (and dead-letter) those already out of attempts."""

        def run(conn: sqlite3.Connection) -> RescueResult:
            now = time.time()
            args = {"queue": params.queue, "now": now, "max_attempts": params.max_attempts}
            conn.execute(SQL["lease_rescue_record_lost"], args)
            requeued = conn.execute(SQL["lease_rescue_requeue"], args).rowcount
            exhausted = conn.execute(SQL["lease_rescue_exhausted"], args).fetchall()
            failed = 0
            if exhausted:
                from ...ids import uuid7

                fails = [
                    FailOutcome(
                        id=row[0],
                        lease_id=row[1],
                        error=(
                            f"lease expired after the last of {params.max_attempts} deliveries: "
                            "the worker holding this message stopped or lost contact"
                        ),
                        dead_letter_queue=params.dead_letter_queue,
                        dlq_message_id=uuid7() if params.dead_letter_queue else None,
                    )
                    for row in exhausted
                ]
                failed = self._fail_many(conn, fails, now)
            return RescueResult(requeued, failed)

        result = await self._transaction(run)
        if result.requeued:
            self._changes.bump()
        return result

    # -- queues ---------------------------------------------------------------------

    async def queue_declare_many(self, queues: Sequence[QueueSettings]) -> None:
        """Create or update queue rows with their settings."""

        def run(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany(
                SQL["queue_declare"],
                [{"name": q.name, "settings": q.settings_json, "now": now} for q in queues],
            )

        await self._transaction(run)

    async def queue_pause(self, queue: str, paused: bool) -> None:
        """Set or clear a queue's paused flag."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                SQL["queue_pause"], {"name": queue, "paused": int(paused), "now": time.time()}
            )

        await self._transaction(run)
        if not paused:
            self._changes.bump()

    async def queue_ready_info(self, queue: str, limit: int) -> ReadyInfo:
        """Ready count (up to `limit`), oldest ready time, next delayed time, paused flag."""
        now = time.time()
        rows = await self._query(
            SQL["queue_ready_info"], {"queue": queue, "limit": limit, "now": now}
        )
        count, oldest, next_at, paused = rows[0]
        return ReadyInfo(int(count), oldest, next_at, bool(paused), now)

    async def queue_counts(self, queue: str | None = None) -> list[QueueCounts]:
        """Per-queue message counts by state, with settings and the oldest ready time."""
        rows = await self._query(SQL["queue_counts"], {"queue": queue})
        result: dict[str, QueueCounts] = {}
        for name, paused, state, count, oldest, settings in rows:
            entry = result.setdefault(
                name, QueueCounts(name=name, paused=bool(paused), settings_json=settings)
            )
            if state is not None:
                entry.by_state[state] = int(count)
            if oldest is not None:
                result[name] = QueueCounts(name, entry.paused, entry.by_state, oldest, settings)
        return list(result.values())

    async def queue_purge(self, queue: str) -> int:
        """Delete unfinished messages of a queue."""

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(SQL["queue_purge"], {"queue": queue}).rowcount

        return await self._transaction(run)

    async def dead_letter_reprocess(self, dlq: str, ids: Sequence[str] | None) -> int:
        """Jobs back as themselves, plain messages moved back, in one transaction."""
        id_list = None if ids is None else orjson.dumps(list(ids))

        def run(conn: sqlite3.Connection) -> int:
            args = {"dlq": dlq, "ids": id_list, "now": time.time()}
            jobs = conn.execute(SQL["dead_letter_reprocess_jobs"], args).rowcount
            conn.execute(SQL["dead_letter_drop_job_copies"], args)
            messages = conn.execute(SQL["dead_letter_reprocess_messages"], args).rowcount
            return jobs + messages

        count = await self._transaction(run)
        if count:
            self._changes.bump()
        return count

    async def worker_report(self, report: WorkerReport) -> None:
        """Upsert this worker's row."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                SQL["worker_report"],
                {
                    "id": report.id,
                    "hostname": report.hostname,
                    "pid": report.pid,
                    "started_at": report.started_at,
                    "now": time.time(),
                    "stats": report.stats_json,
                },
            )

        await self._transaction(run)

    async def worker_list(self, since: float) -> list[WorkerReport]:
        """Workers seen since `since`."""
        rows = await self._query(SQL["worker_list"], {"since": since})
        return [WorkerReport(*row) for row in rows]


def _split_statements(script: str) -> list[str]:
    """Split a migration script into statements (our migrations hold no triggers)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def insert_params(message: NewMessage, now: float) -> dict[str, Any]:
    """The named parameters of `message_insert` for one message."""
    return {
        "id": message.id,
        "queue": message.queue,
        "body": message.body,
        "content_type": message.content_type,
        "priority": message.priority,
        "now": now,
        "available_at": now + message.delay_seconds,
        "type": message.type,
        "max_attempts": message.max_attempts,
        "idempotency_key": message.idempotency_key,
        "correlation_id": message.correlation_id,
        "batch_id": message.batch_id,
    }
