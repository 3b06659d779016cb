"""The storage boundary: the protocol every backend implements, and the plain data it exchanges.

Nothing outside `taskflare.backends` writes SQL. Methods are named entity + verb and
listed alphabetically; each takes small frozen dataclasses. Times are seconds since the
epoch as floats; each backend reads its own clock (SQLite: this machine's; PostgreSQL:
the server's), so callers pass delays, not absolute times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Message states as stored.
READY = "ready"
LEASED = "leased"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (READY, LEASED, COMPLETED, FAILED, CANCELLED)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store: its body already encoded."""

    id: str
    queue: str
    body: bytes
    content_type: str
    delay_seconds: float = 0.0
    priority: int = 0
    # Jobs only: a job is a message with a type and a tracked status.
    type: str | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimParams:
    """Claim up to `limit` ready messages of `queue` under one lease.

    The claim only happens when at least `min_count` messages are ready or the oldest
    ready one became available `max_wait` seconds ago or more: that is how a batch
    waits to fill up (`max_batch_size` / `max_batch_timeout`).
    """

    queue: str
    limit: int
    lease_id: str
    owner: str
    visibility_timeout: float
    min_count: int = 1
    max_wait: float = 0.0


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message handed to a consumer; `attempts` already counts this delivery."""

    id: str
    queue: str
    body: bytes
    content_type: str
    attempts: int
    created_at: float
    priority: int
    lease_id: str
    type: str | None = None
    max_attempts: int | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """A message as held under one lease; outcomes only apply while the lease is held."""

    id: str
    lease_id: str


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """Put a message back, available again after `delay_seconds`."""

    id: str
    lease_id: str
    delay_seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FailOutcome:
    """Keep a message as failed; copy it to `dead_letter_queue` (as `dlq_message_id`) if set."""

    id: str
    lease_id: str
    error: str | None
    dead_letter_queue: str | None = None
    dlq_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class CompleteOutcome:
    """Jobs: keep the row as `completed` with the handler's JSON result."""

    id: str
    lease_id: str
    result: bytes | None


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """Jobs: a running job stopped because it was cancelled."""

    id: str
    lease_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """Jobs: one delivery of a job, for its history."""

    job_id: str
    attempt: int
    worker_id: str | None
    started_at: float | None
    finished_at: float | None
    outcome: str
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """Every outcome of one or more batches, applied in one transaction."""

    acks: Sequence[LeaseRef] = ()
    retries: Sequence[RetryOutcome] = ()
    fails: Sequence[FailOutcome] = ()
    completes: Sequence[CompleteOutcome] = ()
    cancels: Sequence[CancelOutcome] = ()
    attempts: Sequence[AttemptRecord] = ()


@dataclass(frozen=True, slots=True)
class SettleResult:
    """How many outcomes were applied; the rest had lost their lease to another consumer."""

    acked: int = 0
    retried: int = 0
    failed: int = 0
    completed: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class RescueParams:
    """Return messages of `queue` whose lease expired; those out of attempts fail instead."""

    queue: str
    max_attempts: int
    dead_letter_queue: str | None = None


@dataclass(frozen=True, slots=True)
class RescueResult:
    """What a rescue pass did."""

    requeued: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ReadyInfo:
    """What a queue holds: ready-now count (capped), oldest ready time, next delayed time."""

    ready_count: int
    oldest_available_at: float | None
    next_available_at: float | None
    paused: bool
    now: float


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message as the admin side sees it."""

    id: str
    queue: str
    state: str
    body: bytes
    content_type: str
    attempts: int
    priority: int
    created_at: float
    available_at: float
    lease_expires_at: float | None
    last_error: str | None
    origin_queue: str | None
    origin_id: str | None
    finished_at: float | None
    type: str | None = None
    max_attempts: int | None = None
    result: bytes | None = None
    progress: float | None = None
    progress_note: str | None = None
    started_at: float | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    batch_id: str | None = None
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's declared consumer settings, stored so admin tools can show them."""

    name: str
    settings_json: str = "{}"


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many messages a queue holds in each state."""

    name: str
    paused: bool
    by_state: dict[str, int] = field(default_factory=dict)
    oldest_ready_at: float | None = None
    settings_json: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """Jobs: the id stored, and whether an earlier job with the same idempotency key won."""

    id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs: which to list, newest first, after the `(created_at, id)` cursor if given."""

    state: str | None = None
    type: str | None = None
    queue: str | None = None
    limit: int = 50
    before: tuple[float, str] | None = None


@dataclass(frozen=True, slots=True)
class JobCount:
    """Jobs: how many of one type on one queue are in one state."""

    queue: str
    type: str
    state: str
    count: int


@dataclass(frozen=True, slots=True)
class OnceClaim:
    """`ctx.once`: `claimed` (run it now), `done` (here is the stored result) or `busy`."""

    state: str
    result: bytes | None = None


@dataclass(frozen=True, slots=True)
class CronTick:
    """One tick of a cron trigger: `enqueued` (with its job), `skipped` or `manual`."""

    name: str
    tick: float
    status: str
    job_id: str | None = None
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """A worker's periodic report: who it is and its counters (JSON)."""

    id: str
    hostname: str
    pid: int
    started_at: float
    last_seen: float
    stats_json: str


@dataclass(frozen=True, slots=True)
class JobEventCursor:
    """Where a job event feed stands: times of the last enqueue and start seen, last attempt row."""

    enqueued_after: float
    started_after: float
    attempt_after: int


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One thing that happened to a job (`enqueued`, `started`, or an attempt's outcome)."""

    kind: str
    at: float
    job_id: str
    type: str | None
    queue: str | None
    attempt: int
    error: str | None = None
    duration: float | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class PruneParams:
    """Retention: delete finished rows older than these cut-offs, at most `limit` at a time."""

    completed_before: float
    failed_before: float
    limit: int = 1000


class Backend(Protocol):
    """What the worker, producers and admin tools need from storage."""

    url_for_logs: str

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def lease_extend_many(self, lease_ids: Sequence[str], visibility_timeout: float) -> int:
        """Push the expiry of live leases `visibility_timeout` seconds past now."""

    async def lease_rescue_expired(self, params: RescueParams) -> RescueResult:
        """Requeue (or fail, when out of attempts) messages whose lease has expired."""

    async def message_claim_many(self, params: ClaimParams) -> list[ClaimedMessage]:
        """Lease a batch of ready messages, counting one attempt on each, in one statement."""

    async def message_enqueue_many(
        self, messages: Sequence[NewMessage], connection: Any | None = None
    ) -> None:
        """Store messages all or nothing, in one transaction.

        `connection`: a driver connection of the caller's (PostgreSQL: a psycopg
        `AsyncConnection`); the messages are then written inside the caller's own
        transaction. A backend that cannot do that raises `InvalidMessage`.
        """

    async def message_get(self, message_id: str) -> MessageRecord | None:
        """Read one message by id."""

    async def message_list(
        self, queue: str, state: str | None = None, limit: int = 100
    ) -> list[MessageRecord]:
        """List the messages of a queue, oldest first."""

    async def message_release_many(self, refs: Sequence[LeaseRef]) -> int:
        """Return claimed-but-unstarted messages to ready without counting the attempt."""

    async def message_settle_many(self, settlement: Settlement) -> SettleResult:
        """Apply acks, retries and failures together."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""

    async def queue_counts(self, queue: str | None = None) -> list[QueueCounts]:
        """Count messages by state, per queue."""

    async def queue_declare_many(self, queues: Sequence[QueueSettings]) -> None:
        """Record queues and their settings (creating them when new)."""

    async def queue_pause(self, queue: str, paused: bool) -> None:
        """Pause (nothing is delivered) or resume a queue."""

    async def queue_ready_info(self, queue: str, limit: int) -> ReadyInfo:
        """Describe what a queue has ready now and when delayed work becomes ready."""

    @property
    def change_seq(self) -> int:
        """A counter that moves when new work may be ready; read it before looking for work."""

    async def wait_for_change(self, since: int, timeout: float) -> None:
        """Return once `change_seq` has moved past `since`, or after `timeout` seconds."""

    # -- administration -----------------------------------------------------------------

    async def dead_letter_reprocess(self, dlq: str, ids: Sequence[str] | None) -> int:
        """Send dead-lettered messages (all, or these ids) back to their origin queue.

        Jobs go back as the original job with a fresh attempt budget; the count returned
        is how many were sent back.
        """

    async def queue_purge(self, queue: str) -> int:
        """Delete every unfinished message of a queue (delayed ones too); return how many."""

    async def worker_list(self, since: float) -> list[WorkerReport]:
        """Workers that reported at or after `since`."""

    async def worker_report(self, report: WorkerReport) -> None:
        """Upsert a worker's report (its `last_seen` is the backend's clock)."""

    # -- cron ---------------------------------------------------------------------------

    async def cron_last_tick(self, name: str) -> float | None:
        """The latest scheduled tick recorded for a trigger (manual fires excluded), or None."""

    async def cron_recent(self, name: str, limit: int) -> list[CronTick]:
        """A trigger's latest ticks, newest first."""

    async def cron_tick_record(self, tick: CronTick, job: NewMessage | None) -> bool:
        """Record a tick and enqueue its job in one transaction, unless the tick exists.

        True when this call recorded it: exactly one caller wins each tick.
        """

    # -- jobs ---------------------------------------------------------------------------

    async def job_attempts(self, job_id: str) -> list[AttemptRecord]:
        """The delivery history of a job, first attempt first."""

    async def job_batch_counts(self, batch_id: str) -> tuple[str, int, dict[str, int]] | None:
        """A job batch's type, declared total and its jobs counted by state."""

    async def job_batch_create(self, batch_id: str, type: str, total: int) -> None:
        """Record a batch of jobs before its chunks are enqueued."""

    async def job_cancel(self, job_id: str) -> str:
        """Cancel a job: `now` (it was pending), `requested` (running), else its state.

        Returns `missing` when there is no such job.
        """

    async def job_cancel_requested(self, lease_ids: Sequence[str]) -> list[str]:
        """Ids of running jobs under these leases whose cancellation was requested."""

    async def job_counts(self, queue: str | None = None, type: str | None = None) -> list[JobCount]:
        """Jobs counted by queue, type and state."""

    async def job_enqueue(
        self, message: NewMessage, idempotency_ttl: float, connection: Any | None = None
    ) -> EnqueueResult:
        """Store one job; with an idempotency key, an unexpired earlier job wins.

        `connection`: as for `message_enqueue_many`, the job is written inside the
        caller's own transaction; a backend that cannot do that raises `InvalidMessage`.
        """

    async def job_attempt_seq(self) -> int:
        """The sequence number of the latest attempt row (where a live feed starts)."""

    async def job_events(self, cursor: JobEventCursor, limit: int) -> list[JobEvent]:
        """Job events after `cursor`, oldest first (for `taskflare tail`)."""

    async def job_list(self, job_filter: JobFilter) -> list[MessageRecord]:
        """Jobs, newest first."""

    async def job_progress(
        self, job_id: str, lease_id: str, progress: float, note: str | None
    ) -> bool:
        """Record a running job's progress; False if the lease was lost."""

    async def job_prune(self, params: PruneParams) -> int:
        """Delete finished jobs and failed messages past retention, and expired keys."""

    async def job_retry(self, job_id: str) -> str:
        """Put a failed or cancelled job back to pending with a fresh attempt budget.

        Returns `retried`, the job's state when it cannot be retried, or `missing`.
        """

    async def once_abandon(self, key: str, owner: str) -> None:
        """`ctx.once`: the function failed; let another caller run it."""

    async def once_claim(self, key: str, owner: str, lease_seconds: float) -> OnceClaim:
        """`ctx.once`: claim the right to run the function for `key`, or read its result."""

    async def once_finish(self, key: str, owner: str, result: bytes, ttl: float) -> None:
        """`ctx.once`: store the function's result for `ttl` seconds."""
