"""The outcome policy: what happens to a delivery, decided once, for every path.

One pure function, `decide`, turns a delivery's state and what became of it (the
handler succeeded, asked for a retry, raised, was cancelled, its worker shut down or
vanished) into the outcome a backend applies: ack or complete, retry after a delay,
fail (and dead-letter), or cancel. The message executor, the job runner, the HTTP
pull-consumer acks and the lease rescuer all call it; backends only apply the result.

The rules are Cloudflare Queues' (`attempts` counts deliveries, the current one
included; a delivery that would be retried after its `max_attempts`-th attempt fails
instead and moves to the dead-letter queue) plus the job rules of taskflare
(`PermanentError` and HTTP 4xx fail at once; a job's own backoff times its retries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .backends.base import (
    CancelOutcome,
    CompleteOutcome,
    FailOutcome,
    LeaseRef,
    RetryOutcome,
    Settlement,
)
from .ids import uuid7
from .messages import MAX_DELAY_SECONDS
from .retry import Backoff
from .text import clean_text


@dataclass(slots=True)
class Delivery:
    """One delivery as the policy sees it.

    `attempts`: deliveries so far, this one included; `max_attempts`: the delivery's
    budget (a job's own, else its queue's `max_retries + 1`); `backoff`: a job type's
    retry schedule (None for plain messages, whose delay comes with the outcome).
    """

    id: str
    lease_id: str
    attempts: int
    max_attempts: int
    dead_letter_queue: str | None = None
    is_job: bool = False
    backoff: Backoff | None = None


@dataclass(slots=True)
class Succeeded:
    """The handler returned (a job's JSON-encoded `result`)."""

    result: bytes | None = None


@dataclass(slots=True)
class RetryRequested:
    """The consumer asked for a retry (`message.retry()`, `retry_all()`, a pull retry)."""

    delay_seconds: float
    reason: str = "retried by the consumer"


@dataclass(slots=True)
class Failed:
    """The handler raised. `delay_seconds`: a delay it asked for (`Retry`, a 429's
    Retry-After, a consumer's retry delay); None lets a job's backoff decide, and so
    does `at_least` when the backoff is the longer (a delay a server asked for)."""

    error: str
    permanent: bool = False
    delay_seconds: float | None = None
    at_least: bool = False  # a server's delay: the job's backoff, if longer, wins


@dataclass(slots=True)
class Snoozed:
    """The handler asked to run again after `delay_seconds` without spending an attempt
    (`Snooze`, or `RateLimited`: then `backoff_keys` says the job's rate-limit keys back
    off too)."""

    delay_seconds: float
    reason: str
    backoff_keys: bool = False


@dataclass(slots=True)
class Cancelled:
    """A running job stopped because it was cancelled."""

    reason: str = "cancelled while running"


SHUTDOWN_ERROR = "the worker shut down before the handler finished"


@dataclass(slots=True)
class WorkerShutdown:
    """The worker stopped (past its grace period) before the handler finished; `error`
    says so (and, for a handler given up on, that it ignored its cancellation)."""

    error: str = SHUTDOWN_ERROR


@dataclass(slots=True)
class LeaseExpired:
    """The worker holding the delivery stopped or lost contact; its lease ran out."""


Outcome = Succeeded | RetryRequested | Failed | Snoozed | Cancelled | WorkerShutdown | LeaseExpired
Settled = LeaseRef | CompleteOutcome | RetryOutcome | FailOutcome | CancelOutcome


@dataclass(slots=True)
class Decision:
    """What to apply, and how the delivery's attempt ends (`attempt_outcome`: completed,
    acked, retried, snoozed, failed, cancelled or lost), with the error it ends with."""

    outcome: Settled
    attempt_outcome: str
    error: str | None = None
    delay_seconds: float | None = None
    permanent: bool = False


def decide(delivery: Delivery, outcome: Outcome, *, new_id: Callable[[], str] = uuid7) -> Decision:
    """Decide the fate of one delivery. Pure but for `new_id`, which names DLQ copies."""
    if isinstance(outcome, Succeeded):
        if delivery.is_job:
            return Decision(
                CompleteOutcome(delivery.id, delivery.lease_id, outcome.result), "completed"
            )
        return Decision(LeaseRef(delivery.id, delivery.lease_id), "acked")
    if isinstance(outcome, Snoozed):
        # Not a failure: the attempt is given back, so no budget check and no error.
        delay = _within_limit(outcome.delay_seconds)
        snooze = RetryOutcome(delivery.id, delivery.lease_id, delay, None, refund=True)
        return Decision(snooze, "snoozed", clean_text(outcome.reason), delay)
    if isinstance(outcome, Cancelled):
        reason = clean_text(outcome.reason)
        return Decision(CancelOutcome(delivery.id, delivery.lease_id, reason), "cancelled")
    error, delay, permanent, expired = _failure(delivery, outcome)
    delay = _within_limit(delay)
    lost = "lost" if expired else None
    if permanent or delivery.attempts >= delivery.max_attempts:
        if expired:
            error = _lost_for_good(delivery)
        dlq = delivery.dead_letter_queue
        fail = FailOutcome(
            delivery.id,
            delivery.lease_id,
            error,
            dlq,
            new_id() if dlq else None,
            require_expired=expired,
        )
        return Decision(fail, lost or "failed", error, permanent=permanent)
    retry = RetryOutcome(delivery.id, delivery.lease_id, delay, error, require_expired=expired)
    return Decision(retry, lost or "retried", error, delay)


def acked(refs: Iterable[LeaseRef]) -> Settlement:
    """What `decide(delivery, Succeeded())` gives plain messages, for many at once: each
    is acked. The batch runner's path for a batch whose consumer returned with nothing
    retried (no Decision built per message)."""
    return Settlement(acks=list(refs))


def _within_limit(delay: float) -> float:
    """A retry or snooze delay, at most one year (the limit of every delay taskflare
    stores): a server's `Retry-After: 1e300` or a `Retry(delay_seconds=1e12)` would
    otherwise store a time no datetime can show, and the job could not be read."""
    return min(delay, MAX_DELAY_SECONDS)


def _lost_for_good(delivery: Delivery) -> str:
    """The error of a delivery whose lease expired on its last attempt: the numbers are
    the delivery's own budget (a job's `max_attempts`, else its queue's)."""
    kind = "job" if delivery.is_job else "message"
    count = delivery.max_attempts
    which = "its only delivery" if count == 1 else f"the last of its {count} deliveries"
    return (
        f"lease expired on {which}: the worker holding this {kind} stopped or lost "
        f"contact (attempt {delivery.attempts} of {count})"
    )


def _failure(delivery: Delivery, outcome: Outcome) -> tuple[str, float, bool, bool]:
    """(error text, retry delay, permanent, lease expired) of an unsuccessful outcome."""
    if isinstance(outcome, RetryRequested):
        return clean_text(outcome.reason), outcome.delay_seconds, False, False
    if isinstance(outcome, Failed):
        delay = outcome.delay_seconds
        if delay is None or (outcome.at_least and delivery.backoff):
            backoff = delivery.backoff.delay(delivery.attempts) if delivery.backoff else 0.0
            delay = backoff if delay is None else max(delay, backoff)
        return clean_text(outcome.error), delay, outcome.permanent, False
    if isinstance(outcome, WorkerShutdown):
        return clean_text(outcome.error), 0.0, False, False
    kind = "job" if delivery.is_job else "message"
    return (
        f"lease expired: the worker holding this {kind} stopped or lost contact",
        0.0,
        False,
        True,
    )
