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

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from ..encoding import JSON
from ..errors import InvalidMessage
from .base import (
    STATES,
    AttemptRecord,
    CancelRequestedParams,
    ClaimedMessage,
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
    FlowHold,
    FlowHoldParams,
    FlowJobHoldParams,
    FlowLimit,
    FlowStat,
    FlowStatsParams,
    JobAheadParams,
    JobAttemptsParams,
    JobBatchCounts,
    JobBatchCreateParams,
    JobBatchGetParams,
    JobBatchListParams,
    JobBatchSummary,
    JobBatchTotalParams,
    JobCount,
    JobCountParams,
    JobDeleteParams,
    JobEvent,
    JobEventsParams,
    JobFilter,
    JobProgressParams,
    JobSearchParams,
    JobSearchResult,
    LeaseExtendParams,
    MessageDeleteParams,
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
    QueueDeleteParams,
    QueueDepth,
    QueuePauseParams,
    QueuePurgeParams,
    ReadyInfo,
    ReadyInfoParams,
    ReleaseParams,
    StatsAddParams,
    StatsHistoryParams,
    StatsMinute,
    StatsPruneParams,
    WorkerListParams,
    WorkerReport,
)
from .rows import Rows

# No stored id holds a NUL (ids are generated; batch ids are checked names), and
# PostgreSQL text cannot even be compared with one: a lookup by such an id is "not
# found" on both backends, not a `StorageRejected` on one of them.
_NUL = "\x00"


def _could_be_stored(id: str) -> bool:
    return _NUL not in id


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


_ID = operator.attrgetter("id")
_PRIORITY = operator.attrgetter("priority")


def delivery_order(claimed: list[ClaimedMessage]) -> None:
    """Sort a claimed batch in place as it is delivered: highest priority first, then by
    id (no key function called per message: most batches have a single priority)."""
    claimed.sort(key=_ID)
    if len(set(map(_PRIORITY, claimed))) > 1:
        claimed.sort(key=_PRIORITY, reverse=True)  # stable: ids stay ordered within


def claimable(info: ReadyInfo, min_count: int, max_wait: float) -> bool:
    """Whether a claim with these batch conditions would take something now."""
    if info.paused or info.oldest_available_at is None:
        return False
    return info.ready_count >= min_count or info.oldest_available_at <= info.now - max_wait


def _lead(params: JobSearchParams) -> str:
    """The suffix of the statement whose index drives a filtered jobs list or count: a
    status is usually the narrower range (failed, pending, running are a small share of
    a large table), so it drives when both a status and a type are given."""
    if params.state is not None:
        return "_state"
    return "_type" if params.type is not None else ""


def _search_args(params: JobSearchParams) -> dict[str, Any]:
    """The bound values of the jobs-list statements: open ends of the time range and the
    cursor as infinities (always bound, so an index can seek), an inclusive upper time as
    the position just above it."""
    upper: tuple[float, str] = (math.inf, "")
    if params.created_to is not None:
        upper = (math.nextafter(params.created_to, math.inf), "")
    if params.before is not None and params.before < upper:
        upper = params.before
    return {
        "state": params.state,
        "type": params.type,
        "queue": params.queue,
        "created_from": -math.inf if params.created_from is None else params.created_from,
        "before_created": upper[0],
        "before_id": upper[1],
        "needle": None if params.text is None else params.text.encode(),
        "needle_text": params.text,
        "limit": params.limit,
        "scan_limit": params.scan_limit,
        "filter_scan_limit": params.filter_scan_limit,
        "count_limit": params.count_limit,
        "key": params.key,
    }


# Statistics rows travel as JSON arrays: minute, queue, processed, retried, failed,
# duration_sum, then the histogram (this many buckets, zero-filled).
STATS_BUCKETS = 14


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
        if not _could_be_stored(params.id):
            return None
        return (await self._x.fetch("message_get", {"id": params.id})).first(MessageRecord)

    async def message_delete_many(self, params: MessageDeleteParams) -> int:
        """Delete messages of a queue that no consumer holds."""
        if not params.ids:
            return 0
        rows = await self._x.fetch(
            "message_delete_many", {"queue": params.queue, "ids": list(params.ids)}
        )
        return rows.rowcount

    async def message_list(self, params: MessageListParams) -> list[MessageRecord]:
        """Messages of one queue, optionally of one state, oldest first."""
        after_created, after_id = params.after or (-math.inf, "")
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

    async def queue_rows(self, params: QueueCountsParams) -> list[QueueDepth]:
        """Stored queue rows (name, paused, settings), without counting anything."""
        return [
            QueueDepth(str(row[0]), bool(row[1]), settings_json=row[2])
            for row in (await self._x.fetch("queue_rows", {"queue": params.queue})).rows
        ]

    async def queue_depths(self, params: QueueCountsParams) -> list[QueueDepth]:
        """Stored queues, then each state's count read from that state's index, at most
        `count_limit` entries of each (`QueueDepth.capped` names those that hit it)."""
        found = {row.name: row for row in await self.queue_rows(params)}
        limit = params.count_limit
        rows = await self._x.fetch(
            "queue_depths", {"queue": params.queue, "count_limit": limit + 1}
        )
        for row in rows.dicts():
            depth = found.setdefault(row["queue"], QueueDepth(str(row["queue"])))
            # Counted up to limit + 1: one more than the limit means "more than it".
            depth.ready = int(row["ready"] or 0)
            depth.delayed = int(row["delayed"] or 0)
            depth.oldest_ready_at = None if row["oldest"] is None else float(row["oldest"])
            leased, failed = int(row["leased"] or 0), int(row["failed"] or 0)
            depth.leased, depth.failed = min(leased, limit), min(failed, limit)
            capped = set()
            if int(row["ready_seen"] or 0) > limit:
                capped |= {"ready", "delayed"}
            if leased > limit:
                capped.add("leased")
            if failed > limit:
                capped.add("failed")
            depth.capped = frozenset(capped)
        return [found[name] for name in sorted(found)]

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
        """Per-queue message counts by state (states with none left out), at most
        `count_limit` each (`QueueCounts.capped` names those that hit it), with settings
        and the oldest ready time."""
        limit = params.count_limit
        rows = await self._x.fetch(
            "queue_counts", {"queue": params.queue, "count_limit": limit + 1}
        )
        result = []
        for row in rows.dicts():
            counts: dict[str, int] = {}
            capped = set()
            for state in STATES:
                # Counted up to limit + 1: one more than the limit means "more than it".
                found = int(row[state] or 0)
                if found > limit:
                    capped.add(state)
                if found:
                    counts[state] = min(found, limit)
            oldest = row["oldest_ready_at"]
            result.append(
                QueueCounts(
                    name=str(row["name"]),
                    paused=bool(row["paused"]),
                    by_state=counts,
                    oldest_ready_at=None if oldest is None else float(oldest),
                    settings_json=row["settings"],
                    capped=frozenset(capped),
                )
            )
        return result

    async def queue_delete(self, params: QueueDeleteParams) -> int:
        """Delete a queue's messages, then its settings row (a retry after a crash between
        the two finishes the job)."""
        gone = (await self._x.fetch("queue_delete_messages", {"queue": params.queue})).rowcount
        await self._x.fetch("queue_delete", {"queue": params.queue})
        return gone

    async def queue_purge(self, params: QueuePurgeParams) -> int:
        """Delete the ready (undelivered) messages of a queue; leased ones are kept."""
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

    async def job_search(self, params: JobSearchParams) -> JobSearchResult:
        """Jobs matching the filters, newest first: by key, by payload text (a bounded
        window), or by the filters alone."""
        args = _search_args(params)
        if params.key is not None:
            rows = await self._x.fetch("job_find", args)
            found = [r for r in rows.into(MessageRecord) if _matches(r, params)]
            return JobSearchResult(found)
        if params.text is not None:
            rows = await self._x.fetch("job_search_text", args)
            records = rows.into(MessageRecord)
            scanned_to = None
            if len(records) < params.limit:
                end = (await self._x.fetch("job_search_window_end", args)).dicts()
                if end:
                    scanned_to = (float(end[0]["created_at"]), str(end[0]["id"]))
            return JobSearchResult(records, scanned_to)
        # Bounded: at most `filter_scan_limit` entries of the driving index per call.
        lead = _lead(params)
        window = args | {"scan_limit": params.filter_scan_limit}
        rows = await self._x.fetch(f"job_search_scan{lead}", window)
        records = rows.into(MessageRecord)
        scanned_to = None
        if len(records) < params.limit:
            end = (await self._x.fetch(f"job_search_scan_end{lead}", window)).dicts()
            if end:
                scanned_to = (float(end[0]["created_at"]), str(end[0]["id"]))
        return JobSearchResult(records, scanned_to)

    async def job_search_count(self, params: JobSearchParams) -> int:
        """How many jobs match, at most `count_limit` (a key search: at most one page;
        a payload text: among the newest `scan_limit` jobs only; else among the newest
        `filter_scan_limit` entries of the index that drives the filters)."""
        if params.key is not None:
            return min(len((await self.job_search(params)).records), params.count_limit)
        args = _search_args(JobSearchParams(**{**_fields(params), "before": None}))
        if params.text is not None:
            name = "job_search_count_text"
        else:
            name = f"job_search_count{_lead(params)}"
            args |= {"scan_limit": params.filter_scan_limit}
        return min(int((await self._x.fetch(name, args)).scalar() or 0), params.count_limit)

    async def job_ahead_count(self, params: JobAheadParams) -> int:
        """Ready jobs a pending job waits behind."""
        rows = await self._x.fetch(
            "job_ahead_count",
            {
                "queue": params.queue,
                "priority": params.priority,
                "available_at": params.available_at,
                "id": params.id,
                "count_limit": params.count_limit + 1,
            },
        )
        return int(rows.scalar() or 0)

    async def job_delete_many(self, params: JobDeleteParams) -> int:
        """Delete jobs with their history and idempotency keys."""
        if not params.ids:
            return 0
        return len(await self._x.fetch("job_delete_many", {"ids": list(params.ids)}))

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

    async def job_batch_list(self, params: JobBatchListParams) -> list[JobBatchSummary]:
        """The newest batches with their jobs counted by state, in one statement."""
        found: dict[str, JobBatchSummary] = {}
        args = {"limit": params.limit, "count_limit": params.count_limit}
        for r in (await self._x.fetch("job_batch_list", args)).dicts():
            entry = found.setdefault(
                r["id"],
                JobBatchSummary(
                    str(r["id"]), str(r["type"]), int(r["total"]), float(r["created_at"]), {}
                ),
            )
            if r["state"] is not None and r["count"]:
                entry.by_state[str(r["state"])] = int(r["count"])
        return list(found.values())

    async def job_batch_raise_total(self, params: JobBatchTotalParams) -> None:
        """Raise a batch's total (never lowers it)."""
        await self._x.fetch("job_batch_raise_total", {"id": params.id, "total": params.total})

    async def job_batch_counts(self, params: JobBatchGetParams) -> JobBatchCounts | None:
        """A batch's type, total and its jobs by state, in one statement."""
        if not _could_be_stored(params.id):
            return None
        rows = (await self._x.fetch("job_batch_counts", {"id": params.id})).dicts()
        if not rows:
            return None
        counts = {str(r["state"]): int(r["count"]) for r in rows if r["state"] is not None}
        return JobBatchCounts(params.id, str(rows[0]["type"]), int(rows[0]["total"]), counts)

    # -- flow control --------------------------------------------------------------------

    async def flow_hold(self, params: FlowHoldParams) -> None:
        """Hold rate-limit buckets (a 429's back-off) in one statement."""
        if params.buckets:
            await self._x.fetch(
                "flow_hold", {"buckets": list(params.buckets), "seconds": float(params.seconds)}
            )

    async def flow_stats(self, params: FlowStatsParams) -> list[FlowStat]:
        """Per-limit statistics in one statement."""
        if not params.limits:
            return []
        args = {"window": float(params.window), **limit_arrays(params.limits)}
        return (await self._x.fetch("flow_stats", args)).into(FlowStat)

    async def flow_job_hold(self, params: FlowJobHoldParams) -> list[FlowHold]:
        """The buckets holding a pending job back, and until when."""
        if not params.limits:
            return []
        args = {"id": params.id, **limit_arrays(params.limits)}
        return (await self._x.fetch("flow_job_hold", args)).into(FlowHold)

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

    async def worker_gone(self, worker_id: str) -> None:
        """Mark a cleanly stopped worker's row stopped (`"stopped": true` in its stats): no
        longer alive, while its counters keep counting in the totals."""
        await self._x.fetch("worker_gone", {"id": worker_id})

    async def worker_list(self, params: WorkerListParams) -> list[WorkerReport]:
        """Workers seen since `since`, oldest first."""
        rows = await self._x.fetch("worker_list", {"since": float(params.since)})
        return rows.into(WorkerReport)

    # -- statistics history --------------------------------------------------------------

    async def stats_add(self, params: StatsAddParams) -> None:
        """Add per-minute deltas to the stored minutes."""
        rows = []
        for m in params.minutes:
            histogram = list(m.histogram[:STATS_BUCKETS])
            histogram += [0] * (STATS_BUCKETS - len(histogram))
            rows.append(
                [m.minute, m.queue, m.processed, m.retried, m.failed, m.duration_sum, *histogram]
            )
        if rows:
            await self._x.fetch("stats_add", {"rows": orjson.dumps(rows).decode()})

    async def stats_history(self, params: StatsHistoryParams) -> list[StatsMinute]:
        """Stored minutes since `since`, oldest first."""
        rows = await self._x.fetch(
            "stats_history",
            {"since": float(params.since), "queue": params.queue, "step": int(params.step)},
        )
        return [
            StatsMinute(
                int(r[0]),
                str(r[1]),
                int(r[2]),
                int(r[3]),
                int(r[4]),
                float(r[5]),
                tuple(int(v) for v in r[6:]),
            )
            for r in rows.rows
        ]

    async def stats_prune(self, params: StatsPruneParams) -> int:
        """Delete minutes before `before`."""
        return (await self._x.fetch("stats_prune", {"before": float(params.before)})).rowcount

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


def _fields(params: JobSearchParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}


def _matches(record: MessageRecord, params: JobSearchParams) -> bool:
    """Whether a job found by key also passes the other filters."""
    return (
        (params.state is None or record.state == params.state)
        and (params.type is None or record.type == params.type)
        and (params.queue is None or record.queue == params.queue)
        and (params.created_from is None or record.created_at >= params.created_from)
        and (params.created_to is None or record.created_at <= params.created_to)
        and (params.text is None or payload_contains(record, params.text))
    )


def payload_contains(record: MessageRecord, text: str) -> bool:
    """Whether `text` is in the stored body, or (a JSON body) in one of its strings or
    keys as they read unescaped: what the `job_search_text` statements decide."""
    body = bytes(record.body)
    if text.encode() in body:
        return True
    if record.content_type != JSON:
        return False
    pending: list[Any] = [orjson.loads(body)]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if text in value:
                return True
        elif isinstance(value, dict):
            if any(text in key for key in value):
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
