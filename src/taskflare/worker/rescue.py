"""Lease rescue: deliveries whose worker stopped or lost contact, settled by the policy.

Two steps, as River's job rescuer does: read the expired leases, decide each one with
the outcome policy (retried, or failed and dead-lettered once out of its own attempts;
a job's history gets its `lost` attempt), and apply that as a settlement that only
takes effect while the lease is still expired, so a lease a late heartbeat extended is
left alone and two rescuers never both apply one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..backends.base import AttemptRecord, Backend, ExpiredLeaseParams, State
from ..policy import Decision, Delivery, LeaseExpired, decide
from ..registry import QueueSpec
from .batch_runner import as_settlement

RESCUE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RescueResult:
    """What a rescue pass did: deliveries requeued, and failed (or cancelled)."""

    requeued: int = 0
    failed: int = 0


async def rescue_expired(backend: Backend, spec: QueueSpec) -> RescueResult:
    """Settle every expired lease of one queue (in chunks of `RESCUE_CHUNK`)."""
    requeued = failed = 0
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
        requeued += result.count(State.READY)
        failed += len(result.states) - result.count(State.READY)
        if len(expired) < RESCUE_CHUNK or not result.states:
            break
    return RescueResult(requeued, failed)
