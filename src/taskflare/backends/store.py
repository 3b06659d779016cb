"""The Python both SQL backends share: each storage method as named statements over an executor.

A dialect supplies an `Executor` (how to run a named statement of its `queries.sql`)
and overrides only the operations whose SQL shape really differs: those that are one
statement on PostgreSQL but a short transaction of several on SQLite (claim, settle,
enqueue, cancel, retry, prune, cron ticks, dead-letter replay). Parameters are passed
as Python values; an executor adapts them (SQLite: sequences become JSON for
`json_each`, `:now` is filled from this machine's clock).

The change signal is not raised here: the statements raise it themselves when they
commit (PostgreSQL: NOTIFY; SQLite: temporary triggers), so no method can forget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..errors import InvalidMessage
from .base import (
    AttemptRecord,
    CancelRequestedParams,
    CronNameParams,
    CronTick,
    DocInsertParams,
    DocKeyParams,
    DocListParams,
    DocNamespaceParams,
    DocPutManyParams,
    DocumentRecord,
    ExpiredLease,
    ExpiredLeaseParams,
    FlowLimit,
    JobAttemptsParams,
    JobBatchCounts,
    JobBatchCreateParams,
    JobBatchGetParams,
    JobBatchTotalParams,
    JobCount,
    JobCountParams,
    JobEvent,
    JobEventsParams,
    JobFilter,
    JobProgressParams,
    LeaseExtendParams,
    MessageGetParams,
    MessageListParams,
    MessageRecord,
    NamespaceCount,
    OnceAbandonParams,
    OnceClaim,
    OnceClaimParams,
    OnceFinishParams,
    OnceState,
    QueueCounts,
    QueueCountsParams,
    QueueDeclareParams,
    QueuePauseParams,
    QueuePurgeParams,
    ReadyInfo,
    ReadyInfoParams,
    ReleaseParams,
    WorkerListParams,
    WorkerReport,
)
from .rows import Rows


class Executor(Protocol):
    """How a dialect runs one named statement (in its own transaction when it writes)."""

    async def fetch(self, name: str, params: Mapping[str, Any]) -> Rows:
        """Run statement `name` and return what it returned (rowcount set for writes)."""
        ...


def not_transactional(url: str) -> InvalidMessage:
    """The error for `connection=` on a backend that cannot join the caller's transaction."""
    return InvalidMessage(
        "connection= (enqueue inside your own transaction) needs the PostgreSQL "
        f"backend; {url} is SQLite, so nothing was enqueued"
    )


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


# A worker waiting on a full concurrency limit looks again at least this often [s] (it
# also wakes whenever a job finishes).
CONCURRENCY_POLL = 0.25


def flow_scan(limit: int) -> int:
    """How many ready jobs a claim with limits looks at to take up to `limit`: jobs of
    buckets that allow nothing are skipped by the scan itself; the margin covers buckets
    that allow fewer jobs than the scan finds."""
    return max(4 * limit, 20)


def limit_arrays(limits: Sequence[FlowLimit]) -> dict[str, list[Any]]:
    """The limits as the parallel arrays the flow statements take."""
    return {
        "families": [lim.family for lim in limits],
        "amounts": [float(lim.amount) for lim in limits],
        "periods": [float(lim.period) for lim in limits],
        "bursts": [float(lim.burst) for lim in limits],
    }


def claimable(info: ReadyInfo, min_count: int, max_wait: float) -> bool:
    """Whether a claim with these batch conditions would take something now."""
    if info.paused or info.oldest_available_at is None:
        return False
    return info.ready_count >= min_count or info.oldest_available_at <= info.now - max_wait


class SqlStore:
    """The storage methods that are one statement on every dialect."""

    def __init__(self, executor: Executor) -> None:
        self._x = executor

    # -- messages and leases -------------------------------------------------------------

    async def lease_extend_many(self, params: LeaseExtendParams) -> int:
        """Heartbeat: push live leases' expiry forward."""
        if not params.lease_ids:
            return 0
        rows = await self._x.fetch(
            "lease_extend_many",
            {
                "lease_ids": list(params.lease_ids),
                "visibility_timeout": float(params.visibility_timeout),
            },
        )
        return rows.rowcount

    async def lease_list_expired(self, params: ExpiredLeaseParams) -> list[ExpiredLease]:
        """Deliveries whose lease has expired, oldest expiry first."""
        rows = await self._x.fetch(
            "lease_list_expired", {"queue": params.queue, "limit": params.limit}
        )
        return rows.into(ExpiredLease)

    async def message_get(self, params: MessageGetParams) -> MessageRecord | None:
        """One message by id, or None."""
        return (await self._x.fetch("message_get", {"id": params.id})).first(MessageRecord)

    async def message_list(self, params: MessageListParams) -> list[MessageRecord]:
        """Messages of one queue, optionally of one state, oldest first."""
        after_created, after_id = params.after or (None, None)
        rows = await self._x.fetch(
            "message_list",
            {
                "queue": params.queue,
                "state": params.state,
                "limit": params.limit,
                "after_created": after_created,
                "after_id": after_id,
            },
        )
        return rows.into(MessageRecord)

    async def message_release_many(self, params: ReleaseParams) -> int:
        """Hand claimed-but-unstarted messages back, attempts restored."""
        if not params.refs:
            return 0
        rows = await self._x.fetch(
            "message_release_many",
            {"ids": [r.id for r in params.refs], "leases": [r.lease_id for r in params.refs]},
        )
        return len(rows)

    # -- queues --------------------------------------------------------------------------

    async def queue_declare_many(self, params: QueueDeclareParams) -> None:
        """Create or update queue rows with their settings."""
        if params.queues:
            await self._x.fetch(
                "queue_declare_many",
                {
                    "names": [q.name for q in params.queues],
                    "settings": [q.settings_json for q in params.queues],
                },
            )

    async def queue_pause(self, params: QueuePauseParams) -> None:
        """Set or clear a queue's paused flag (resuming wakes idle workers)."""
        await self._x.fetch("queue_pause", {"name": params.queue, "paused": params.paused})

    async def queue_ready_info(self, params: ReadyInfoParams) -> ReadyInfo:
        """Ready count (up to `limit`), oldest ready time, next delayed time, paused, now."""
        rows = await self._x.fetch(
            "queue_ready_info",
            {"queue": params.queue, "limit": params.limit, "types": _list(params.types)},
        )
        info = rows.first(ReadyInfo)
        assert info is not None
        return info

    async def queue_counts(self, params: QueueCountsParams) -> list[QueueCounts]:
        """Per-queue message counts by state, with settings and the oldest ready time."""
        rows = await self._x.fetch("queue_counts", {"queue": params.queue})
        result: dict[str, QueueCounts] = {}
        for row in rows.dicts():
            name = row["name"]
            entry = result.get(name)
            if entry is None:
                entry = result[name] = QueueCounts(
                    name=name, paused=bool(row["paused"]), settings_json=row["settings"]
                )
            if row["state"] is not None:
                entry.by_state[row["state"]] = int(row["count"])
            if row["oldest_ready_at"] is not None:
                result[name] = QueueCounts(
                    name, entry.paused, entry.by_state, row["oldest_ready_at"], entry.settings_json
                )
        return list(result.values())

    async def queue_purge(self, params: QueuePurgeParams) -> int:
        """Delete unfinished messages of a queue."""
        return (await self._x.fetch("queue_purge", {"queue": params.queue})).rowcount

    # -- jobs ----------------------------------------------------------------------------

    async def job_attempts(self, params: JobAttemptsParams) -> list[AttemptRecord]:
        """The delivery histories of jobs, in order."""
        if not params.job_ids:
            return []
        rows = await self._x.fetch("job_attempts", {"job_ids": list(params.job_ids)})
        return rows.into(AttemptRecord)

    async def job_list(self, params: JobFilter) -> list[MessageRecord]:
        """Jobs newest first, filtered, after the cursor."""
        before = params.before
        rows = await self._x.fetch(
            "job_list",
            {
                "state": params.state,
                "type": params.type,
                "queue": params.queue,
                "limit": params.limit,
                "before_created": before[0] if before else None,
                "before_id": before[1] if before else None,
            },
        )
        return rows.into(MessageRecord)

    async def ping(self) -> None:
        """One cheap read of the schema (raises `BackendUnavailable` when it fails)."""
        await self._x.fetch("database_ping", {})

    async def job_attempt_seq(self) -> int:
        """The latest attempt row's id."""
        return int((await self._x.fetch("job_attempt_seq", {})).scalar() or 0)

    async def job_events(self, params: JobEventsParams) -> list[JobEvent]:
        """Enqueues, starts and finished attempts after the cursor, in time order."""
        cursor = params.cursor
        rows = await self._x.fetch(
            "job_events",
            {
                "enqueued_after": cursor.enqueued_after,
                "started_after": cursor.started_after,
                "attempt_after": cursor.attempt_after,
                "limit": params.limit,
            },
        )
        return sorted(rows.into(JobEvent), key=lambda e: (e.at, e.seq))

    async def job_cancel_requested(self, params: CancelRequestedParams) -> list[str]:
        """Running jobs (under these leases) whose cancellation was requested."""
        if not params.lease_ids:
            return []
        rows = await self._x.fetch("job_cancel_requested", {"lease_ids": list(params.lease_ids)})
        return [str(row[0]) for row in rows.rows]

    async def job_progress(self, params: JobProgressParams) -> bool:
        """Store progress while the lease is held."""
        rows = await self._x.fetch(
            "job_progress",
            {
                "id": params.id,
                "lease_id": params.lease_id,
                "progress": float(params.progress),
                "note": params.note,
            },
        )
        return rows.rowcount > 0

    async def job_counts(self, params: JobCountParams) -> list[JobCount]:
        """Jobs by queue, type and state."""
        rows = await self._x.fetch("job_counts", {"queue": params.queue, "type": params.type})
        return rows.into(JobCount)

    async def job_batch_create(self, params: JobBatchCreateParams) -> None:
        """Record a new batch of jobs."""
        await self._x.fetch(
            "job_batch_create", {"id": params.id, "type": params.type, "total": params.total}
        )

    async def job_batch_raise_total(self, params: JobBatchTotalParams) -> None:
        """Raise a batch's total (never lowers it)."""
        await self._x.fetch("job_batch_raise_total", {"id": params.id, "total": params.total})

    async def job_batch_counts(self, params: JobBatchGetParams) -> JobBatchCounts | None:
        """A batch's type, total and its jobs by state, in one statement."""
        rows = (await self._x.fetch("job_batch_counts", {"id": params.id})).dicts()
        if not rows:
            return None
        counts = {str(r["state"]): int(r["count"]) for r in rows if r["state"] is not None}
        return JobBatchCounts(params.id, str(rows[0]["type"]), int(rows[0]["total"]), counts)

    # -- cron ----------------------------------------------------------------------------

    async def cron_last_tick(self, params: CronNameParams) -> float | None:
        """The latest scheduled tick of a trigger (manual fires excluded)."""
        value = (await self._x.fetch("cron_last_tick", {"name": params.name})).scalar()
        return None if value is None else float(value)

    async def cron_recent(self, params: CronNameParams) -> list[CronTick]:
        """A trigger's newest ticks first."""
        rows = await self._x.fetch("cron_recent", {"name": params.name, "limit": params.limit})
        return rows.into(CronTick)

    # -- workers -------------------------------------------------------------------------

    async def worker_report(self, report: WorkerReport) -> None:
        """Upsert a worker's row (`last_seen` from the backend's clock)."""
        await self._x.fetch(
            "worker_report",
            {
                "id": report.id,
                "hostname": report.hostname,
                "pid": report.pid,
                "started_at": float(report.started_at),
                "stats_json": report.stats_json,
            },
        )

    async def worker_list(self, params: WorkerListParams) -> list[WorkerReport]:
        """Workers seen since `since`, oldest first."""
        rows = await self._x.fetch("worker_list", {"since": float(params.since)})
        return rows.into(WorkerReport)

    # -- once ----------------------------------------------------------------------------

    async def once_claim(self, params: OnceClaimParams) -> OnceClaim:
        """Claim `key`, or report its stored result, or that someone is running it.

        Two statements: the claim (an upsert whose conditions are on the key's row, so
        concurrent claimers are decided on its latest version) and, when another caller
        holds the key, a read of it as that caller committed it.
        """
        args = {"key": params.key, "owner": params.owner, "lease": float(params.lease_seconds)}
        if (await self._x.fetch("once_claim", args)).rows:
            return OnceClaim(OnceState.CLAIMED)
        found = (await self._x.fetch("once_get", args)).dicts()
        if found and found[0]["state"] == OnceState.DONE:
            return OnceClaim(OnceState.DONE, bytes(found[0]["result"]))
        return OnceClaim(OnceState.BUSY)

    async def once_finish(self, params: OnceFinishParams) -> None:
        """Store the result of `key` for `ttl` seconds."""
        await self._x.fetch(
            "once_finish",
            {
                "key": params.key,
                "owner": params.owner,
                "result": params.result,
                "ttl": float(params.ttl),
            },
        )

    async def once_abandon(self, params: OnceAbandonParams) -> None:
        """Give up the claim on `key` so another caller can run it."""
        await self._x.fetch("once_abandon", {"key": params.key, "owner": params.owner})

    # -- documents -----------------------------------------------------------------------

    async def doc_put_many(self, params: DocPutManyParams) -> None:
        """Upsert documents of one namespace in one statement (a repeated key: last wins)."""
        latest = dict(params.items)
        if not latest:
            return
        await self._x.fetch(
            "doc_put_many",
            {
                "namespace": params.namespace,
                "keys": list(latest),
                "doc_values": [v.decode() for v in latest.values()],
            },
        )

    async def doc_insert(self, params: DocInsertParams) -> bool:
        """Insert if absent (and under the namespace's limit)."""
        rows = await self._x.fetch("doc_insert", insert_args(params))
        return bool(rows.rows)

    async def doc_get(self, params: DocKeyParams) -> DocumentRecord | None:
        """One document, or None."""
        rows = await self._x.fetch("doc_get", {"namespace": params.namespace, "key": params.key})
        found = _documents(rows)
        return found[0] if found else None

    async def doc_list(self, params: DocListParams) -> list[DocumentRecord]:
        """A page of documents in key order."""
        rows = await self._x.fetch(
            "doc_list",
            {
                "namespace": params.namespace,
                "after": params.after,
                "prefix": params.prefix,
                "limit": params.limit,
            },
        )
        return _documents(rows)

    async def doc_delete(self, params: DocKeyParams) -> bool:
        """Delete one document; True if it existed."""
        rows = await self._x.fetch("doc_delete", {"namespace": params.namespace, "key": params.key})
        return bool(rows.rows)

    async def doc_count(self, params: DocNamespaceParams) -> int:
        """Documents in a namespace."""
        return int((await self._x.fetch("doc_count", {"namespace": params.namespace})).scalar())

    async def doc_namespaces(self) -> list[NamespaceCount]:
        """Namespaces holding documents, by name."""
        rows = await self._x.fetch("doc_namespaces", {})
        return [NamespaceCount(str(r[0]), int(r[1])) for r in rows.rows]


def insert_args(params: DocInsertParams) -> dict[str, Any]:
    """The parameters of `doc_insert` (a dialect that wraps it in a lock reuses them)."""
    return {
        "namespace": params.namespace,
        "key": params.key,
        "value": params.value.decode(),
        "max_count": params.max_count,
    }


def _documents(rows: Rows) -> list[DocumentRecord]:
    """Rows of (namespace, key, value, updated_at); the value text as encoded JSON."""
    return [
        DocumentRecord(str(r[0]), str(r[1]), str(r[2]).encode(), float(r[3])) for r in rows.rows
    ]
