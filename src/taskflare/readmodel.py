"""One read model for every reader: the HTTP API, the CLI, `/metrics` and the dashboard.

It shapes what is stored (queues, messages, dead letters, jobs, batches, cron triggers,
workers, statistics) into the JSON documents the surfaces show, so the same numbers
appear everywhere and a new surface needs no query of its own. It reads through the
app's storage handle and knows the app's declarations, but imports no web or terminal
library.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .backends.base import (
    AttemptRecord,
    Backend,
    CronNameParams,
    FlowJobHoldParams,
    FlowLimit,
    FlowStatsParams,
    JobAheadParams,
    JobAttemptsParams,
    JobBatchGetParams,
    JobBatchListParams,
    JobCountParams,
    JobDeleteParams,
    JobEvent,
    JobEventCursor,
    JobEventsParams,
    JobSearchParams,
    MessageDeleteParams,
    MessageGetParams,
    MessageListParams,
    MessageRecord,
    QueueCounts,
    QueueCountsParams,
    QueueDepth,
    State,
    StatsHistoryParams,
    StatsMinute,
    WorkerListParams,
    WorkerReport,
)
from .encoding import JSON, TEXT
from .errors import DatabaseNotFound, InvalidQuery, TaskflareError, UnknownQueue
from .job_client import JobClient, decode_cursor, encode_cursor, parse_status
from .jobs import Job, JobAttempt, JobBatch, JobPage, JobStatus
from .messages import timestamp_from_epoch
from .registry import JOBS, MESSAGES, Registry
from .storage import Storage
from .text import SURROGATE, check_text

# Upper bounds [s] of the stored duration histogram (the worker's DURATION_BUCKETS; the
# last stored bucket is above all of them).
HISTORY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A jobs search examines at most this many jobs per page when it looks inside payloads.
TEXT_SCAN_LIMIT = 5_000
# A jobs list filtered by status, type, queue or time examines at most this many entries
# of the index that drives it per page (the status index, else the type index, else the
# creation index): a combination that matches almost nothing stops there and offers to
# go on ("searched the newest 10 000 jobs") instead of walking a million entries.
FILTER_SCAN_LIMIT = 10_000
# Counts of a queue's messages by state, and of the jobs ahead of a pending one, stop
# here ("more than 10 000"): a count of a million rows cannot be fast.
COUNT_LIMIT = 10_000
# The count a bulk action shows before it runs ("1 000+") looks into at most this many
# + 1 entries of the index that drives its filter, so a filter that matches almost
# nothing costs that, not a walk of the whole index (the planner cannot tell, and a
# status index entry costs a table visit on PostgreSQL until VACUUM); the action itself
# goes through every match anyway.
BULK_COUNT_LIMIT = 1_000
# The batches page: the newest this many batches, each status counted up to this many
# ("more than 500"), so a refresh reads at most 10 x 5 x 501 index entries whatever the
# batches hold.
BATCH_PAGE = 10
BATCH_COUNT_LIMIT = 500
BATCH_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
# A worker that has not reported for this long is no longer counted as alive [s].
WORKER_ALIVE_SECONDS = 30.0
# Reports older than this are ignored altogether [s].
REPORT_WINDOW_SECONDS = 7 * 86_400.0
DEPTH_STATES = (State.READY, State.LEASED, State.FAILED)


def is_alive(report: WorkerReport, stats: dict[str, Any], now: float) -> bool:
    """A worker is alive while it reports, until it stopped cleanly (`stopped` in its
    stats, set by `worker_gone`) or its last report is older than WORKER_ALIVE_SECONDS."""
    return not stats.get("stopped") and now - report.last_seen <= WORKER_ALIVE_SECONDS


CONSUMER_KINDS = {MESSAGES: "worker", JOBS: "jobs"}


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with a Z."""
    if epoch is None:
        return None
    return timestamp_from_epoch(epoch).isoformat().replace("+00:00", "Z")


def render_body(record: MessageRecord) -> Any:
    """A stored body for admin JSON: JSON as is, text as a string, bytes (and pickle)
    base64."""
    if record.content_type == JSON:
        try:
            return orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return base64.b64encode(record.body).decode()
    if record.content_type == TEXT:
        return bytes(record.body).decode("utf-8", "replace")
    return base64.b64encode(record.body).decode()


def message_dict(record: MessageRecord) -> dict[str, Any]:
    """A stored message for admin JSON."""
    return {
        "id": record.id,
        "queue": record.queue,
        "state": record.state,
        "body": render_body(record),
        "contentType": record.content_type,
        "attempts": record.attempts,
        "createdAt": iso(record.created_at),
        "availableAt": iso(record.available_at),
        "lastError": record.last_error,
        "originQueue": record.origin_queue,
        "originId": record.origin_id,
        "originAttempts": record.origin_attempts,
    }


def rate(part: int, total: int) -> str:
    """A percentage as the job service shows it: `"92.00%"`."""
    return f"{(part / total * 100) if total else 0.0:.2f}%"


def job_summary(counts: Mapping[str, int]) -> dict[str, Any]:
    """Job totals by status with completion and failure rates."""
    total = sum(counts.values())
    summary: dict[str, Any] = {"total": total}
    for status in JobStatus:
        summary[status.value] = counts.get(status.value, 0)
    summary["completionRate"] = rate(summary["completed"], total)
    summary["failureRate"] = rate(summary["failed"], total)
    return summary


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Stored messages as admin JSON, and the cursor of the next page (None: the last)."""

    messages: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobQuery:
    """What the jobs page asks for: every field optional. `created_from`/`created_to` are
    epoch seconds; `text` is looked for inside payloads; `key` is a job id, idempotency
    key, correlation id or batch id."""

    status: str | None = None
    type: str | None = None
    queue: str | None = None
    created_from: float | None = None
    created_to: float | None = None
    text: str | None = None
    key: str | None = None

    def params(self, limit: int = 50, cursor: str | None = None) -> JobSearchParams:
        """The storage filter; `ValueError` for a bad status or cursor."""
        state = None if self.status is None else parse_status(self.status).to_state()
        return JobSearchParams(
            state=state,
            type=self.type,
            queue=self.queue,
            created_from=self.created_from,
            created_to=self.created_to,
            text=self.text,
            key=self.key,
            limit=limit,
            before=None if cursor is None else decode_cursor(cursor),
            scan_limit=TEXT_SCAN_LIMIT,
            filter_scan_limit=FILTER_SCAN_LIMIT,
        )


@dataclass(frozen=True, slots=True)
class JobSearchPage:
    """A page of matching jobs (without their history) and the cursor of the next page;
    `partial`: the search stopped after examining its window (`TEXT_SCAN_LIMIT` jobs for
    a payload text, else `FILTER_SCAN_LIMIT` index entries) before the page was full; the
    cursor then is the last job examined, and the next page goes on with older jobs."""

    jobs: list[Job]
    next_cursor: str | None
    partial: bool = False


@dataclass(frozen=True, slots=True)
class WorkerCounters:
    """Every reporting worker's counters summed per counter and queue, and their current
    rates [per second] (each worker measures its own over its report interval)."""

    totals: dict[str, dict[str, float]]
    rates: dict[str, dict[str, float]]
    histogram_buckets: list[float]
    histogram: dict[str, list[float]]
    histogram_sum: dict[str, float]
    alive: int


class ReadModel:
    """Reads and shapes stored state for every surface."""

    def __init__(self, registry: Registry, storage: Storage, jobs: JobClient) -> None:
        self._registry = registry
        self._storage = storage
        self._jobs = jobs

    # -- queues ---------------------------------------------------------------------------

    async def queues(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every queue (declared or holding messages) with its depth by state, oldest
        pending age, pause flag, settings and consumer kind; or just `name`
        (`UnknownQueue` if it is neither declared nor stored). Each state's count stops at
        `COUNT_LIMIT`; `depthCapped` lists the states that reached it ("more than")."""
        _refuse_a_name_no_queue_has(name)
        backend = await self._storage.backend()
        counted = await backend.queue_counts(QueueCountsParams(name, count_limit=COUNT_LIMIT))
        rows = {c.name: c for c in counted}
        for declared in self._registry.queues:
            if name is None or declared == name:
                rows.setdefault(declared, QueueCounts(name=declared, paused=False))
        if name is not None and name not in rows:
            raise UnknownQueue(f"no queue named {name!r}")
        now = time.time()
        return [self.queue_dict(rows[n], now) for n in sorted(rows)]

    async def queue_depths(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every queue (declared, stored or holding messages), or just `name`: ready now,
        delayed (a delay, a run_at ahead, a retry waiting out its backoff), leased, failed,
        oldest ready age [s], paused, settings, dead-letter queue and its depth. Counts
        only unfinished and failed rows, from their indexes, and at most `COUNT_LIMIT` of
        each state per queue: `capped` lists the counts that reached it ("more than
        10 000"; ready and delayed together, and the oldest ready age then is that of the
        oldest 10 000). The dashboard's live view (`queues()` also counts finished ones)."""
        _refuse_a_name_no_queue_has(name)
        backend = await self._storage.backend()
        found = {
            d.name: d
            for d in await backend.queue_depths(QueueCountsParams(name, count_limit=COUNT_LIMIT))
        }
        for declared in self._registry.queues:
            if name is None or declared == name:
                found.setdefault(declared, QueueDepth(declared))
        now = time.time()
        rows: list[dict[str, Any]] = []
        for queue_name in sorted(found):
            depth = found[queue_name]
            declared_queue = self._registry.queues.get(queue_name)
            settings = orjson.loads(depth.settings_json) if depth.settings_json else None
            if declared_queue is not None:
                settings = orjson.loads(declared_queue.config.to_json())
            age = None
            if depth.oldest_ready_at is not None:
                age = round(max(now - depth.oldest_ready_at, 0.0), 3)
            rows.append(
                {
                    "name": queue_name,
                    "paused": depth.paused,
                    "ready": depth.ready,
                    "delayed": depth.delayed,
                    "leased": depth.leased,
                    "failed": depth.failed,
                    "oldestReadyAgeSeconds": age,
                    "capped": sorted(depth.capped),
                    "settings": settings,
                    "deadLetterQueue": (settings or {}).get("dead_letter_queue"),
                    "consumer": None
                    if declared_queue is None
                    else CONSUMER_KINDS.get(declared_queue.kind or ""),
                }
            )
        by_name = {d.name: d for d in found.values()}
        for row in rows:
            dlq = by_name.get(str(row["deadLetterQueue"] or ""))
            row["deadLetterDepth"] = None if dlq is None else dlq.ready + dlq.delayed
            row["deadLetterCapped"] = dlq is not None and "ready" in dlq.capped
        return rows

    async def queue(self, name: str) -> dict[str, Any]:
        """One queue, as `queues` shows it."""
        return (await self.queues(name))[0]

    def queue_dict(self, counts: QueueCounts, now: float) -> dict[str, Any]:
        """A queue's JSON: depth by state, oldest pending age, pause flag, settings."""
        declared = self._registry.queues.get(counts.name)
        settings = orjson.loads(counts.settings_json) if counts.settings_json else None
        if declared is not None:
            settings = orjson.loads(declared.settings_json())
        age = None
        if counts.oldest_ready_at is not None:
            age = round(max(now - counts.oldest_ready_at, 0.0), 3)
        depth = {str(s): counts.by_state.get(s, 0) for s in DEPTH_STATES}
        depth |= {k: v for k, v in counts.by_state.items() if k not in depth}
        return {
            "name": counts.name,
            "paused": counts.paused,
            "depth": depth,
            "depthCapped": sorted(counts.capped),
            "oldestPendingAgeSeconds": age,
            "settings": settings,
            # "worker": a batch consumer run by taskflare workers; "jobs": job types.
            "consumer": None if declared is None else CONSUMER_KINDS.get(declared.kind or ""),
        }

    async def dead_letter_queue(self, name: str) -> str | None:
        """Where the dead letters of queue `name` are: its `dead_letter_queue` (declared,
        else from its stored settings), or `name` itself when it is some queue's
        dead-letter queue; None when it has none (`UnknownQueue` if it is not known)."""
        declared = self._registry.dead_letter_queue_of(name)
        if declared is None and name not in self._registry.queues:
            settings = (await self.queue(name))["settings"] or {}
            declared = settings.get("dead_letter_queue")
        if declared:
            return str(declared)
        return name if await self.queues_dead_lettering_into(name) else None

    async def not_dead_letters(
        self, dlq: str, ids: Sequence[str], origin: str | None = None
    ) -> list[str]:
        """The ids of `ids` that are not messages waiting in dead-letter queue `dlq`
        (with `origin`: not dead letters of that queue; a dead-letter queue may serve
        several queues)."""
        backend = await self._storage.backend()
        missing = []
        for message_id in dict.fromkeys(ids):
            record = await backend.message_get(MessageGetParams(message_id))
            if (
                record is None
                or record.queue != dlq
                or record.state != "ready"
                or (origin is not None and record.origin_queue != origin)
            ):
                missing.append(message_id)
        return missing

    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        """Every queue's settings (declared, else as stored), counting nothing."""
        backend = await self._storage.backend()
        found = {
            row.name: orjson.loads(row.settings_json) if row.settings_json else {}
            for row in await backend.queue_rows(QueueCountsParams())
        }
        for name, declared in self._registry.queues.items():
            found[name] = orjson.loads(declared.settings_json())
        return found

    async def queues_dead_lettering_into(self, name: str) -> list[str]:
        """The queues whose `dead_letter_queue` is `name` (declared or stored)."""
        return sorted(
            queue
            for queue, settings in (await self.queue_settings()).items()
            if settings.get("dead_letter_queue") == name
        )

    async def no_dead_letter_queue(self, name: str) -> str:
        """Why queue `name` has no dead letters to show: it has no `dead_letter_queue`,
        and, when it is one itself, the queues it serves (whose name to give instead)."""
        served = await self.queues_dead_lettering_into(name)
        hint = f" (it is the dead-letter queue of {', '.join(map(repr, served))})" if served else ""
        return f"queue {name!r} has no dead_letter_queue{hint}"

    async def messages(
        self, queue: str, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """A queue's stored messages, oldest first, as admin JSON."""
        return (await self.message_page(queue, state, limit)).messages

    async def message_page(
        self, queue: str, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> MessagePage:
        """One page of a queue's stored messages, oldest first; pass `next_cursor` back
        for the next. `ValueError` for a cursor that is not one of ours."""
        after = None if cursor is None else decode_cursor(cursor)
        backend = await self._storage.backend()
        records = await backend.message_list(MessageListParams(queue, state, limit + 1, after))
        page, more = records[:limit], len(records) > limit
        last = page[-1] if page else None
        next_cursor = encode_cursor(last.created_at, last.id) if more and last else None
        return MessagePage([message_dict(r) for r in page], next_cursor)

    async def message(self, message_id: str) -> dict[str, Any] | None:
        """One stored message as admin JSON, or None."""
        backend = await self._storage.backend()
        record = await backend.message_get(MessageGetParams(message_id))
        return None if record is None else message_dict(record)

    # -- jobs -----------------------------------------------------------------------------

    async def job(self, job_id: str) -> Job | None:
        """One job with its history."""
        return await self._jobs.get_job(job_id)

    async def job_when_finished(self, job_id: str, timeout: float | None) -> Job:
        """The job once it has finished, or as it stands after `timeout` seconds (None:
        for ever). A long poll that wakes on the backend's change signal; `JobNotFound`
        if unknown."""
        return await self._jobs.wait_finished(job_id, timeout)

    async def jobs(
        self,
        *,
        status: str | JobStatus | None = None,
        type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Jobs newest first (each with its history), filtered, paged by cursor: the
        jobs list's bounded search (`job_search`), so a page examines at most
        `FILTER_SCAN_LIMIT` jobs; `partial` then says it stopped there with fewer than
        `limit` jobs, and `next_cursor` goes on with older ones. `ValueError` for a bad
        status, limit (1..1000), type, queue or cursor."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidQuery(f"limit must be 1..1000, got {limit!r}", fields=("limit",))
        for label, value in (("type", type), ("queue", queue)):
            if value is not None:
                check_text(value, label, max_length=200)
        status_text = None if status is None else parse_status(status).value
        query = JobQuery(status=status_text, type=type, queue=queue)
        found = await self.job_search(query, limit, cursor)
        histories: dict[str, list[JobAttempt]] = {}
        if found.jobs:
            backend = await self._storage.backend()
            ids = [j.id for j in found.jobs]
            for attempt in await backend.job_attempts(JobAttemptsParams(ids)):
                histories.setdefault(attempt.job_id, []).append(JobAttempt.from_record(attempt))
        for job in found.jobs:
            job.history = tuple(histories.get(job.id, ()))
        return JobPage(found.jobs, found.next_cursor, found.partial)

    async def job_stats(self, queue: str | None = None, type: str | None = None) -> dict[str, Any]:
        """Job totals by status with `completionRate` and `failureRate` (the job service's
        shape), overall and per queue and type."""
        backend = await self._storage.backend()
        rows = await backend.job_counts(JobCountParams(queue, type))
        overall: dict[str, int] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_type: dict[str, dict[str, int]] = {}
        for row in rows:
            status = JobStatus.from_state(row.state).value
            for bucket in (
                overall,
                by_queue.setdefault(row.queue, {}),
                by_type.setdefault(row.type, {}),
            ):
                bucket[status] = bucket.get(status, 0) + row.count
        result = job_summary(overall)
        result["byQueue"] = {name: job_summary(c) for name, c in sorted(by_queue.items())}
        result["byType"] = {name: job_summary(c) for name, c in sorted(by_type.items())}
        return result

    async def job_counts(self) -> list[dict[str, Any]]:
        """Jobs counted by queue, type and status."""
        backend = await self._storage.backend()
        rows = await backend.job_counts(JobCountParams())
        return [
            {
                "queue": r.queue,
                "type": r.type,
                "status": JobStatus.from_state(r.state).value,
                "count": r.count,
            }
            for r in rows
        ]

    async def job_batch(self, batch_id: str) -> JobBatch | None:
        """Counts and progress of a batch made by `enqueue_many`; None if unknown."""
        backend = await self._storage.backend()
        found = await backend.job_batch_counts(JobBatchGetParams(batch_id))
        if found is None:
            return None
        counts = found.by_state
        return JobBatch(
            id=batch_id,
            type=found.type,
            total=found.total,
            pending=counts.get(State.READY, 0),
            processing=counts.get(State.LEASED, 0),
            completed=counts.get(State.COMPLETED, 0),
            failed=counts.get(State.FAILED, 0),
            cancelled=counts.get(State.CANCELLED, 0),
        )

    async def job_events(self, cursor: JobEventCursor, limit: int = 500) -> list[JobEvent]:
        """Job events (enqueued, started, each attempt's outcome) after `cursor`."""
        backend = await self._storage.backend()
        return await backend.job_events(JobEventsParams(cursor, limit))

    async def job_event_start(self) -> JobEventCursor:
        """A cursor that follows events from now on."""
        backend = await self._storage.backend()
        now = time.time()
        return JobEventCursor(now, now, await backend.job_attempt_seq())

    async def job_search(
        self, query: JobQuery, limit: int = 50, cursor: str | None = None
    ) -> JobSearchPage:
        """One page of the jobs matching `query`, newest first (histories not loaded).
        `ValueError` for a bad status or cursor."""
        backend = await self._storage.backend()
        found = await backend.job_search(query.params(limit + 1, cursor))
        records = found.records[:limit]
        jobs = [Job.from_record(r, handle=self._jobs) for r in records]
        if len(found.records) > limit and records:
            return JobSearchPage(jobs, encode_cursor(records[-1].created_at, records[-1].id))
        if found.scanned_to is not None:
            return JobSearchPage(jobs, encode_cursor(*found.scanned_to), partial=True)
        return JobSearchPage(jobs, None)

    async def job_search_count(self, query: JobQuery, limit: int = BULK_COUNT_LIMIT) -> int:
        """How many jobs match `query` (what a bulk action on "all that match" covers),
        counting at most `limit` + 1: a result above `limit` means "more than `limit`".
        Only the newest `limit` + 1 entries of the index that drives the filters are
        looked into (so a filter that matches almost nothing costs that, not a walk of
        the whole index); with a payload text, the newest `TEXT_SCAN_LIMIT` jobs (the
        search page's window). `job_search_count_complete` says whether that was all."""
        backend = await self._storage.backend()
        params = query.params()
        return await backend.job_search_count(
            JobSearchParams(
                **{
                    **_params_fields(params),
                    "count_limit": limit + 1,
                    "filter_scan_limit": limit + 1,
                }
            )
        )

    async def job_search_count_complete(
        self, query: JobQuery, limit: int = BULK_COUNT_LIMIT
    ) -> bool:
        """Whether `job_search_count(query, limit)` looked at every job it could match:
        when the range it looked into (the status's jobs, else the type's, else all, in
        the time range; for a payload text the search window) holds no more jobs than
        it looks at (one capped count of that range's index); a key search always."""
        if query.key is not None:
            return True
        backend = await self._storage.backend()
        if query.text is not None:
            bare = JobQuery(created_from=query.created_from, created_to=query.created_to)
            window = TEXT_SCAN_LIMIT
        else:
            driving = {"status": query.status} if query.status else {"type": query.type}
            bare = JobQuery(created_from=query.created_from, created_to=query.created_to, **driving)
            window = limit
        params = JobSearchParams(
            **{
                **_params_fields(bare.params()),
                "count_limit": window + 1,
                "filter_scan_limit": window + 1,
            }
        )
        return await backend.job_search_count(params) <= window

    async def job_delete(self, ids: list[str]) -> int:
        """Delete jobs with their history; return how many were deleted."""
        backend = await self._storage.backend()
        return await backend.job_delete_many(JobDeleteParams(ids))

    async def message_delete(self, queue: str, ids: list[str]) -> int:
        """Delete messages of a queue that no consumer holds; return how many."""
        backend = await self._storage.backend()
        return await backend.message_delete_many(MessageDeleteParams(queue, ids))

    async def pending_reasons(self, job: Job) -> list[str]:
        """Why a pending job is not running yet, in words (empty for other statuses):
        scheduled for later (or snoozed), queue paused, no live worker serves its queue,
        behind N jobs, waiting on a rate or concurrency limit."""
        if job.status is not JobStatus.PENDING:
            return []
        reasons = []
        now = time.time()
        run_at = job.run_at.timestamp()
        if run_at > now:
            reasons.append(
                f"scheduled for later: it runs at {iso(run_at)} (in {_duration(run_at - now)})"
            )
        queue = (await self.queue_depths(job.queue) or [{"paused": False}])[0]
        if queue["paused"]:
            reasons.append(f"queue {job.queue!r} is paused")
        serving = [w for w in await self.workers() if w["alive"] and _serves(w, job.queue)]
        if not serving:
            reasons.append(f"no live worker serves queue {job.queue!r}")
        backend = await self._storage.backend()
        ahead = await backend.job_ahead_count(
            JobAheadParams(job.queue, job.priority, run_at, job.id, COUNT_LIMIT)
        )
        if ahead:
            count = f"more than {COUNT_LIMIT:,}".replace(",", " ") if ahead > COUNT_LIMIT else ahead
            reasons.append(
                f"behind {count} ready job{'s' if ahead != 1 else ''} of higher priority "
                "or ready earlier on its queue"
            )
        declared = self._registry.queues.get(job.queue)
        if declared is None or declared.flow_limits():  # limits may hold it: ask the store
            reasons.extend(_hold_reasons(await self.job_hold(job)))
        if not reasons:
            reasons.append("nothing holds it back: it starts when a worker has a free slot")
        return reasons

    async def job_history(self, job_id: str) -> tuple[JobAttempt, ...]:
        """Every attempt of a job, first first."""
        backend = await self._storage.backend()
        attempts = await backend.job_attempts(JobAttemptsParams([job_id]))
        return tuple(JobAttempt.from_record(a) for a in attempts)

    async def batches(
        self, limit: int = BATCH_PAGE, count_limit: int = BATCH_COUNT_LIMIT
    ) -> list[dict[str, Any]]:
        """The newest `limit` batches made by `enqueue_many` with progress and counts by
        status, each count stopped at `count_limit`: `capped` lists the statuses that
        reached it ("more than"); `progress` then comes from the unfinished jobs (pending
        and processing), and is None when one of those is capped."""
        backend = await self._storage.backend()
        result = []
        listed = await backend.job_batch_list(JobBatchListParams(limit, count_limit + 1))
        for found in listed:
            counts = found.by_state
            batch = JobBatch(
                id=found.id,
                type=found.type,
                total=found.total,
                pending=counts.get(State.READY, 0),
                processing=counts.get(State.LEASED, 0),
                completed=counts.get(State.COMPLETED, 0),
                failed=counts.get(State.FAILED, 0),
                cancelled=counts.get(State.CANCELLED, 0),
            )
            shown = batch.to_dict() | {"createdAt": iso(found.created_at), "capped": []}
            capped = [s for s in BATCH_STATUSES if shown[s] > count_limit]
            if capped:
                for status in capped:
                    shown[status] = count_limit
                unfinished = batch.pending + batch.processing
                left = found.total - unfinished
                shown["capped"] = capped
                shown["progress"] = (
                    None
                    if {"pending", "processing"} & set(capped)
                    else round(left / found.total, 4)
                    if found.total
                    else 1.0
                )
            result.append(shown)
        return result

    # -- history --------------------------------------------------------------------------

    async def history(
        self, seconds: float = 3600.0, step: int = 60, queue: str | None = None
    ) -> dict[str, Any]:
        """Per queue, one point per `step` seconds over the last `seconds`: processed and
        failed per minute, p50 and p95 handler duration [s] (None without calls), from
        the history the workers store each minute; of every queue, or just `queue`."""
        backend = await self._storage.backend()
        now = time.time()
        start = int((now - seconds) // step * step)
        rows = await backend.stats_history(StatsHistoryParams(start, queue, step))
        slots = int((now - start) // step) + 1
        series: dict[str, list[StatsMinute | None]] = {}
        for row in rows:
            index = int((row.minute - start) // step)
            if not 0 <= index < slots:
                continue
            points = series.setdefault(row.queue, [None] * slots)
            points[index] = _merge(points[index], row)
        per_minute = 60.0 / step
        return {
            "start": start,
            "step": step,
            "queues": {
                queue: [_point(p, per_minute) for p in points]
                for queue, points in sorted(series.items())
            },
        }

    # -- cron -----------------------------------------------------------------------------

    async def cron_detail(self, upcoming: int = 5, recent: int = 10) -> list[dict[str, Any]]:
        """`cron()` plus each trigger's expression in words, next `upcoming` runs and its
        `recent` ticks (enqueued, manual or skipped) with the job's outcome and duration."""
        from cron_descriptor import (  # type: ignore[import-untyped]
            Options,
            get_description,
        )

        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        backend = await self._storage.backend()
        rows = await self.cron(upcoming)
        ticks = {
            row["name"]: await backend.cron_recent(CronNameParams(row["name"], recent))
            for row in rows
        }
        job_ids = [t.job_id for found in ticks.values() for t in found if t.job_id]
        outcomes: dict[str, AttemptRecord] = {}
        for record in await backend.job_attempts(JobAttemptsParams(job_ids)) if job_ids else []:
            outcomes[record.job_id] = record  # the last attempt wins
        for row in rows:
            try:
                words = get_description(row["cron"], options)
            except Exception:  # a valid taskflare expression the describer cannot read
                words = row["cron"]
            row["description"] = f"{words} ({row['tz']})"
            row["recent"] = []
            for tick in ticks[row["name"]]:
                attempt: AttemptRecord | None = outcomes.get(tick.job_id or "")
                duration = None
                if attempt is not None and attempt.started_at and attempt.finished_at:
                    duration = round(attempt.finished_at - attempt.started_at, 3)
                status = tick.status
                if tick.job_id:
                    status = attempt.outcome if attempt is not None else "pending"
                row["recent"].append(
                    {
                        "scheduledTime": iso(tick.tick),
                        "kind": tick.status,
                        "status": status,
                        "jobId": tick.job_id,
                        "durationSeconds": duration,
                    }
                )
        return rows

    async def cron(self, upcoming: int = 3) -> list[dict[str, Any]]:
        """One row per trigger: expression, zone, queue, next runs, last run's outcome
        (`last` None: never ran, as for every trigger while there is no database yet,
        for an App that does not create one)."""
        triggers = list(self._registry.cron_triggers.values())
        try:
            backend = await self._storage.backend()
            lasts = {t.name: await self._last_run(backend, t.name) for t in triggers}
        except DatabaseNotFound:
            lasts = {}
        now = datetime.now(UTC)
        return [
            {
                "name": trigger.name,
                "cron": trigger.schedule.expression,
                "tz": trigger.schedule.tz,
                "queue": trigger.queue,
                "next": [t.isoformat() for t in trigger.schedule.upcoming(now, upcoming)],
                "last": lasts.get(trigger.name),
            }
            for trigger in triggers
        ]

    async def _last_run(self, backend: Backend, name: str) -> dict[str, Any] | None:
        """The latest tick of trigger `name` and its job's outcome, or None."""
        recent = await backend.cron_recent(CronNameParams(name, 1))
        if not recent:
            return None
        tick = recent[0]
        outcome = tick.status
        if tick.job_id:
            record = await backend.message_get(MessageGetParams(tick.job_id))
            outcome = JobStatus.from_state(record.state).value if record else "pruned"
        return {
            "scheduledTime": datetime.fromtimestamp(tick.tick, UTC).isoformat(),
            "outcome": outcome,
            "jobId": tick.job_id,
        }

    # -- workers --------------------------------------------------------------------------

    async def worker_reports(self) -> list[WorkerReport]:
        """Every worker that reported within the report window."""
        backend = await self._storage.backend()
        return await backend.worker_list(WorkerListParams(time.time() - REPORT_WINDOW_SECONDS))

    async def workers(self) -> list[dict[str, Any]]:
        """Every worker that reported recently: host, pid, queues, concurrency, work in
        flight, start and last report; `alive` False once it is stale."""
        now = time.time()
        result = []
        for report in await self.worker_reports():
            stats = orjson.loads(report.stats_json)
            info = stats.get("worker") or {}
            result.append(
                {
                    "id": report.id,
                    "hostname": report.hostname,
                    "pid": report.pid,
                    "queues": info.get("queues"),
                    "concurrency": info.get("concurrency"),
                    "inFlight": info.get("inFlight"),
                    "startedAt": iso(report.started_at),
                    "lastSeen": iso(report.last_seen),
                    "secondsSinceReport": round(max(now - report.last_seen, 0.0), 1),
                    "alive": is_alive(report, stats, now),
                }
            )
        return result

    async def worker_counters(self) -> WorkerCounters:
        """Counters, rates and handler-duration histograms summed over every worker."""
        reports = await self.worker_reports()
        now = time.time()
        totals: dict[str, dict[str, float]] = {}
        rates: dict[str, dict[str, float]] = {}
        buckets: list[float] = []
        histogram: dict[str, list[float]] = {}
        sums: dict[str, float] = {}
        alive = 0
        for report in reports:
            stats = orjson.loads(report.stats_json)
            live = is_alive(report, stats, now)
            alive += live
            _add(totals, stats.get("counters", {}))
            if live:
                _add(rates, stats.get("rates", {}))
            durations = stats.get("durations", {})
            buckets = durations.get("buckets", buckets)
            for queue, values in durations.get("counts", {}).items():
                acc = histogram.setdefault(queue, [0.0] * len(values))
                for i, value in enumerate(values):
                    acc[i] += value
            for queue, value in durations.get("sum", {}).items():
                sums[queue] = sums.get(queue, 0.0) + value
        return WorkerCounters(totals, rates, buckets, histogram, sums, alive)

    async def database_problem(self, timeout: float) -> str | None:
        """None when the database answers one cheap read of this app's schema within
        `timeout` seconds; else why not, for the log (it may name the database)."""
        try:
            backend = await asyncio.wait_for(self._storage.backend(), timeout)
            await asyncio.wait_for(backend.ping(), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except TaskflareError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    async def stats(self) -> dict[str, Any]:
        """Everything `taskflare stats` shows: queues with their processing rate, job
        totals, live workers, flow limits (field names as in the HTTP API)."""
        counters = await self.worker_counters()
        acked = counters.rates.get("acked", {})
        queues = [
            q | {"processedPerSecond": round(acked.get(q["name"], 0.0), 3)}
            for q in await self.queues()
        ]
        return {
            "queues": queues,
            "jobs": await self.job_stats(),
            "workers": counters.alive,
            "limits": await self.limits(),
        }

    # -- flow control ---------------------------------------------------------------------

    async def flow_limits(self) -> dict[str, tuple[FlowLimit, ...]]:
        """Every queue's limits: from this app's declarations, else as its workers stored
        them with the queue's settings (a reader without the app's code)."""
        return (await self._flow_declared())[0]

    async def _flow_declared(self) -> tuple[dict[str, tuple[FlowLimit, ...]], dict[str, bool]]:
        """`flow_limits`, and for each job type's rate limit (`r:<type>:<n>`) whether it
        is keyed, as declared (this app's code, else the stored declarations); a family
        missing from the second is not known either way."""
        found = {n: s.flow_limits() for n, s in self._registry.queues.items() if s.flow_limits()}
        keyed: dict[str, bool] = {}
        for name, job_type in self._registry.job_types.items():
            if job_type.limits is not None:
                for i, rate in enumerate(job_type.limits.rate_limits):
                    keyed[f"r:{name}:{i}"] = rate.keyed
        backend = await self._storage.backend()
        for counts in await backend.queue_rows(QueueCountsParams()):
            if not counts.settings_json:
                continue
            settings = orjson.loads(counts.settings_json)
            for name, declared in (settings.get("job_types") or {}).items():
                rates = declared.get("rate_limits") if isinstance(declared, dict) else None
                for i, rate in enumerate(rates or ()):
                    if isinstance(rate, dict):
                        keyed.setdefault(
                            f"r:{name}:{i}", bool(rate.get("per_key") or rate.get("key_function"))
                        )
            if counts.name in found:
                continue
            stored = settings.get("flow_limits")
            if stored:
                found[counts.name] = tuple(FlowLimit(*map_limit(row)) for row in stored)
        return found, keyed

    async def limits(self, window: float = 10.0) -> list[dict[str, Any]]:
        """Per limit: its key count, running jobs, jobs waiting on it, starts per second
        over the last `window` seconds, and when its earliest held bucket frees up."""
        backend = await self._storage.backend()
        out = []
        declared, keyed = await self._flow_declared()
        for queue, limits in sorted(declared.items()):
            by_family = {lim.family: lim for lim in limits}
            for stat in await backend.flow_stats(FlowStatsParams(limits, window)):
                out.append(
                    describe_limit(queue, by_family[stat.family], keyed)
                    | {
                        "keys": stat.keys,
                        "running": stat.running,
                        "waiting": stat.waiting,
                        "startedPerSecond": round(stat.started / window, 3),
                        "heldUntil": iso(stat.held_until),
                    }
                )
        return out

    async def job_hold(self, job: Job) -> dict[str, Any]:
        """Why a pending job has not run yet: snoozed until when, and the limits holding
        it back (each with its key and until when; None: until a running job ends)."""
        if job.status is not JobStatus.PENDING:
            return {"snoozedUntil": None, "heldBy": []}
        snoozed = None
        if (
            job.history
            and job.history[-1].outcome == "snoozed"
            and job.run_at.timestamp() > (time.time())
        ):
            snoozed = iso(job.run_at.timestamp())
        declared, keyed = await self._flow_declared()
        limits = declared.get(job.queue, ())
        held = []
        if limits:
            backend = await self._storage.backend()
            by_family = {lim.family: lim for lim in limits}
            for hold in await backend.flow_job_hold(FlowJobHoldParams(job.id, limits)):
                family, _, key = hold.bucket.partition("|")
                described = describe_limit(job.queue, by_family[family], keyed)
                held.append(described | {"key": key or None, "until": iso(hold.until)})
        return {"snoozedUntil": snoozed, "heldBy": held}


def map_limit(row: Sequence[Any]) -> tuple[str, float, float, float]:
    """A stored limit ([family, amount, period, burst]) as `FlowLimit` fields."""
    return str(row[0]), float(row[1]), float(row[2]), float(row[3])


def describe_limit(
    queue: str, limit: FlowLimit, keyed: Mapping[str, bool] | None = None
) -> dict[str, Any]:
    """A limit as users declared it: which queue or job type, rate or concurrency, and
    whether each key has its own (`perKey`; for a job type's rate limit from `keyed`,
    which says how it was declared: None when that is not known)."""
    family = limit.family
    if family.startswith("r@"):
        scope: dict[str, Any] = {"queue": queue, "jobType": None, "perKey": False}
    else:
        body = family[2:]
        head, _, tail = body.rpartition(":")
        indexed = tail.isdigit() and head != ""
        job_type = head if indexed else body
        per_key = indexed if family.startswith("c:") else (keyed or {}).get(family)
        scope = {"queue": queue, "jobType": job_type, "perKey": per_key}
    if limit.is_rate:
        return {
            "limit": family,
            "kind": "rate",
            "rate": f"{limit.amount:g}/{limit.period:g}s",
            "burst": limit.burst,
            **scope,
        }
    return {"limit": family, "kind": "concurrency", "max": int(limit.amount), **scope}


def _add(into: dict[str, dict[str, float]], counters: Mapping[str, Mapping[str, float]]) -> None:
    for name, per_queue in counters.items():
        target = into.setdefault(name, {})
        for queue, value in per_queue.items():
            target[queue] = target.get(queue, 0.0) + value


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _serves(worker: Mapping[str, Any], queue: str) -> bool:
    queues = worker.get("queues")
    return queues is None or queue in queues  # an older worker's report does not say


def _merge(into: StatsMinute | None, row: StatsMinute) -> StatsMinute:
    if into is None:
        return row
    histogram = tuple(a + b for a, b in zip(into.histogram, row.histogram, strict=False))
    return StatsMinute(
        into.minute,
        into.queue,
        into.processed + row.processed,
        into.retried + row.retried,
        into.failed + row.failed,
        into.duration_sum + row.duration_sum,
        histogram,
    )


def quantile(histogram: tuple[int, ...], q: float) -> float | None:
    """The `q` quantile [s] of a duration histogram (`HISTORY_BUCKETS`, last = above all),
    interpolated within its bucket as Prometheus' histogram_quantile does; None if empty."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            if index >= len(HISTORY_BUCKETS):
                return HISTORY_BUCKETS[-1]
            low = HISTORY_BUCKETS[index - 1] if index else 0.0
            high = HISTORY_BUCKETS[index]
            return round(low + (high - low) * (rank - seen) / count, 4)
        seen += count
    return HISTORY_BUCKETS[-1]


def _point(minute: StatsMinute | None, per_minute: float) -> dict[str, Any]:
    if minute is None:
        return {"processed": 0.0, "failed": 0.0, "p50": None, "p95": None}
    return {
        "processed": round(minute.processed * per_minute, 2),
        "failed": round(minute.failed * per_minute, 2),
        "p50": quantile(minute.histogram, 0.5),
        "p95": quantile(minute.histogram, 0.95),
    }


def _params_fields(params: JobSearchParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}


def _hold_reasons(hold: Mapping[str, Any]) -> list[str]:
    """`job_hold`'s answer in words."""
    reasons = []
    if hold.get("snoozedUntil"):
        reasons.append(f"snoozed by its handler until {hold['snoozedUntil']}")
    for held in hold.get("heldBy", []):
        scope = f"job type {held['jobType']!r}" if held.get("jobType") else "its queue"
        what = (
            f"rate limit {held.get('rate')}"
            if held.get("kind") == "rate"
            else f"concurrency limit of {held.get('max')}"
        )
        key = f" for key {held['key']!r}" if held.get("key") else ""
        until = f" until {held['until']}" if held.get("until") else " until a running job ends"
        reasons.append(f"waiting on the {what} of {scope}{key}{until}")
    return reasons


def _refuse_a_name_no_queue_has(name: str | None) -> None:
    """`UnknownQueue` for a name holding a lone surrogate (bytes that were not UTF-8):
    no queue can be called that, and the database would refuse the lookup itself
    (`StorageRejected`), as an id holding one names no job."""
    if name is not None and SURROGATE.search(name):
        raise UnknownQueue(
            f"no queue named {name!r}: it holds a lone surrogate, which no queue name can"
        )
