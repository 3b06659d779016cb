"""The job half of the PostgreSQL backend: status, history, idempotency, `once`, batches,
retention and cron ticks. Mirrors `sqlite/jobs.py`; every statement is in `queries.sql`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg

from ...errors import BackendUnavailable
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

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Execute = Callable[[str, dict[str, Any]], Awaitable[tuple[Any, ...] | None]]

# A key can change hands between our look and our claim (it expired, or its job was
# deleted); a few rounds settle it, more means something is wrong.
_IDEMPOTENCY_ROUNDS = 4


def job_params(message: NewMessage | None) -> dict[str, Any]:
    """The parameters of a one-job insert (all NULL without a job: a skipped cron tick)."""
    if message is None:
        keys = "id queue body content_type priority delay type max_attempts"
        return dict.fromkeys([*keys.split(), "idempotency_key", "correlation_id", "batch_id"])
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
    }


class PostgresJobStore:
    """Job statements, mixed into `PostgresBackend` (which supplies the connection plumbing)."""

    channel: str
    _sql: dict[str, str]
    _changes: ChangeSignal

    async def _run(
        self, fn: Callable[[Conn], Awaitable[T]], doing: str, *, check_schema: bool = True
    ) -> T:
        raise NotImplementedError

    async def _fetch(self, conn: Conn, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _on_callers_connection(
        self, connection: Any, fn: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]]
    ) -> T:
        raise NotImplementedError

    async def _rows(self, name: str, params: dict[str, Any], doing: str) -> list[tuple[Any, ...]]:
        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            return await self._fetch(conn, name, params)

        return await self._run(run, doing)

    async def _rowcount(self, name: str, params: dict[str, Any], doing: str) -> int:
        async def run(conn: Conn) -> int:
            cur = await conn.execute(self._sql[name], params)
            return cur.rowcount

        return await self._run(run, doing)

    # -- enqueue ------------------------------------------------------------------------

    async def job_enqueue(
        self, message: NewMessage, idempotency_ttl: float, connection: Any | None = None
    ) -> EnqueueResult:
        """Insert one job (and NOTIFY); an unexpired job holding the same (type, key) wins.

        With `connection` (a psycopg `AsyncConnection`), it runs inside the caller's
        transaction: the job (and its claim on the key) exists if and only if that commits.
        """
        params = {
            **job_params(message),
            "ttl": float(idempotency_ttl),
            "stale_holder": None,
            "channel": self.channel,
        }
        if connection is None:

            async def run(conn: Conn) -> EnqueueResult:
                async def execute(name: str, args: dict[str, Any]) -> tuple[Any, ...] | None:
                    cur = await conn.execute(self._sql[name], args)
                    return await cur.fetchone()

                return await self._enqueue_job(message, params, execute)

            result = await self._run(run, f"enqueue a {message.type!r} job")
        else:

            async def on_cursor(cur: psycopg.AsyncCursor[Any]) -> EnqueueResult:
                async def execute(name: str, args: dict[str, Any]) -> tuple[Any, ...] | None:
                    await cur.execute(self._sql[name], args)
                    row: tuple[Any, ...] | None = await cur.fetchone()
                    return row

                return await self._enqueue_job(message, params, execute)

            result = await self._on_callers_connection(connection, on_cursor)
        if not result.duplicate:
            self._changes.bump()
        return result

    async def _enqueue_job(
        self, message: NewMessage, params: dict[str, Any], execute: Execute
    ) -> EnqueueResult:
        for _ in range(_IDEMPOTENCY_ROUNDS):
            stored = await execute("job_enqueue", params)
            if (stored is not None and stored[0]) or message.idempotency_key is None:
                # Not stored without a key: the id exists, from a repeat of this enqueue.
                return EnqueueResult(message.id, duplicate=False)
            holder = await execute("idempotency_holder", params)
            if holder is None:  # the key expired and was pruned meanwhile: claim again
                continue
            job_id, job_exists = holder
            if job_id == message.id:  # a repeat of this enqueue had already won
                return EnqueueResult(message.id, duplicate=False)
            if job_exists:
                return EnqueueResult(str(job_id), duplicate=True)
            params["stale_holder"] = job_id  # its job is gone (purged): take the key over
        raise BackendUnavailable(
            f"idempotency key {message.idempotency_key!r} of type {message.type!r} kept "
            f"changing hands; gave up after {_IDEMPOTENCY_ROUNDS} rounds"
        )

    # -- reading ------------------------------------------------------------------------

    async def job_attempts(self, job_id: str) -> list[AttemptRecord]:
        """A job's delivery history, first attempt first."""
        rows = await self._rows("job_attempts", {"job_id": job_id}, "read a job's attempts")
        return [AttemptRecord(*row) for row in rows]

    async def job_list(self, job_filter: JobFilter) -> list[MessageRecord]:
        """Jobs newest first, filtered, after the cursor."""
        before = job_filter.before
        params = {
            "state": job_filter.state,
            "type": job_filter.type,
            "queue": job_filter.queue,
            "limit": job_filter.limit,
            "before_created": before[0] if before else None,
            "before_id": before[1] if before else None,
        }
        return [MessageRecord(*row) for row in await self._rows("job_list", params, "list jobs")]

    async def job_attempt_seq(self) -> int:
        """The latest attempt row's id."""
        return int((await self._rows("job_attempt_seq", {}, "read the attempt feed"))[0][0])

    async def job_events(self, cursor: JobEventCursor, limit: int) -> list[JobEvent]:
        """Enqueues, starts and finished attempts after the cursor, in time order."""
        params = {
            "enqueued_after": cursor.enqueued_after,
            "started_after": cursor.started_after,
            "attempt_after": cursor.attempt_after,
            "limit": limit,
        }
        rows = await self._rows("job_events", params, "read job events")
        return sorted((JobEvent(*row) for row in rows), key=lambda e: (e.at, e.seq))

    async def job_counts(self, queue: str | None = None, type: str | None = None) -> list[JobCount]:
        """Jobs by queue, type and state."""
        rows = await self._rows("job_counts", {"queue": queue, "type": type}, "count jobs")
        return [JobCount(q, t, state, int(n)) for q, t, state, n in rows]

    async def job_cancel_requested(self, lease_ids: Sequence[str]) -> list[str]:
        """Running jobs (under these leases) whose cancellation was requested."""
        if not lease_ids:
            return []
        rows = await self._rows(
            "job_cancel_requested", {"lease_ids": list(lease_ids)}, "check for cancellations"
        )
        return [row[0] for row in rows]

    # -- changing -----------------------------------------------------------------------

    async def job_cancel(self, job_id: str) -> str:
        """`now` (was pending), `requested` (running), else the job's state, or `missing`."""
        args = {"id": job_id}

        async def run(conn: Conn) -> str:
            async with conn.transaction():
                row = await self._fetch(conn, "job_lock", args)
                if not row:
                    return "missing"
                state = str(row[0][0])
                if state == "ready":
                    await conn.execute(self._sql["job_cancel_pending"], args)
                    return "now"
                if state == "leased":
                    await conn.execute(self._sql["job_cancel_request"], args)
                    return "requested"
                return state

        return await self._run(run, f"cancel job {job_id}")

    async def job_retry(self, job_id: str) -> str:
        """Back to pending with a fresh attempt budget (and NOTIFY), if failed or cancelled."""
        rows = await self._rows(
            "job_retry", {"id": job_id, "channel": self.channel}, f"retry job {job_id}"
        )
        outcome = str(rows[0][0]) if rows else "missing"
        if outcome == "retried":
            self._changes.bump()
        return outcome

    async def job_progress(
        self, job_id: str, lease_id: str, progress: float, note: str | None
    ) -> bool:
        """Store progress while the lease is held."""
        args = {"id": job_id, "lease_id": lease_id, "progress": float(progress), "note": note}
        return await self._rowcount("job_progress", args, "record progress") > 0

    async def job_batch_create(self, batch_id: str, type: str, total: int) -> None:
        """Record a new batch of jobs."""
        args = {"id": batch_id, "type": type, "total": total}
        await self._rowcount("job_batch_create", args, "create a job batch")

    async def job_batch_counts(self, batch_id: str) -> tuple[str, int, dict[str, int]] | None:
        """A batch's type, total and state counts, in one statement."""
        rows = await self._rows("job_batch_counts", {"id": batch_id}, "count a job batch")
        if not rows:
            return None
        counts = {str(state): int(n) for _, _, state, n in rows if state is not None}
        return str(rows[0][0]), int(rows[0][1]), counts

    async def job_prune(self, params: PruneParams) -> int:
        """Delete up to `limit` finished rows past retention, their history, expired keys."""
        args = {
            "completed_before": params.completed_before,
            "failed_before": params.failed_before,
            "limit": params.limit,
        }
        return int((await self._rows("job_prune", args, "prune finished jobs"))[0][0])

    # -- once ---------------------------------------------------------------------------

    async def once_claim(self, key: str, owner: str, lease_seconds: float) -> OnceClaim:
        """Claim `key` for `owner`, or report the stored result, or that someone runs it."""
        args = {"key": key, "owner": owner, "lease": float(lease_seconds)}

        async def run(conn: Conn) -> OnceClaim:
            if await self._fetch(conn, "once_claim", args):
                return OnceClaim("claimed")
            # A new statement: it sees the row as the winner committed it.
            found = await self._fetch(conn, "once_get", args)
            if found and found[0][0] == "done":
                return OnceClaim("done", bytes(found[0][1]))
            return OnceClaim("busy")

        return await self._run(run, f"claim once key {key!r}")

    async def once_finish(self, key: str, owner: str, result: bytes, ttl: float) -> None:
        """Store the result of `key` for `ttl` seconds."""
        args = {"key": key, "owner": owner, "result": result, "ttl": float(ttl)}
        await self._rowcount("once_finish", args, f"store the result of once key {key!r}")

    async def once_abandon(self, key: str, owner: str) -> None:
        """Give up the claim on `key` so another caller can run it."""
        args = {"key": key, "owner": owner}
        await self._rowcount("once_abandon", args, f"release once key {key!r}")

    # -- cron ---------------------------------------------------------------------------

    async def cron_tick_record(self, tick: CronTick, job: NewMessage | None) -> bool:
        """Insert the tick row and, when it is new, its job (and NOTIFY), in one statement."""
        args = {
            **job_params(job),
            "name": tick.name,
            "tick": float(tick.tick),
            "status": tick.status,
            "channel": self.channel,
        }
        recorded, enqueued = (await self._rows("cron_tick_record", args, "record a cron tick"))[0]
        if enqueued:
            self._changes.bump()
        return bool(recorded)

    async def cron_last_tick(self, name: str) -> float | None:
        """The latest scheduled tick recorded for a trigger (manual fires excluded)."""
        value = (await self._rows("cron_last_tick", {"name": name}, "read cron ticks"))[0][0]
        return None if value is None else float(value)

    async def cron_recent(self, name: str, limit: int) -> list[CronTick]:
        """Newest ticks first."""
        rows = await self._rows("cron_recent", {"name": name, "limit": limit}, "read cron ticks")
        return [CronTick(*row) for row in rows]
