"""The job half of the SQLite backend: status, history, idempotency, `once`, batches, retention."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from ...errors import InvalidMessage
from ..base import (
    AttemptRecord,
    CronTick,
    EnqueueResult,
    JobCount,
    JobEvent,
    JobEventCursor,
    JobFilter,
    MessageRecord,
    NewMessage,
    OnceClaim,
    PruneParams,
)
from ..changes import ChangeSignal
from .sql import SQL

T = TypeVar("T")


class SQLiteJobStore:
    """Job statements, mixed into `SQLiteBackend` (which supplies the connection plumbing)."""

    _changes: ChangeSignal

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _query(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    url_for_logs: str

    async def job_enqueue(
        self, message: NewMessage, idempotency_ttl: float, connection: Any | None = None
    ) -> EnqueueResult:
        """Insert one job; an unexpired job holding the same (type, key) wins instead."""
        from .backend import insert_params

        if connection is not None:
            raise InvalidMessage(
                "connection= (enqueue inside your own transaction) needs the PostgreSQL "
                f"backend; {self.url_for_logs} is SQLite, so nothing was enqueued"
            )

        def run(conn: sqlite3.Connection) -> EnqueueResult:
            now = time.time()
            if message.idempotency_key is not None:
                key = {"type": message.type, "key": message.idempotency_key}
                conn.execute(
                    SQL["idempotency_claim"],
                    {**key, "job_id": message.id, "expires_at": now + idempotency_ttl, "now": now},
                )
                holder = conn.execute(SQL["idempotency_holder"], key).fetchone()[0]
                if holder != message.id:
                    return EnqueueResult(holder, duplicate=True)
            conn.execute(SQL["message_insert"], insert_params(message, now))
            return EnqueueResult(message.id, duplicate=False)

        result = await self._transaction(run)
        if not result.duplicate:
            self._changes.bump()
        return result

    async def job_attempts(self, job_id: str) -> list[AttemptRecord]:
        """A job's delivery history."""
        rows = await self._query(SQL["job_attempts"], {"job_id": job_id})
        return [AttemptRecord(*row) for row in rows]

    async def job_list(self, job_filter: JobFilter) -> list[MessageRecord]:
        """Jobs newest first, filtered, after the cursor."""
        before = job_filter.before
        rows = await self._query(
            SQL["job_list"],
            {
                "state": job_filter.state,
                "type": job_filter.type,
                "queue": job_filter.queue,
                "limit": job_filter.limit,
                "before_created": before[0] if before else None,
                "before_id": before[1] if before else None,
            },
        )
        return [MessageRecord(*row) for row in rows]

    async def job_attempt_seq(self) -> int:
        """The latest attempt row's id."""
        rows = await self._query(SQL["job_attempt_seq"], {})
        return int(rows[0][0])

    async def job_events(self, cursor: JobEventCursor, limit: int) -> list[JobEvent]:
        """Enqueues, starts and finished attempts after the cursor, in time order."""

        args = {
            "enqueued_after": cursor.enqueued_after,
            "started_after": cursor.started_after,
            "attempt_after": cursor.attempt_after,
            "limit": limit,
        }
        events = [
            JobEvent(*row)
            for name in ("job_events_enqueued", "job_events_started", "job_events_finished")
            for row in await self._query(SQL[name], args)
        ]
        return sorted(events, key=lambda e: (e.at, e.seq))

    async def job_cancel(self, job_id: str) -> str:
        """`now` (was pending), `requested` (running), else the job's state, or `missing`."""

        def run(conn: sqlite3.Connection) -> str:
            args = {"id": job_id, "now": time.time()}
            if conn.execute(SQL["job_cancel_pending"], args).rowcount:
                return "now"
            if conn.execute(SQL["job_cancel_request"], args).rowcount:
                return "requested"
            row = conn.execute(SQL["job_state"], args).fetchone()
            return str(row[0]) if row else "missing"

        return await self._transaction(run)

    async def job_retry(self, job_id: str) -> str:
        """Back to pending with a fresh attempt budget, if failed or cancelled."""

        def run(conn: sqlite3.Connection) -> str:
            args = {"id": job_id, "now": time.time()}
            if conn.execute(SQL["job_retry"], args).rowcount:
                return "retried"
            row = conn.execute(SQL["job_state"], args).fetchone()
            return str(row[0]) if row else "missing"

        outcome = await self._transaction(run)
        if outcome == "retried":
            self._changes.bump()
        return outcome

    async def job_progress(
        self, job_id: str, lease_id: str, progress: float, note: str | None
    ) -> bool:
        """Store progress while the lease is held."""

        def run(conn: sqlite3.Connection) -> bool:
            args = {"id": job_id, "lease_id": lease_id, "progress": progress, "note": note}
            return conn.execute(SQL["job_progress"], args).rowcount > 0

        return await self._transaction(run)

    async def job_cancel_requested(self, lease_ids: Sequence[str]) -> list[str]:
        """Running jobs (under these leases) whose cancellation was requested."""
        if not lease_ids:
            return []
        rows = await self._query(
            SQL["job_cancel_requested"], {"lease_ids": orjson.dumps(list(lease_ids))}
        )
        return [row[0] for row in rows]

    async def job_counts(self, queue: str | None = None, type: str | None = None) -> list[JobCount]:
        """Jobs by queue, type and state."""
        rows = await self._query(SQL["job_counts"], {"queue": queue, "type": type})
        return [JobCount(*row) for row in rows]

    async def job_batch_create(self, batch_id: str, type: str, total: int) -> None:
        """Record a new batch of jobs."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                SQL["job_batch_create"],
                {"id": batch_id, "type": type, "total": total, "now": time.time()},
            )

        await self._transaction(run)

    async def job_batch_counts(self, batch_id: str) -> tuple[str, int, dict[str, int]] | None:
        """A batch's type, total and state counts, read in one transaction."""

        def run(conn: sqlite3.Connection) -> tuple[str, int, dict[str, int]] | None:
            head = conn.execute(SQL["job_batch_get"], {"id": batch_id}).fetchone()
            if head is None:
                return None
            counts = dict(conn.execute(SQL["job_batch_counts"], {"id": batch_id}).fetchall())
            return str(head[0]), int(head[1]), counts

        return await self._transaction(run)

    async def job_prune(self, params: PruneParams) -> int:
        """Delete up to `limit` finished rows past retention, their history, expired keys."""

        def run(conn: sqlite3.Connection) -> int:
            now = time.time()
            ids = [
                row[0]
                for row in conn.execute(
                    SQL["job_prune"],
                    {
                        "completed_before": params.completed_before,
                        "failed_before": params.failed_before,
                        "limit": params.limit,
                    },
                )
            ]
            if ids:
                conn.execute(SQL["job_prune_attempts"], {"ids": orjson.dumps(ids)})
            conn.execute(SQL["idempotency_prune"], {"now": now})
            conn.execute(SQL["once_prune"], {"now": now})
            return len(ids)

        return await self._transaction(run)

    async def once_claim(self, key: str, owner: str, lease_seconds: float) -> OnceClaim:
        """Claim `key` for `owner`, or report the stored result, or that someone is running it."""

        def run(conn: sqlite3.Connection) -> OnceClaim:
            now = time.time()
            conn.execute(
                SQL["once_claim"],
                {"key": key, "owner": owner, "lease_until": now + lease_seconds, "now": now},
            )
            state, result, holder = conn.execute(SQL["once_get"], {"key": key}).fetchone()
            if state == "done":
                return OnceClaim("done", bytes(result))
            return OnceClaim("claimed" if holder == owner else "busy")

        return await self._transaction(run)

    async def once_finish(self, key: str, owner: str, result: bytes, ttl: float) -> None:
        """Store the result of `key` for `ttl` seconds."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                SQL["once_finish"],
                {"key": key, "owner": owner, "result": result, "expires_at": time.time() + ttl},
            )

        await self._transaction(run)

    async def once_abandon(self, key: str, owner: str) -> None:
        """Give up the claim on `key` so another caller can run it."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["once_abandon"], {"key": key, "owner": owner})

        await self._transaction(run)

    async def cron_tick_record(self, tick: CronTick, job: NewMessage | None) -> bool:
        """Insert the tick row; when it is new, insert its job in the same transaction."""
        from .backend import insert_params

        def run(conn: sqlite3.Connection) -> bool:
            now = time.time()
            inserted = conn.execute(
                SQL["cron_tick_insert"],
                {
                    "name": tick.name,
                    "tick": tick.tick,
                    "status": tick.status,
                    "job_id": job.id if job else None,
                    "now": now,
                },
            ).rowcount
            if inserted and job is not None:
                conn.execute(SQL["message_insert"], insert_params(job, now))
            return inserted > 0

        recorded = await self._transaction(run)
        if recorded and job is not None:
            self._changes.bump()
        return recorded

    async def cron_last_tick(self, name: str) -> float | None:
        """The latest recorded tick of a trigger."""
        rows = await self._query(SQL["cron_last_tick"], {"name": name})
        value = rows[0][0]
        return None if value is None else float(value)

    async def cron_recent(self, name: str, limit: int) -> list[CronTick]:
        """Newest ticks first."""
        rows = await self._query(SQL["cron_recent"], {"name": name, "limit": limit})
        return [CronTick(*row) for row in rows]
