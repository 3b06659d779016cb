"""Lease rescue: deliveries whose worker stopped or lost contact, settled by the policy.

Two steps, as River's job rescuer does: read the expired leases, decide each one with
the outcome policy (retried, or failed and dead-lettered once out of its own attempts;
a job's history gets its `lost` attempt), and apply that as a settlement that only
takes effect while the lease is still expired, so a lease a late heartbeat extended is
left alone and two rescuers never both apply one. What was stored is then reported as
a worker reports its own outcomes (lifecycle events, a `taskflare.jobs` line), since
the worker that died cannot: a job failed by a crash on its last attempt is the failure
an `on("failed")` alert most needs to hear of.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from ..backends.base import (
    AttemptRecord,
    Backend,
    ExpiredLease,
    ExpiredLeaseParams,
    FailOutcome,
    SettleResult,
    State,
)
from ..events import log_event, wanted
from ..policy import Decision, Delivery, LeaseExpired, decide
from ..registry import QueueSpec
from ..registry.hooks import Hooks, LifecycleEvent
from .batch_runner import as_settlement

RESCUE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RescueResult:
    """What a rescue pass did: deliveries requeued, and failed (or cancelled: `cancelled`
    counts those of them)."""

    requeued: int = 0
    failed: int = 0
    cancelled: int = 0


async def rescue_expired(
    backend: Backend, spec: QueueSpec, hooks: Hooks | None = None
) -> RescueResult:
    """Settle every expired lease of one queue (in chunks of `RESCUE_CHUNK`), and report
    each outcome stored: to `hooks`' listeners, and jobs' to the `taskflare.jobs` log."""
    requeued = failed = cancelled = 0
    while True:
        expired = await backend.lease_list_expired(ExpiredLeaseParams(spec.name, RESCUE_CHUNK))
        if not expired:
            break
        decisions: list[Decision] = []
        attempts: list[AttemptRecord] = []
        now = time.time()
        for lease in expired:
            is_job = lease.type is not None
            delivery = Delivery(
                lease.id,
                lease.lease_id,
                lease.attempts,
                lease.max_attempts or spec.config.max_attempts,
                spec.config.dead_letter_queue,
                is_job=is_job,
            )
            decision = decide(delivery, LeaseExpired())
            decisions.append(decision)
            if is_job:
                attempts.append(
                    AttemptRecord(
                        lease.id,
                        lease.attempts,
                        lease.lease_owner,
                        lease.started_at,
                        now,
                        decision.attempt_outcome,
                        decision.error,
                    )
                )
        result = await backend.message_settle_many(as_settlement(decisions, attempts))
        _report(spec.name, expired, decisions, result, hooks, now)
        requeued += result.count(State.READY)
        failed += len(result.states) - result.count(State.READY)
        cancelled += result.count(State.CANCELLED)
        if len(expired) < RESCUE_CHUNK or not result.states:
            break
    return RescueResult(requeued, failed, cancelled)


# The state a rescue stored → the lifecycle event and the jobs log line it is reported as.
_LIFECYCLE: dict[str, str] = {State.READY: "retried", State.FAILED: "failed"}


def _report(
    queue: str,
    expired: list[ExpiredLease],
    decisions: list[Decision],
    result: SettleResult,
    hooks: Hooks | None,
    now: float,
) -> None:
    """Tell what each rescued delivery became (nothing for one a heartbeat kept)."""
    for lease, decision in zip(expired, decisions, strict=True):
        state = result.states.get(lease.id)
        if state is None:
            continue
        name = _LIFECYCLE.get(state, "cancelled")  # a job whose cancel came first
        error = None if name == "cancelled" else decision.error
        delay = decision.delay_seconds if name == "retried" else None
        duration = None if lease.started_at is None else max(now - lease.started_at, 0.0)
        if lease.type is not None and wanted(name):
            fields: dict[str, Any] = {
                "duration_ms": None if duration is None else round(duration * 1000, 3)
            }
            if name == "retried":
                fields |= {"error": error, "delay_s": delay}
            elif name == "failed":
                fields |= {"error": error, "permanent": False}
            log_event(
                name,
                job_id=lease.id,
                type=lease.type,
                queue=queue,
                attempt=lease.attempts,
                correlation_id=None,
                **fields,
            )
        if hooks is not None:
            _emit(hooks, name, queue, lease, decision, error, delay, duration)


def _emit(
    hooks: Hooks,
    name: str,
    queue: str,
    lease: ExpiredLease,
    decision: Decision,
    error: str | None,
    delay: float | None,
    duration: float | None,
) -> None:
    """The lifecycle events of one rescued delivery (and `dead_lettered` after `failed`)."""
    kind: Literal["job", "message"] = "message" if lease.type is None else "job"

    def event(name: str, **more: Any) -> LifecycleEvent:
        return LifecycleEvent(
            name, kind, queue, lease.id, lease.attempts, type=lease.type, duration=duration, **more
        )

    events = []
    if hooks.wants(name):
        events.append(event(name, error=error, delay_seconds=delay))
    outcome = decision.outcome
    dlq = outcome.dead_letter_queue if isinstance(outcome, FailOutcome) else None
    if name == "failed" and dlq and hooks.wants("dead_lettered"):
        events.append(event("dead_lettered", error=error, dead_letter_queue=dlq))
    hooks.emit_all(events)
