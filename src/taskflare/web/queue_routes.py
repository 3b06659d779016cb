"""Queue administration, dead letters, HTTP producers and Cloudflare-compatible pull consumers."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ..app import App
from ..backends.base import (
    ClaimParams,
    FailOutcome,
    LeaseRef,
    QueueCounts,
    RescueParams,
    RetryOutcome,
    Settlement,
)
from ..encoding import BYTES, TEXT
from ..errors import InvalidMessage, UnknownQueue
from ..ids import uuid7
from ..queue import Queue
from ..views import message_dict, queue_dict
from .common import ERRORS, ApiError
from .security import no_control_characters

MAX_PULL_BATCH = 100
MAX_VISIBILITY_MS = 12 * 3600 * 1000


class PurgeRequest(BaseModel):
    """`POST /queues/{name}/purge`: `confirm` must repeat the queue's name."""

    confirm: str


class OutgoingMessage(BaseModel):
    """One message to send over HTTP (Cloudflare's field names; camelCase also accepted)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    body: Any = None
    content_type: str = Field(default="json", alias="contentType")
    delay_seconds: float | None = Field(default=None, ge=0, le=365 * 86_400, alias="delaySeconds")


class SendRequest(BaseModel):
    """`POST /queues/{name}/messages`: one message (`body`) or a batch (`messages`)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    body: Any = None
    content_type: str = Field(default="json", alias="contentType")
    delay_seconds: float = Field(default=0, ge=0, le=365 * 86_400, alias="delaySeconds")
    messages: list[OutgoingMessage] | None = Field(default=None, min_length=1, max_length=100)


class ReprocessRequest(BaseModel):
    """`POST /queues/{name}/dlq/reprocess`: all dead letters, or only these ids."""

    ids: list[str] | None = Field(default=None, max_length=10_000)
    check_text = no_control_characters("ids")


class PullRequest(BaseModel):
    """Cloudflare's pull request body."""

    batch_size: int = Field(default=5, ge=1, le=MAX_PULL_BATCH)
    visibility_timeout_ms: int = Field(default=30_000, ge=1, le=MAX_VISIBILITY_MS)


class LeaseAck(BaseModel):
    """An ack of one pulled message."""

    lease_id: str = Field(min_length=1, max_length=500)
    check_text = no_control_characters("lease_id", base64url=True)


class LeaseRetry(BaseModel):
    """A retry of one pulled message."""

    lease_id: str = Field(min_length=1, max_length=500)
    delay_seconds: float = Field(default=0, ge=0, le=86_400)
    check_text = no_control_characters("lease_id", base64url=True)


class AckRequest(BaseModel):
    """Cloudflare's ack request body."""

    acks: list[LeaseAck] = Field(default_factory=list, max_length=1000)
    retries: list[LeaseRetry] = Field(default_factory=list, max_length=1000)


class Envelope(BaseModel):
    """A successful answer; the payload fields vary by endpoint."""

    model_config = ConfigDict(extra="allow")

    success: bool = True


def encode_lease(message_id: str, lease_id: str, attempts: int) -> str:
    """A pull consumer's per-message lease id: the message, the claim it belongs to, and
    the delivery's attempt number (a later claim of the message has a higher one)."""
    raw = f"{message_id}:{lease_id}:{attempts}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_lease(token: str) -> tuple[LeaseRef, int] | None:
    """The (message, lease) and attempt a pull lease id stands for, or None if not ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = raw.split(":")
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        return None
    return LeaseRef(parts[0], parts[1]), int(parts[2])


def queue_router(app: App) -> APIRouter:
    """The routes, bound to `app`."""
    router = APIRouter(tags=["queues"], responses=ERRORS)

    async def known(name: str) -> Queue:
        try:
            return app.get_queue(name)
        except UnknownQueue as exc:
            raise ApiError(404, str(exc), "unknown_queue") from None

    async def counts_of(name: str) -> QueueCounts:
        backend = await app.backend()
        rows = await backend.queue_counts(name)
        return rows[0] if rows else QueueCounts(name=name, paused=False)

    @router.get("/queues", response_model=Envelope)
    async def list_queues() -> dict[str, Any]:
        backend = await app.backend()
        rows = {c.name: c for c in await backend.queue_counts()}
        for name in app.queues:
            rows.setdefault(name, QueueCounts(name=name, paused=False))
        queues = [queue_dict(app, rows[name]) for name in sorted(rows)]
        return {"success": True, "count": len(queues), "queues": queues}

    @router.get("/queues/{name}", response_model=Envelope)
    async def get_queue(name: str) -> dict[str, Any]:
        await known(name)
        return {"success": True, "queue": queue_dict(app, await counts_of(name))}

    @router.post("/queues/{name}/pause", response_model=Envelope)
    async def pause(name: str) -> dict[str, Any]:
        await (await known(name)).pause()
        return {"success": True, "message": f"Queue {name} paused", "paused": True}

    @router.post("/queues/{name}/resume", response_model=Envelope)
    async def resume(name: str) -> dict[str, Any]:
        await (await known(name)).resume()
        return {"success": True, "message": f"Queue {name} resumed", "paused": False}

    @router.post("/queues/{name}/purge", response_model=Envelope)
    async def purge(name: str, body: PurgeRequest) -> dict[str, Any]:
        await known(name)
        if body.confirm != name:
            raise ApiError(400, f'purge needs {{"confirm": "{name}"}}', "confirm_mismatch")
        purged = await (await app.backend()).queue_purge(name)
        return {"success": True, "message": f"Purged {purged} messages", "purged": purged}

    @router.post("/queues/{name}/messages", response_model=Envelope)
    async def send(name: str, body: SendRequest) -> dict[str, Any]:
        queue = await known(name)
        try:
            if body.messages is not None:
                ids = await queue.send_batch(
                    [_outgoing(m) for m in body.messages], delay_seconds=body.delay_seconds
                )
                return {"success": True, "ids": ids, "count": len(ids)}
            message_id = await queue.send(
                _decode_http_body(body.body, body.content_type),
                delay_seconds=body.delay_seconds,
                content_type=body.content_type,
            )
        except InvalidMessage as exc:
            status = 413 if "limit" in str(exc) else 422
            raise ApiError(status, str(exc), "invalid_message") from None
        return {"success": True, "id": message_id, "ids": [message_id], "count": 1}

    @router.get("/queues/{name}/dlq", response_model=Envelope)
    async def list_dead_letters(
        name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        dlq = _dlq_of(await known(name))
        records = await (await app.backend()).message_list(dlq, "ready", limit)
        return {
            "success": True,
            "queue": name,
            "deadLetterQueue": dlq,
            "count": len(records),
            "messages": [message_dict(r) for r in records],
        }

    @router.post("/queues/{name}/dlq/reprocess", response_model=Envelope)
    async def reprocess(name: str, body: ReprocessRequest | None = None) -> dict[str, Any]:
        dlq = _dlq_of(await known(name))
        ids = body.ids if body is not None else None
        count = await (await app.backend()).dead_letter_reprocess(dlq, ids)
        return {"success": True, "message": f"Reprocessed {count} messages", "reprocessed": count}

    @router.post("/queues/{name}/messages/pull", response_model=Envelope)
    async def pull(name: str, body: PullRequest | None = None) -> dict[str, Any]:
        return await _pull(app, await known(name), body or PullRequest())

    @router.post("/queues/{name}/messages/ack", response_model=Envelope)
    async def ack(name: str, body: AckRequest) -> dict[str, Any]:
        return await _ack(app, await known(name), body)

    return router


def _dlq_of(queue: Queue) -> str:
    if not queue.config.dead_letter_queue:
        raise ApiError(404, f"queue {queue.name!r} has no dead_letter_queue", "no_dlq")
    return queue.config.dead_letter_queue


def _decode_http_body(body: Any, content_type: str) -> Any:
    """Over HTTP a `bytes` body travels as base64 text."""
    if content_type.lower() == BYTES:
        if not isinstance(body, str):
            raise InvalidMessage("a bytes body must be sent base64-encoded as a string")
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidMessage("a bytes body must be valid base64") from None
    return body


def _outgoing(message: OutgoingMessage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "body": _decode_http_body(message.body, message.content_type),
        "content_type": message.content_type,
    }
    if message.delay_seconds is not None:
        item["delay_seconds"] = message.delay_seconds
    return item


def _pull_body(record_body: bytes, content_type: str) -> str:
    """Cloudflare's pull encoding: text as is, JSON and bytes base64."""
    if content_type == TEXT:
        return bytes(record_body).decode("utf-8", "replace")
    return base64.b64encode(record_body).decode()


async def _pull(app: App, queue: Queue, request: PullRequest) -> dict[str, Any]:
    backend = await app.backend()
    cfg = queue.config
    await backend.lease_rescue_expired(
        RescueParams(queue.name, cfg.max_attempts, cfg.dead_letter_queue)
    )
    info = await backend.queue_ready_info(queue.name, MAX_PULL_BATCH)
    if info.paused:
        raise ApiError(409, f"queue {queue.name!r} is paused", "queue_delivery_paused")
    claimed = await backend.message_claim_many(
        ClaimParams(
            queue=queue.name,
            limit=request.batch_size,
            lease_id=uuid7(),
            owner="http-pull",
            visibility_timeout=request.visibility_timeout_ms / 1000,
        )
    )
    messages = [
        {
            "id": m.id,
            "body": _pull_body(m.body, m.content_type),
            "timestamp_ms": int(m.created_at * 1000),
            "attempts": m.attempts,
            "lease_id": encode_lease(m.id, m.lease_id, m.attempts),
            "metadata": {"CF-Content-Type": m.content_type},
        }
        for m in claimed
    ]
    backlog = max(info.ready_count - len(messages), 0)
    result = {"message_backlog_count": backlog, "messages": messages}
    return {"success": True, "errors": [], "messages": [], "result": result}


async def _ack(app: App, queue: Queue, request: AckRequest) -> dict[str, Any]:
    backend = await app.backend()
    cfg = queue.config
    warnings: dict[str, str] = {}
    acks: list[LeaseRef] = []
    retries: list[RetryOutcome] = []
    fails: list[FailOutcome] = []
    items: list[LeaseAck | LeaseRetry] = [*request.acks, *request.retries]
    for item in items:
        decoded = decode_lease(item.lease_id)
        ref, attempt = decoded if decoded else (None, 0)
        record = await backend.message_get(ref.id) if ref else None
        if ref is None or record is None or record.queue != queue.name:
            warnings[item.lease_id] = "unknown lease id (the message may already be acked)"
            continue
        if record.state != "leased":
            warnings[item.lease_id] = f"message is {record.state}; its lease has ended"
            continue
        if record.attempts != attempt:
            # Its lease expired and another pull took the message: that consumer holds it now.
            warnings[item.lease_id] = "lease expired and the message was pulled again"
            continue
        if isinstance(item, LeaseAck):
            acks.append(ref)
        elif record.attempts >= cfg.max_attempts:
            dlq = cfg.dead_letter_queue
            fails.append(
                FailOutcome(
                    ref.id,
                    ref.lease_id,
                    "retried by the pull consumer",
                    dlq,
                    uuid7() if dlq else None,
                )
            )
        else:
            retries.append(
                RetryOutcome(
                    ref.id, ref.lease_id, item.delay_seconds, "retried by the pull consumer"
                )
            )
    result = await backend.message_settle_many(Settlement(acks, retries, fails))
    lost = (len(acks) + len(retries) + len(fails)) - (result.acked + result.retried + result.failed)
    if lost:
        warnings["_"] = f"{lost} leases had passed to another consumer"
    body = {
        "ackCount": result.acked,
        "retryCount": result.retried + result.failed,
        "warnings": warnings,
    }
    return {"success": True, "errors": [], **body, "result": body}
