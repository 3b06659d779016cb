"""The storage boundary: the protocols a backend implements and the plain data they exchange.

Internal: this module may change between releases; it is not taskflare's public API.

The protocol is split by entity (`MessageStore`, `JobStore`, `QueueStore`, `CronStore`,
`WorkerStore`, `OnceStore`, `DocumentStore`) plus the `Notifier` and the `Migrator`;
`Backend` is all of them. Methods are named entity + verb, take one frozen params object
(or nothing) and return typed records. Times are seconds since the epoch as floats, read from each
backend's own clock (SQLite: this machine's; PostgreSQL: the server's), so callers pass
delays, not absolute times. Every method may raise `BackendUnavailable` (the database
cannot be reached) or `StorageRejected` (the database refused a value).

Params objects are frozen; the records a statement returns row by row, and the outcome
records of a settlement, are plain slotted dataclasses (treated as immutable, but
without the cost of frozen ones: they are made per message on the hot path).

Backends hold no policy: whether a delivery is retried, failed or dead-lettered is
decided by `taskflare.policy`; a backend applies the `Settlement` it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class State(StrEnum):
    """Where a stored message (or job) is: ready → leased → completed | failed | cancelled.

    Plain queue messages are deleted when acked; jobs keep their row as `completed`.
    """

    READY = "ready"
    LEASED = "leased"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = (State.COMPLETED, State.FAILED, State.CANCELLED)
STATES = tuple(str(s) for s in State)
# A `count_limit` no table reaches: counts are exact.
EXACT_COUNT = 2**62

# Topics of the change signal. A backend raises them when a write commits: `ready:<queue>`
# when work may have become ready on a queue, `done` when a job finished, `cancel` when the
# cancellation of a running job was requested. Waiters re-check the database when woken.
DONE_TOPIC = "done"
CANCEL_TOPIC = "cancel"


def ready_topic(queue: str) -> str:
    """The topic raised when work may have become ready on `queue`."""
    return f"ready:{queue}"


# -- messages ---------------------------------------------------------------------------


@dataclass(slots=True)
class NewMessage:
    """A message (or job) to store, its body already encoded; `delay_seconds` from now.

    Treat it as immutable (`dataclasses.replace` for a changed copy). It is not declared
    frozen because a bulk enqueue builds one per item, and a frozen dataclass's
    constructor costs several times a plain one's."""

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
    # Flow control: the limit buckets (`family|key`) the job needs; None: no limit.
    flow_keys: tuple[str, ...] | None = None
    # Tracing on: the producer's trace context (a JSON object of the propagator's
    # fields, e.g. `traceparent`); None: not traced, and the column is not written.
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueueParams:
    """Store `messages` all or nothing, in one transaction.

    `connection`: a driver connection of the caller's (PostgreSQL: a psycopg connection);
    the messages are then written inside the caller's own transaction. A backend that
    cannot do that raises `InvalidMessage`.

    `durable=False` (no `connection`): the commit does not wait for the disk; the next
    durable commit on the same database flushes it along with its own (a database's log
    is flushed in order). `enqueue_many` stores every chunk but its last so: when the
    call returns, all of them are on disk, after one flush instead of one a chunk.
    """

    messages: Sequence[NewMessage]
    connection: Any | None = None
    durable: bool = True


@dataclass(frozen=True, slots=True)
class ClaimParams:
    """Lease up to `limit` ready messages of `queue` under one lease.

    The claim only happens when at least `min_count` messages are ready or the oldest
    ready one became available `max_wait` seconds ago or more: that is how a batch
    waits to fill up (`max_batch_size` / `max_batch_timeout`). `types`: only jobs of
    these types (None: any message), so a worker never takes work it cannot run.
    `describe_empty` False: the caller expects work (it was just told of some, or its
    last claim took all it asked for), so a backend may leave out describing the queue
    and return `ready=None` when it took nothing; the caller then asks
    `queue_ready_info`.
    """

    queue: str
    limit: int
    lease_id: str
    owner: str
    visibility_timeout: float
    min_count: int = 1
    max_wait: float = 0.0
    types: tuple[str, ...] | None = None
    # Flow control: the limits of the queue's jobs. Empty: the plain claim, no extra cost.
    limits: tuple[FlowLimit, ...] = ()
    describe_empty: bool = True


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """One limit as a claim enforces it: a job needing bucket `family|key` is claimed only
    while the bucket allows. `period` 0: a concurrency limit, at most `amount` leased
    jobs per bucket; else a token bucket of `burst` tokens refilled at `amount` per
    `period` seconds, one token per job started."""

    family: str
    amount: float
    period: float
    burst: float

    @property
    def is_rate(self) -> bool:
        """A rate limit (else a concurrency limit)."""
        return self.period > 0


@dataclass(frozen=True, slots=True)
class FlowHoldParams:
    """Hold rate-limit buckets (no job needing them is claimed) until `seconds` from now:
    the adaptive back-off after a 429."""

    buckets: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class FlowJobHoldParams:
    """Which of a pending job's buckets (under these limits) allow nothing now."""

    id: str
    limits: tuple[FlowLimit, ...]


@dataclass(frozen=True, slots=True)
class FlowHold:
    """A bucket holding a job back, until when (None: until a running job of it ends)."""

    bucket: str
    until: float | None


@dataclass(frozen=True, slots=True)
class FlowStatsParams:
    """Per-limit statistics for these limits; `window` [s] for the current start rate."""

    limits: tuple[FlowLimit, ...]
    window: float = 10.0


@dataclass(frozen=True, slots=True)
class FlowStat:
    """One limit now: keys in use (distinct keys of unfinished jobs), jobs running, jobs
    ready but held by it, starts over the last `window` seconds, and when its earliest
    held bucket frees up (None: none is held)."""

    family: str
    keys: int
    running: int
    waiting: int
    started: int
    held_until: float | None


@dataclass(slots=True)
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
    flow_keys: Sequence[str] | None = None  # set only by a claim with limits
    trace_context: str | None = None  # the producer's, when it was traced


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What a claim took and, when it took nothing, what the queue looks like (so an idle
    worker knows how long it may sleep without asking again)."""

    messages: list[ClaimedMessage]
    ready: ReadyInfo | None = None


@dataclass(slots=True)
class LeaseRef:
    """A message as held under one lease; `lease_id=None` (an ack only) matches any lease."""

    id: str
    lease_id: str | None


@dataclass(slots=True)
class RetryOutcome:
    """Put a message back, available again after `delay_seconds`.

    `require_expired`: apply only if the lease has expired (the lease rescuer's outcomes,
    so a lease that a late heartbeat extended is left alone). `refund`: the delivery
    does not count as an attempt (a snooze): `attempts` goes back down by one.
    """

    id: str
    lease_id: str
    delay_seconds: float
    error: str | None = None
    require_expired: bool = False
    refund: bool = False


@dataclass(slots=True)
class FailOutcome:
    """Keep a message as failed; copy it to `dead_letter_queue` (as `dlq_message_id`) if set."""

    id: str
    lease_id: str
    error: str | None
    dead_letter_queue: str | None = None
    dlq_message_id: str | None = None
    require_expired: bool = False


@dataclass(slots=True)
class CompleteOutcome:
    """Jobs: keep the row as `completed` with the handler's JSON result."""

    id: str
    lease_id: str
    result: bytes | None


@dataclass(slots=True)
class CancelOutcome:
    """Jobs: a running job stopped because it was cancelled."""

    id: str
    lease_id: str
    reason: str


@dataclass(slots=True)
class AttemptRecord:
    """Jobs: one delivery of a job, for its history.

    Stored only when the outcome of the same delivery (same `job_id`) is applied; when a
    cancellation requested meanwhile turns that outcome into `cancelled`, so does this.
    """

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
    """Outcomes of one or more deliveries, applied in one transaction.

    Each outcome applies only while its lease is held (an ack with no lease id: while
    the plain message is unfinished). A job whose cancellation was requested ends
    `cancelled` whatever outcome is given for it: the cancel, once accepted, wins.
    """

    acks: Sequence[LeaseRef] = ()
    retries: Sequence[RetryOutcome] = ()
    fails: Sequence[FailOutcome] = ()
    completes: Sequence[CompleteOutcome] = ()
    cancels: Sequence[CancelOutcome] = ()
    attempts: Sequence[AttemptRecord] = ()

    def __bool__(self) -> bool:
        return bool(
            self.acks
            or self.retries
            or self.fails
            or self.completes
            or self.cancels
            or self.attempts
        )

    @property
    def size(self) -> int:
        """How many outcomes it holds (attempt records not counted)."""
        return (
            len(self.acks)
            + len(self.retries)
            + len(self.fails)
            + len(self.completes)
            + len(self.cancels)
        )


ACKED = "acked"  # a plain message's row is deleted when acked: this stands for "gone"


@dataclass(frozen=True, slots=True)
class SettleResult:
    """What each outcome did: message id → resulting state (`acked`, `ready` for a retry,
    `failed`, `completed`, `cancelled`). Ids missing had lost their lease."""

    states: dict[str, str] = field(default_factory=dict)

    def count(self, state: str) -> int:
        """How many outcomes ended in `state`."""
        return sum(1 for s in self.states.values() if s == state)

    @property
    def acked(self) -> int:
        """Plain messages acked (deleted)."""
        return self.count(ACKED)

    @property
    def retried(self) -> int:
        """Messages put back to ready."""
        return self.count(State.READY)

    @property
    def failed(self) -> int:
        """Messages failed (and dead-lettered where configured)."""
        return self.count(State.FAILED)

    @property
    def completed(self) -> int:
        """Jobs completed."""
        return self.count(State.COMPLETED)

    @property
    def cancelled(self) -> int:
        """Jobs cancelled."""
        return self.count(State.CANCELLED)


@dataclass(frozen=True, slots=True)
class ReleaseParams:
    """Hand claimed-but-unstarted messages back to ready, their attempt uncounted."""

    refs: Sequence[LeaseRef]


@dataclass(frozen=True, slots=True)
class MessageGetParams:
    """Read one message (or job) by id."""

    id: str


@dataclass(frozen=True, slots=True)
class MessageListParams:
    """A queue's messages, oldest first, optionally of one state; with `after`, only those
    after that (created_at, id) position (the last of the previous page)."""

    queue: str
    state: str | None = None
    limit: int = 100
    after: tuple[float, str] | None = None


@dataclass(slots=True)
class MessageRecord:
    """A stored message (or job) as the admin side sees it."""

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
    origin_attempts: int | None = None
    """For a dead letter: how many deliveries the original had (None once it is gone)."""


# -- leases -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseExtendParams:
    """Push the expiry of live leases `visibility_timeout` seconds past now."""

    lease_ids: Sequence[str]
    visibility_timeout: float


@dataclass(frozen=True, slots=True)
class ExpiredLeaseParams:
    """Messages of `queue` whose lease has expired, at most `limit` of them."""

    queue: str
    limit: int = 1000


@dataclass(slots=True)
class ExpiredLease:
    """A delivery whose worker stopped or lost contact: the rescuer decides its fate."""

    id: str
    lease_id: str
    queue: str
    attempts: int
    max_attempts: int | None
    type: str | None
    lease_owner: str | None
    started_at: float | None


# -- queues -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's declared consumer settings, stored so admin tools can show them."""

    name: str
    settings_json: str = "{}"


@dataclass(frozen=True, slots=True)
class QueueDeclareParams:
    """Record queues and their settings (creating them when new)."""

    queues: Sequence[QueueSettings]


@dataclass(frozen=True, slots=True)
class QueuePauseParams:
    """Pause (nothing is delivered) or resume a queue."""

    queue: str
    paused: bool


@dataclass(frozen=True, slots=True)
class ReadyInfoParams:
    """Describe what `queue` has ready (count capped at `limit`; only jobs of `types`)."""

    queue: str
    limit: int
    types: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ReadyInfo:
    """What a queue holds: ready-now count (capped), oldest ready time, next delayed time."""

    ready_count: int
    oldest_available_at: float | None
    next_available_at: float | None
    paused: bool
    now: float


@dataclass(frozen=True, slots=True)
class QueueCountsParams:
    """Count messages by state, for one queue or (None) all of them; `queue_depths`
    counts at most `count_limit` of each state per queue."""

    queue: str | None = None
    count_limit: int = 10_000


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many messages a queue holds in each state; `capped` names the states whose
    count stopped at the query's `count_limit` (they mean "at least")."""

    name: str
    paused: bool
    by_state: dict[str, int] = field(default_factory=dict)
    oldest_ready_at: float | None = None
    settings_json: str | None = None
    capped: frozenset[str] = frozenset()


@dataclass(slots=True)
class QueueDepth:
    """What a queue holds that is not finished (and its failed messages), counted from
    the indexes of those states only: ready now, delayed (ready later), leased, failed;
    when the oldest ready one became ready; paused; stored settings (JSON). Each count
    reads at most the query's `count_limit` entries: `capped` names the counts that hit
    it (they mean "at least"; ready and delayed share one window of the oldest ready
    messages, so both are capped together, and the oldest ready time is that window's)."""

    name: str
    paused: bool = False
    ready: int = 0
    delayed: int = 0
    leased: int = 0
    failed: int = 0
    oldest_ready_at: float | None = None
    settings_json: str | None = None
    capped: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class QueueDeleteParams:
    """Delete a queue: every message of it (finished ones too) and its stored settings."""

    queue: str


@dataclass(frozen=True, slots=True)
class QueuePurgeParams:
    """Delete every unfinished message of a queue (delayed ones too)."""

    queue: str


@dataclass(frozen=True, slots=True)
class DeadLetterReprocessParams:
    """Send dead-lettered messages of `dead_letter_queue` (all, or these ids) back.

    Jobs go back as the original job with a fresh attempt budget; plain messages move
    back to their origin queue. With `origin_queue`, only the dead letters that came from
    that queue (a dead-letter queue may serve several queues).
    """

    dead_letter_queue: str
    ids: Sequence[str] | None = None
    origin_queue: str | None = None


# -- jobs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobEnqueueParams:
    """Store one job; with an idempotency key, an unexpired earlier job wins.

    `connection`: as for `EnqueueParams`, the job is written inside the caller's own
    transaction. `guard_states`: the stored states in which the key's holder keeps it (an
    idempotency key: pending, running, completed; a unique job: its `Unique.states`);
    `key_scope`: the key row's type column (default: the job's type; a uniqueness that
    is not by type uses `*`).
    """

    message: NewMessage
    idempotency_ttl: float
    connection: Any | None = None
    guard_states: tuple[str, ...] = ("ready", "leased", "completed")
    key_scope: str | None = None


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
class JobAttemptsParams:
    """The delivery histories of these jobs."""

    job_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class JobIdParams:
    """One job, by id (cancel, retry)."""

    id: str


class CancelResult(StrEnum):
    """What `job_cancel` did."""

    CANCELLED = "cancelled"  # it was pending: cancelled now
    REQUESTED = "requested"  # it is running: its worker stops it, and it ends cancelled
    FINISHED = "finished"  # it had already finished: nothing changed
    MISSING = "missing"  # no such job


@dataclass(frozen=True, slots=True)
class JobCancelResult:
    """The outcome of a cancel, and the job's state when it had already finished."""

    result: CancelResult
    state: str | None = None


class RetryResult(StrEnum):
    """What `job_retry` did."""

    RETRIED = "retried"
    WRONG_STATE = "wrong_state"
    MISSING = "missing"
    KEY_HELD = "key_held"  # another job now holds the job's idempotency key


@dataclass(frozen=True, slots=True)
class JobRetryResult:
    """The outcome of a manual retry, and the job's state when it could not be retried
    (for `KEY_HELD`, `holder` is the job that holds its idempotency key now)."""

    result: RetryResult
    state: str | None = None
    holder: str | None = None


@dataclass(frozen=True, slots=True)
class CancelRequestedParams:
    """Which running jobs under these leases have had their cancellation requested."""

    lease_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class JobProgressParams:
    """Record a running job's progress (0..1, optional note) while its lease is held."""

    id: str
    lease_id: str
    progress: float
    note: str | None = None


@dataclass(frozen=True, slots=True)
class JobCountParams:
    """Count jobs by queue, type and state, optionally of one queue and/or type."""

    queue: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class JobCount:
    """Jobs: how many of one type on one queue are in one state."""

    queue: str
    type: str
    state: str
    count: int


@dataclass(frozen=True, slots=True)
class JobBatchCreateParams:
    """Record a batch of jobs (`enqueue_many`) before its chunks are stored.

    `connection`: as for `EnqueueParams`, the record is written inside the caller's own
    transaction (a backend that cannot raises `InvalidMessage`)."""

    id: str
    type: str
    total: int
    connection: Any | None = None


@dataclass(frozen=True, slots=True)
class JobBatchTotalParams:
    """Raise a batch's total to `total` (a batch that grows while it runs)."""

    id: str
    total: int


@dataclass(frozen=True, slots=True)
class JobBatchGetParams:
    """One batch of jobs by id."""

    id: str


@dataclass(frozen=True, slots=True)
class JobBatchCounts:
    """A batch's type, declared total and its jobs counted by state."""

    id: str
    type: str
    total: int
    by_state: dict[str, int]


@dataclass(frozen=True, slots=True)
class PruneParams:
    """Retention: delete finished rows older than these cut-offs, at most `limit` at a time."""

    completed_before: float
    failed_before: float
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class JobEventCursor:
    """Where a job event feed stands: times of the last enqueue and start seen, last attempt row."""

    enqueued_after: float
    started_after: float
    attempt_after: int


@dataclass(frozen=True, slots=True)
class JobEventsParams:
    """Job events after `cursor`, at most `limit` of each kind."""

    cursor: JobEventCursor
    limit: int = 500


@dataclass(slots=True)
class JobEvent:
    """One thing that happened to a job (`enqueued`, `started`, or an attempt's outcome);
    `attempt` is the attempt it concerns, 0 for `enqueued` (none had started)."""

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
class JobSearchParams:
    """Jobs matching every given filter, newest first, after the `(created_at, id)` cursor.

    `created_from`/`created_to`: epoch seconds, inclusive. `key`: a job id, idempotency
    key, correlation id or batch id (exact). `text`: a substring of the stored
    payload, or of one of its JSON strings or keys unescaped (case-sensitive, no
    wildcards; `store.payload_contains`); a text search examines at most `scan_limit` jobs (newest
    first after the cursor) per call, so it stays fast on any table size. Without a text
    or key, a call examines at most `filter_scan_limit` entries of the index that drives
    it (status, else type, else creation time), newest first after the cursor.
    """

    state: str | None = None
    type: str | None = None
    queue: str | None = None
    created_from: float | None = None
    created_to: float | None = None
    text: str | None = None
    key: str | None = None
    limit: int = 50
    before: tuple[float, str] | None = None
    scan_limit: int = 20_000
    filter_scan_limit: int = 10_000
    count_limit: int = 1_000_000_000
    """`job_search_count` stops counting here (and answers this number)."""


@dataclass(frozen=True, slots=True)
class JobSearchResult:
    """A page of matching jobs; for a search that examined its whole window
    (`scan_limit` jobs with a text, else `filter_scan_limit` index entries) without
    filling the page, `scanned_to` is where the next call continues (else None)."""

    records: list[MessageRecord]
    scanned_to: tuple[float, str] | None = None


@dataclass(frozen=True, slots=True)
class JobBatchListParams:
    """The newest `limit` batches, each state's count stopped at `count_limit` (a count
    of `count_limit` means "at least")."""

    limit: int = 50
    count_limit: int = EXACT_COUNT


@dataclass(frozen=True, slots=True)
class JobBatchSummary:
    """A batch with its creation time and its jobs counted by state."""

    id: str
    type: str
    total: int
    created_at: float
    by_state: dict[str, int]


@dataclass(frozen=True, slots=True)
class JobDeleteParams:
    """Delete these jobs (any status; a running one keeps running but its outcome is lost)."""

    ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class JobAheadParams:
    """How many ready jobs of `queue` a pending job waits behind: higher priority, or the
    same priority and ready earlier (both ready now); counted up to `count_limit` + 1."""

    queue: str
    priority: int
    available_at: float
    id: str
    count_limit: int = 10_000


@dataclass(frozen=True, slots=True)
class MessageDeleteParams:
    """Delete these messages of `queue` (not leased ones: a consumer holds them)."""

    queue: str
    ids: Sequence[str]


# -- statistics history -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsMinute:
    """What the workers did on one queue during one minute (`minute`: epoch seconds at the
    start of the minute): deliveries processed (acked or completed), retried and failed,
    and the handler-duration histogram (`histogram[i]`: calls within `DURATION_BUCKETS[i]`,
    the last one above every bucket) with the durations' sum [s]."""

    minute: int
    queue: str
    processed: int = 0
    retried: int = 0
    failed: int = 0
    duration_sum: float = 0.0
    histogram: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class StatsAddParams:
    """Add these per-minute deltas to the stored minutes (rows are summed, never replaced,
    so any number of workers report into the same minute)."""

    minutes: Sequence[StatsMinute]


@dataclass(frozen=True, slots=True)
class StatsHistoryParams:
    """Minutes at or after `since` (epoch seconds), optionally of one queue, summed into
    buckets of `step` seconds (a multiple of 60; a bucket is named by its first second)."""

    since: float
    queue: str | None = None
    step: int = 60


@dataclass(frozen=True, slots=True)
class StatsPruneParams:
    """Delete minutes before `before` (epoch seconds)."""

    before: float


# -- cron -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CronTick:
    """One tick of a cron trigger: `enqueued` (with its job), `skipped` or `manual`."""

    name: str
    tick: float
    status: str
    job_id: str | None = None
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class CronTickRecordParams:
    """Record a tick and enqueue its job (if any) in one transaction, unless it exists."""

    tick: CronTick
    job: NewMessage | None = None


@dataclass(frozen=True, slots=True)
class CronNameParams:
    """One trigger's ticks: the latest scheduled one, or the `limit` newest."""

    name: str
    limit: int = 1


# -- workers ----------------------------------------------------------------------------


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
class WorkerListParams:
    """Workers that reported at or after `since`."""

    since: float


# -- once -------------------------------------------------------------------------------


class OnceState(StrEnum):
    """`ctx.once`: run it now, here is the stored result, or someone else is running it."""

    CLAIMED = "claimed"
    DONE = "done"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class OnceClaimParams:
    """Claim the right to run the function for `key` (held `lease_seconds`)."""

    key: str
    owner: str
    lease_seconds: float


@dataclass(frozen=True, slots=True)
class OnceClaim:
    """What `once_claim` found: its state and, when `done`, the stored result."""

    state: OnceState
    result: bytes | None = None


@dataclass(frozen=True, slots=True)
class OnceFinishParams:
    """Store the function's result for `key` for `ttl` seconds."""

    key: str
    owner: str
    result: bytes
    ttl: float


@dataclass(frozen=True, slots=True)
class OnceAbandonParams:
    """The function failed: let another caller run it."""

    key: str
    owner: str


# -- documents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One stored document: its JSON `value` (encoded) and the time of its last write."""

    namespace: str
    key: str
    value: bytes
    updated_at: float


@dataclass(frozen=True, slots=True)
class DocPutManyParams:
    """Insert or replace documents of one namespace (`items`: key, encoded JSON), all or
    nothing; a key given twice keeps its last value."""

    namespace: str
    items: Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DocInsertParams:
    """Insert a document only if its key is absent and, with `max_count`, only while the
    namespace holds fewer than `max_count` documents (decided atomically)."""

    namespace: str
    key: str
    value: bytes
    max_count: int | None = None


@dataclass(frozen=True, slots=True)
class DocKeyParams:
    """One document by namespace and key."""

    namespace: str
    key: str


@dataclass(frozen=True, slots=True)
class DocListParams:
    """Documents of a namespace in key order, after `after` (exclusive), optionally only
    keys starting with `prefix`."""

    namespace: str
    limit: int = 100
    after: str | None = None
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class DocNamespaceParams:
    """A namespace by name."""

    namespace: str


@dataclass(frozen=True, slots=True)
class NamespaceCount:
    """A namespace and how many documents it holds."""

    namespace: str
    count: int


# -- the protocols ----------------------------------------------------------------------


class MessageStore(Protocol):
    """Messages: store, claim, settle, hand back, read; leases: extend, find expired."""

    async def lease_extend_many(self, params: LeaseExtendParams) -> int:
        """Heartbeat: push the expiry of live leases; return how many messages they hold."""
        ...

    async def lease_list_expired(self, params: ExpiredLeaseParams) -> list[ExpiredLease]:
        """Deliveries of a queue whose lease has expired (their worker is gone)."""
        ...

    async def message_claim_many(self, params: ClaimParams) -> ClaimResult:
        """Lease a batch of ready messages, counting one attempt on each; highest
        priority first, then oldest. When nothing is claimed, describe the queue."""
        ...

    async def flow_hold(self, params: FlowHoldParams) -> None:
        """Hold rate-limit buckets until `seconds` from now (never shortens a hold)."""
        ...

    async def flow_stats(self, params: FlowStatsParams) -> list[FlowStat]:
        """Per-limit key counts, running, waiting and recent starts."""
        ...

    async def flow_job_hold(self, params: FlowJobHoldParams) -> list[FlowHold]:
        """The buckets holding a pending job back, and until when."""
        ...

    async def message_enqueue_many(self, params: EnqueueParams) -> None:
        """Store messages all or nothing."""
        ...

    async def message_delete_many(self, params: MessageDeleteParams) -> int:
        """Delete messages of a queue that no consumer holds; return how many."""
        ...

    async def message_get(self, params: MessageGetParams) -> MessageRecord | None:
        """One message (or job) by id, or None."""
        ...

    async def message_list(self, params: MessageListParams) -> list[MessageRecord]:
        """A queue's messages, oldest first."""
        ...

    async def message_release_many(self, params: ReleaseParams) -> int:
        """Hand claimed-but-unstarted messages back, attempts restored; return how many."""
        ...

    async def message_settle_many(self, settlement: Settlement) -> SettleResult:
        """Apply every outcome of `settlement` in one transaction."""
        ...


class JobStore(Protocol):
    """Jobs: idempotent enqueue, history, listing, cancel, retry, progress, counts."""

    async def job_ahead_count(self, params: JobAheadParams) -> int:
        """Ready jobs of a queue that a pending job waits behind."""
        ...

    async def job_attempt_seq(self) -> int:
        """The sequence number of the latest attempt row (where a live feed starts)."""
        ...

    async def job_attempts(self, params: JobAttemptsParams) -> list[AttemptRecord]:
        """The delivery histories of jobs, first attempt first."""
        ...

    async def job_batch_counts(self, params: JobBatchGetParams) -> JobBatchCounts | None:
        """A batch's type, total and its jobs counted by state; None if unknown."""
        ...

    async def job_batch_create(self, params: JobBatchCreateParams) -> None:
        """Record a batch of jobs."""
        ...

    async def job_batch_list(self, params: JobBatchListParams) -> list[JobBatchSummary]:
        """The newest batches, newest first, with their jobs counted by state."""
        ...

    async def job_batch_raise_total(self, params: JobBatchTotalParams) -> None:
        """Raise a batch's total to `params.total` if it is lower (never lowers it)."""
        ...

    async def job_cancel(self, params: JobIdParams) -> JobCancelResult:
        """Cancel a pending job now, or request the cancellation of a running one,
        decided on the job's row in one transaction."""
        ...

    async def job_cancel_requested(self, params: CancelRequestedParams) -> list[str]:
        """Ids of running jobs under these leases whose cancellation was requested."""
        ...

    async def job_counts(self, params: JobCountParams) -> list[JobCount]:
        """Jobs counted by queue, type and state."""
        ...

    async def job_delete_many(self, params: JobDeleteParams) -> int:
        """Delete jobs (and their attempt rows); return how many jobs were deleted."""
        ...

    async def job_enqueue(self, params: JobEnqueueParams) -> EnqueueResult:
        """Store one job in one round trip; with an idempotency key an earlier job wins."""
        ...

    async def job_events(self, params: JobEventsParams) -> list[JobEvent]:
        """Job events after the cursor, oldest first (for `taskflare tail`)."""
        ...

    async def job_list(self, params: JobFilter) -> list[MessageRecord]:
        """Jobs, newest first."""
        ...

    async def job_progress(self, params: JobProgressParams) -> bool:
        """Record a running job's progress; False if the lease was lost."""
        ...

    async def job_prune(self, params: PruneParams) -> int:
        """Delete finished jobs and failed messages past retention, and expired keys."""
        ...

    async def job_retry(self, params: JobIdParams) -> JobRetryResult:
        """Put a failed or cancelled job back to pending with a fresh attempt budget."""
        ...

    async def job_search(self, params: JobSearchParams) -> JobSearchResult:
        """Jobs matching the filters, newest first, one page."""
        ...

    async def job_search_count(self, params: JobSearchParams) -> int:
        """How many jobs match the filters, counting at most `count_limit` (`limit`,
        `before` and `scan_limit` ignored)."""
        ...


class QueueStore(Protocol):
    """Queues: declare, pause, inspect, count, purge, replay dead letters."""

    async def dead_letter_reprocess(self, params: DeadLetterReprocessParams) -> int:
        """Send dead letters back to their origin; return how many were sent back."""
        ...

    async def queue_counts(self, params: QueueCountsParams) -> list[QueueCounts]:
        """Messages counted by state, per queue."""
        ...

    async def queue_declare_many(self, params: QueueDeclareParams) -> None:
        """Record queues and their settings."""
        ...

    async def queue_delete(self, params: QueueDeleteParams) -> int:
        """Delete a queue's messages (all states) and stored settings; return how many
        messages went. Idempotent."""
        ...

    async def queue_depths(self, params: QueueCountsParams) -> list[QueueDepth]:
        """Every queue (stored, or holding messages) with its unfinished and failed
        messages counted, without reading finished rows (the dashboard's live view)."""
        ...

    async def queue_rows(self, params: QueueCountsParams) -> list[QueueDepth]:
        """Every stored queue row (or just `params.queue`): name, paused, settings; no
        counts (they stay 0)."""
        ...

    async def queue_pause(self, params: QueuePauseParams) -> None:
        """Pause or resume a queue."""
        ...

    async def queue_purge(self, params: QueuePurgeParams) -> int:
        """Delete every ready (undelivered or delayed) message of a queue, not leased
        ones; return how many."""
        ...

    async def queue_ready_info(self, params: ReadyInfoParams) -> ReadyInfo:
        """What a queue has ready now and when delayed work becomes ready."""
        ...


class CronStore(Protocol):
    """Cron ticks: one row per trigger and tick decides that it runs once."""

    async def cron_last_tick(self, params: CronNameParams) -> float | None:
        """The latest scheduled tick recorded for a trigger (manual fires excluded)."""
        ...

    async def cron_recent(self, params: CronNameParams) -> list[CronTick]:
        """A trigger's latest `limit` ticks, newest first."""
        ...

    async def cron_tick_record(self, params: CronTickRecordParams) -> bool:
        """Record a tick (and enqueue its job) unless it exists; True when this call did."""
        ...


class WorkerStore(Protocol):
    """Worker reports: who is alive and what they have done."""

    async def worker_list(self, params: WorkerListParams) -> list[WorkerReport]:
        """Workers that reported at or after `since`."""
        ...

    async def worker_report(self, report: WorkerReport) -> None:
        """Upsert a worker's report (its `last_seen` is the backend's clock)."""
        ...

    async def worker_gone(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly (no-op for an unknown id): it is no
        longer counted as alive, at once rather than once its report grows old."""
        ...


class StatsStore(Protocol):
    """Per-minute history of what the workers did, kept in the database (bounded)."""

    async def stats_add(self, params: StatsAddParams) -> None:
        """Add per-minute deltas."""
        ...

    async def stats_history(self, params: StatsHistoryParams) -> list[StatsMinute]:
        """Stored minutes, oldest first."""
        ...

    async def stats_prune(self, params: StatsPruneParams) -> int:
        """Delete old minutes; return how many rows."""
        ...


class OnceStore(Protocol):
    """`ctx.once` results: run a function once per key across all workers."""

    async def once_abandon(self, params: OnceAbandonParams) -> None:
        """Give up a claim so another caller can run the function."""
        ...

    async def once_claim(self, params: OnceClaimParams) -> OnceClaim:
        """Claim `key`, or read its stored result, or learn that someone is running it."""
        ...

    async def once_finish(self, params: OnceFinishParams) -> None:
        """Store the result of `key` for `ttl` seconds."""
        ...


class DocumentStore(Protocol):
    """The namespaced document store: JSON documents by (namespace, key)."""

    async def doc_count(self, params: DocNamespaceParams) -> int:
        """How many documents a namespace holds."""
        ...

    async def doc_delete(self, params: DocKeyParams) -> bool:
        """Delete one document; True if it existed."""
        ...

    async def doc_get(self, params: DocKeyParams) -> DocumentRecord | None:
        """One document, or None."""
        ...

    async def doc_insert(self, params: DocInsertParams) -> bool:
        """Insert a document if absent (and the namespace is under `max_count`); True if
        this call stored it."""
        ...

    async def doc_list(self, params: DocListParams) -> list[DocumentRecord]:
        """A page of a namespace's documents in key order."""
        ...

    async def doc_namespaces(self) -> list[NamespaceCount]:
        """Every namespace that holds documents, by name, with its count."""
        ...

    async def doc_put_many(self, params: DocPutManyParams) -> None:
        """Insert or replace documents of one namespace in one transaction."""
        ...


class Notifier(Protocol):
    """Change signals: a waiter reads `change_seq(topic)` before looking at the database,
    then `wait_for_change(topic, seq, timeout)`; a change committed in between (by this
    process or any other) is never missed, only noticed late by at most the poll interval
    of backends that must poll for other processes' writes."""

    def change_seq(self, topic: str) -> int:
        """A counter that moves whenever `topic` is raised (or anything may have changed)."""
        ...

    async def wait_for_change(self, topic: str, since: int, timeout: float) -> bool:
        """Return True once `change_seq(topic)` moved past `since`, False after `timeout`."""
        ...


class Backend(
    MessageStore,
    JobStore,
    QueueStore,
    CronStore,
    WorkerStore,
    StatsStore,
    OnceStore,
    DocumentStore,
    Notifier,
    Protocol,
):
    """Everything the worker, producers and admin tools need from storage."""

    url_for_logs: str
    # How many jobs `enqueue_many` stores per transaction when the call names no
    # `chunk_size`: what one transaction of this storage takes without keeping others
    # waiting (a SQLite transaction holds the database's only write lock).
    enqueue_chunk: int

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied."""
        ...

    async def refresh_statistics(self) -> bool:
        """Bring the query planner's statistics of the message table up to date when they
        are far behind what it holds (a burst into a fresh table); True if this call did.
        Workers call it at start and every `STATISTICS_INTERVAL` seconds."""
        ...

    async def ping(self) -> None:
        """One cheap read of this app's schema; raises `BackendUnavailable` when the
        database (or the schema) does not answer. Used by `GET /health`."""
        ...
