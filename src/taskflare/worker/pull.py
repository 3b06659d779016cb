"""Pull consumers (Cloudflare's HTTP pull API): lease a batch, then ack or retry by lease id.

The consumer runs elsewhere; taskflare only leases messages to it and applies its acks
and retries, deciding each retry with the same outcome policy as its own workers
(a retry after the last attempt fails and dead-letters the message). As Cloudflare
does, a late ack (after the visibility timeout, even after another consumer pulled the
message) is still accepted: the message is done. Job queues are not pulled: a job has a
lifecycle (status, history, result) that only a taskflare worker gives it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import (
    Backend,
    ClaimedMessage,
    ClaimParams,
    LeaseRef,
    MessageGetParams,
    MessageRecord,
    ReadyInfoParams,
    Settlement,
    State,
)
from ..encoding import TEXT
from ..errors import InvalidMessage
from ..ids import uuid7
from ..policy import Delivery, RetryRequested, decide
from ..registry import JOBS, QueueSpec
from ..text import CONTROL
from .batch_runner import as_settlement
from .rescue import rescue_expired

MAX_PULL_BATCH = 100
# `message_backlog_count` counts the ready messages up to this many (one index range
# count per pull; Cloudflare's backlog figures are approximate too).
BACKLOG_COUNTED = 10_000
PULL_OWNER = "http-pull"
PULL_RETRY_REASON = "retried by the pull consumer"


class QueuePaused(InvalidMessage):
    """The queue is paused: nothing is delivered (Cloudflare: 409 `queue_delivery_paused`)."""


class NotPullable(InvalidMessage):
    """A job queue cannot be pulled: its jobs are run by taskflare workers."""


class HasConsumer(NotPullable):
    """A queue whose batches a taskflare consumer runs is not pulled too: Cloudflare
    gives a queue one consumer, a Worker or an HTTP pull consumer."""


def encode_lease(message_id: str, lease_id: str, attempts: int) -> str:
    """A pull consumer's per-message lease id: the message, the claim it belongs to, and
    the delivery's attempt number (a later claim of the message has a higher one)."""
    raw = f"{message_id}:{lease_id}:{attempts}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_lease(token: str) -> tuple[LeaseRef, int] | None:
    """The (message, lease) and attempt a pull lease id stands for, or None if it is not
    one `encode_lease` made (any other text, whatever it decodes to: an unknown lease)."""
    if not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = raw.split(":")
    if len(parts) != 3 or not all(parts) or CONTROL.search(raw):
        return None
    if not (parts[2].isascii() and parts[2].isdigit()):  # int() also reads "٣", not "²"
        return None
    return LeaseRef(parts[0], parts[1]), int(parts[2])


def pull_body(message: ClaimedMessage) -> str:
    """Cloudflare's pull encoding: text as is, JSON and bytes base64."""
    if message.content_type == TEXT:
        return bytes(message.body).decode("utf-8", "replace")
    return base64.b64encode(message.body).decode()


@dataclass(frozen=True, slots=True)
class Pulled:
    """A pulled batch and how many ready messages remain."""

    messages: list[ClaimedMessage]
    backlog: int


async def pull(
    backend: Backend, spec: QueueSpec, batch_size: int, visibility_timeout: float
) -> Pulled:
    """Lease up to `batch_size` ready messages for `visibility_timeout` seconds."""
    refusal = spec.pull_refusal
    if refusal == JOBS:
        raise NotPullable(
            f"queue {spec.name!r} runs job types; pull consumers read message queues (jobs "
            "are run by taskflare workers, which record their status and history)"
        )
    if refusal is not None:
        raise HasConsumer(
            f"queue {spec.name!r} has a consumer (taskflare workers run its batches); a "
            "queue has one consumer, as on Cloudflare, so it is not pulled as well: pull "
            "from a queue declared without a consumer"
        )
    await rescue_expired(backend, spec)
    info = await backend.queue_ready_info(ReadyInfoParams(spec.name, BACKLOG_COUNTED))
    if info.paused:
        raise QueuePaused(f"queue {spec.name!r} is paused")
    result = await backend.message_claim_many(
        ClaimParams(
            queue=spec.name,
            limit=batch_size,
            lease_id=uuid7(),
            owner=PULL_OWNER,
            visibility_timeout=visibility_timeout,
        )
    )
    return Pulled(result.messages, max(info.ready_count - len(result.messages), 0))


@dataclass(slots=True)
class AckResult:
    """Cloudflare's ack answer: acks and retries applied, and a warning per lease id that
    could not be applied."""

    acked: int = 0
    retried: int = 0
    warnings: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`{ackCount, retryCount, warnings}`."""
        return {"ackCount": self.acked, "retryCount": self.retried, "warnings": self.warnings}


async def ack(
    backend: Backend,
    spec: QueueSpec,
    acks: Sequence[str],
    retries: Sequence[tuple[str, float | None]],
) -> AckResult:
    """Apply acks (lease ids) and retries (lease id, delay [s]) of pulled messages; a
    retry's delay None is the queue's `retry_delay` (Cloudflare's consumer default)."""
    out = AckResult()
    acked: list[tuple[str, LeaseRef]] = []
    decisions = []
    tokens: dict[str, str] = {}
    acked_ids: set[str] = set()
    for token in acks:
        found = await _known(backend, spec, token, out)
        if found is not None and found[0].id not in acked_ids:
            # A late ack is still accepted, as Cloudflare does: the message is done.
            # A message acked twice in one request is one ack.
            acked_ids.add(found[0].id)
            acked.append((token, LeaseRef(found[0].id, None)))
    for token, delay in retries:
        found = await _known(backend, spec, token, out)
        if found is None:
            continue
        ref, attempt, record = found
        if ref.id in acked_ids or ref.id in tokens:
            # Acked (or retried) in this same request: the first decision stands, on
            # either backend, and the message is counted once.
            out.warnings[token] = "message is also acked or retried in this request; ignored"
            continue
        if record.state != State.LEASED or record.attempts != attempt or ref.lease_id is None:
            out.warnings[token] = "lease expired and the message was pulled again"
            continue
        delivery = Delivery(
            ref.id, ref.lease_id, attempt, spec.config.max_attempts, spec.config.dead_letter_queue
        )
        wait = spec.config.retry_delay if delay is None else delay
        decisions.append(decide(delivery, RetryRequested(wait, PULL_RETRY_REASON)))
        tokens[ref.id] = token
    retried = as_settlement(decisions)
    settlement = Settlement(
        acks=[ref for _, ref in acked], retries=retried.retries, fails=retried.fails
    )
    result = await backend.message_settle_many(settlement)
    for token, ref in acked:
        if ref.id in result.states:
            out.acked += 1
        else:
            out.warnings[token] = "message already acked or gone"
    for message_id, token in tokens.items():
        if message_id in result.states:
            out.retried += 1
        else:
            out.warnings[token] = "lease had passed to another consumer"
    return out


async def _known(
    backend: Backend, spec: QueueSpec, token: str, out: AckResult
) -> tuple[LeaseRef, int, MessageRecord] | None:
    """The message a lease id names, if it is ours, of this queue and unfinished."""
    decoded = decode_lease(token)
    if decoded is None:
        out.warnings[token] = "unknown lease id (not one a pull of this server handed out)"
        return None
    record = await backend.message_get(MessageGetParams(decoded[0].id))
    if record is None or record.queue != spec.name:
        out.warnings[token] = "unknown lease id (the message may already be acked)"
        return None
    if record.state not in (State.READY, State.LEASED):
        out.warnings[token] = f"message is {record.state}; it is finished"
        return None
    ref, attempt = decoded
    return ref, attempt, record
