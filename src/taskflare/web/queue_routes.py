"""Queue administration, dead letters, HTTP producers and Cloudflare-compatible pull consumers."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..app import App
from ..encoding import BYTES
from ..errors import (
    BatchTooLarge,
    InvalidMessage,
    JobQueueSend,
    MessageTooLarge,
    UnknownQueue,
    in_item,
)
from ..queue import Queue
from ..worker.pull import (
    MAX_PULL_BATCH,
    HasConsumer,
    NotPullable,
    QueuePaused,
    ack,
    encode_lease,
    pull,
    pull_body,
)
from .common import ERRORS, ApiError, said
from .security import items_within, no_control_characters

MAX_VISIBILITY_MS = 12 * 3600 * 1000


class PurgeRequest(BaseModel):
    """`POST /queues/{name}/purge`: `confirm` must repeat the queue's name."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not ignored

    confirm: str


# The message fields that take two spellings: Cloudflare's and camelCase.
SPELLINGS = (("content_type", "contentType"), ("delay_seconds", "delaySeconds"))


def one_spelling(data: Any) -> Any:
    """Refuse a field given in both its spellings (which would otherwise be refused as an
    unknown field, `delay_seconds: Extra inputs are not permitted`, though it is not)."""
    if isinstance(data, dict):
        for snake, camel in SPELLINGS:
            if snake in data and camel in data:
                raise ValueError(
                    f"{snake}: give {snake} or {camel} (the same field in Cloudflare's "
                    "spelling and in camelCase), not both"
                )
    return data


class OutgoingMessage(BaseModel):
    """One message to send over HTTP (Cloudflare's field names; camelCase also accepted)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    body: Any = None
    content_type: str = Field(default="json", alias="contentType")
    delay_seconds: float | None = Field(
        default=None, ge=0, le=365 * 86_400, alias="delaySeconds", strict=True
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        return one_spelling(data)


class SendRequest(BaseModel):
    """`POST /queues/{name}/messages`: one message (`body`) or a batch (`messages`)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    body: Any = None
    content_type: str = Field(default="json", alias="contentType")
    # None: the queue's delivery_delay; 0 sends at once.
    delay_seconds: float | None = Field(
        default=None, ge=0, le=365 * 86_400, alias="delaySeconds", strict=True
    )
    messages: list[OutgoingMessage] | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        # `body` and `contentType` describe one message: beside a batch they would be
        # dropped in silence (a message the client sent, never stored), so say so.
        if isinstance(data, dict) and data.get("messages") is not None:
            for name in ("body", "contentType", "content_type"):
                if name in data:
                    raise ValueError(
                        f"{name}: give one message (body) or a batch (messages), not both; "
                        f"a batch's messages carry their own {name}"
                    )
        return one_spelling(data)


class ReprocessRequest(BaseModel):
    """`POST /queues/{name}/dlq/reprocess`: all dead letters, or only these ids."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not ignored

    ids: list[str] | None = Field(default=None, max_length=10_000)
    check_text = no_control_characters("ids")


class PullRequest(BaseModel):
    """Cloudflare's pull request body."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not ignored

    batch_size: int = Field(default=5, ge=1, le=MAX_PULL_BATCH, strict=True)
    visibility_timeout_ms: int | None = Field(default=None, ge=1, le=MAX_VISIBILITY_MS, strict=True)
    # The name Cloudflare's own pull example and `wrangler queues info` use, also in ms.
    visibility_timeout: int | None = Field(default=None, ge=1, le=MAX_VISIBILITY_MS, strict=True)

    @model_validator(mode="after")
    def _one_timeout(self) -> PullRequest:
        both = self.visibility_timeout_ms is not None and self.visibility_timeout is not None
        if both and self.visibility_timeout_ms != self.visibility_timeout:
            raise ValueError(
                "visibility_timeout: give visibility_timeout_ms or visibility_timeout "
                "(the same milliseconds), not two different values"
            )
        return self

    @property
    def timeout_ms(self) -> int | None:
        """The lease length asked for, in milliseconds; None when the request names none
        (the queue's own `visibility_timeout` then, 30 s unless declared otherwise)."""
        return self.visibility_timeout_ms or self.visibility_timeout


class LeaseAck(BaseModel):
    """An ack of one pulled message.

    `lease_id` is opaque: any text is accepted here, and one that is not a lease id this
    server handed out is an unknown lease (a warning keyed by it), never an error that
    would refuse the other acks and retries of the request.
    """

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not ignored

    lease_id: str


class LeaseRetry(BaseModel):
    """A retry of one pulled message (`lease_id` as in `LeaseAck`)."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not ignored

    lease_id: str
    # None: the queue's `retry_delay` (Cloudflare's consumer default); 0 overrides it.
    delay_seconds: float | None = Field(default=None, ge=0, le=86_400, strict=True)


class AckRequest(BaseModel):
    """Cloudflare's ack request body."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not ignored

    acks: list[LeaseAck] = Field(default_factory=list, max_length=1000)
    retries: list[LeaseRetry] = Field(default_factory=list, max_length=1000)


class Envelope(BaseModel):
    """A successful answer; the payload fields vary by endpoint."""

    model_config = ConfigDict(extra="allow")

    success: bool = True


def queue_router(app: App) -> APIRouter:
    """The routes, bound to `app`."""
    router = APIRouter(tags=["queues"], responses=ERRORS)

    def known(name: str) -> Queue:
        try:
            return app.get_queue(name)
        except UnknownQueue as exc:
            raise ApiError(404, said(exc), "unknown_queue") from None

    @router.get("/queues", response_model=Envelope)
    async def list_queues() -> dict[str, Any]:
        queues = await app.read.queues()
        return {"success": True, "count": len(queues), "queues": queues}

    @router.get("/queues/{name}", response_model=Envelope)
    async def get_queue(name: str) -> dict[str, Any]:
        known(name)
        return {"success": True, "queue": await app.read.queue(name)}

    @router.post("/queues/{name}/pause", response_model=Envelope)
    async def pause(name: str) -> dict[str, Any]:
        await known(name).pause()
        return {"success": True, "message": f"Queue {name} paused", "paused": True}

    @router.post("/queues/{name}/resume", response_model=Envelope)
    async def resume(name: str) -> dict[str, Any]:
        await known(name).resume()
        return {"success": True, "message": f"Queue {name} resumed", "paused": False}

    @router.post("/queues/{name}/purge", response_model=Envelope)
    async def purge(name: str, body: PurgeRequest) -> dict[str, Any]:
        queue = known(name)
        if body.confirm != name:
            raise ApiError(400, f'purge needs {{"confirm": "{name}"}}', "confirm_mismatch")
        purged = await queue.purge()
        return {"success": True, "message": f"Purged {purged} messages", "purged": purged}

    @router.post("/queues/{name}/messages", response_model=Envelope)
    async def send(name: str, body: SendRequest) -> dict[str, Any]:
        queue = known(name)
        if body.messages is None and "body" not in body.model_fields_set:
            raise ApiError(400, "a message needs a body (or messages: a batch)", "invalid")
        check_bodies(body.messages or [], "messages")
        try:
            if body.messages is not None:
                ids = await queue.send_batch(
                    outgoing_batch(body.messages), delay_seconds=body.delay_seconds
                )
                return {"success": True, "ids": ids, "count": len(ids)}
            message_id = await queue.send(
                decode_http_body(body.body, body.content_type),
                delay_seconds=body.delay_seconds,
                content_type=body.content_type,
            )
        except (MessageTooLarge, BatchTooLarge) as exc:
            raise ApiError(413, said(exc), "too_large") from None
        except JobQueueSend as exc:
            raise ApiError(409, said(exc), "job_queue") from None
        except InvalidMessage as exc:
            raise ApiError(422, said(exc), "invalid_message") from None
        return {"success": True, "id": message_id, "ids": [message_id], "count": 1}

    async def page_of(
        queue: str, state: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        try:
            page = await app.read.message_page(queue, state, limit, cursor)
            if (fit := items_within(page.messages)) < len(page.messages):  # ~8 MB at most
                page = await app.read.message_page(queue, state, fit, cursor)
        except ValueError as exc:
            raise ApiError(400, said(exc), "invalid") from None
        return page.messages, page.next_cursor

    @router.get("/queues/{name}/failed", response_model=Envelope)
    async def list_failed(
        name: str,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> dict[str, Any]:
        known(name)
        messages, next_cursor = await page_of(name, "failed", limit, cursor)
        return {
            "success": True,
            "queue": name,
            "count": len(messages),
            "messages": messages,
            "nextCursor": next_cursor,
        }

    @router.get("/queues/{name}/dlq", response_model=Envelope)
    async def list_dead_letters(
        name: str,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> dict[str, Any]:
        dlq = await _dlq_of(app, known(name))
        messages, next_cursor = await page_of(dlq, "ready", limit, cursor)
        return {
            "success": True,
            "queue": name,
            "deadLetterQueue": dlq,
            "count": len(messages),
            "messages": messages,
            "nextCursor": next_cursor,
        }

    @router.post("/queues/{name}/dlq/reprocess", response_model=Envelope)
    async def reprocess(name: str, body: ReprocessRequest | None = None) -> dict[str, Any]:
        queue = known(name)
        dlq = await _dlq_of(app, queue)
        ids = body.ids if body is not None else None
        if ids is not None and (missing := await app.read.not_dead_letters(dlq, ids, name)):
            shown = ", ".join(missing[:3]) + (
                f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            )
            raise ApiError(
                404,
                f"not dead letters of {name!r} (nothing was reprocessed): {shown}",
                "not_found",
            )
        count = await queue.replay_dead_letters(ids)
        return {"success": True, "message": f"Reprocessed {count} messages", "reprocessed": count}

    @router.post("/queues/{name}/messages/pull", response_model=Envelope)
    async def pull_messages(name: str, body: PullRequest | None = None) -> dict[str, Any]:
        known(name)
        result = await pull_result(app, name, body or PullRequest())
        return {"success": True, "errors": [], "messages": [], "result": result}

    @router.post("/queues/{name}/messages/ack", response_model=Envelope)
    async def ack_messages(name: str, body: AckRequest) -> dict[str, Any]:
        known(name)
        answer = await ack_result(app, name, body)
        return {"success": True, "errors": [], **answer, "result": answer}

    return router


async def pull_result(app: App, name: str, request: PullRequest) -> dict[str, Any]:
    """Lease up to `batch_size` messages of queue `name` (declared or stored) for a pull
    consumer: Cloudflare's pull `result` (`message_backlog_count`, `messages`)."""
    spec = app.registry.queue(name)
    asked = request.timeout_ms
    timeout = spec.config.visibility_timeout if asked is None else asked / 1000
    try:
        pulled = await pull(await app.backend(), spec, request.batch_size, timeout)
    except QueuePaused as exc:
        raise ApiError(409, said(exc), "queue_delivery_paused") from None
    except HasConsumer as exc:
        raise ApiError(409, said(exc), "has_consumer") from None
    except NotPullable as exc:
        raise ApiError(409, said(exc), "job_queue") from None
    messages = [
        {
            "id": m.id,
            "body": pull_body(m),
            "timestamp_ms": int(m.created_at * 1000),
            "attempts": m.attempts,
            "lease_id": encode_lease(m.id, m.lease_id, m.attempts),
            "metadata": {"CF-Content-Type": m.content_type},
        }
        for m in pulled.messages
    ]
    return {"message_backlog_count": pulled.backlog, "messages": messages}


async def ack_result(app: App, name: str, request: AckRequest) -> dict[str, Any]:
    """Settle pulled messages of queue `name`: Cloudflare's ack `result` (`ackCount`,
    `retryCount`, `warnings` by lease id)."""
    outcome = await ack(
        await app.backend(),
        app.registry.queue(name),
        [a.lease_id for a in request.acks],
        [(r.lease_id, r.delay_seconds) for r in request.retries],
    )
    return outcome.to_dict()


async def _dlq_of(app: App, queue: Queue) -> str:
    if not queue.config.dead_letter_queue:
        raise ApiError(404, await app.read.no_dead_letter_queue(queue.name), "no_dlq")
    return queue.config.dead_letter_queue


def decode_http_body(body: Any, content_type: str) -> Any:
    """Over HTTP a `bytes` body travels as base64 text."""
    if content_type.lower() == BYTES:
        if not isinstance(body, str):
            raise InvalidMessage("a bytes body must be sent base64-encoded as a string")
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidMessage("a bytes body must be valid base64") from None
    return body


def check_bodies(messages: list[OutgoingMessage], where: str) -> None:
    """A 400 naming the first message of a batch sent without a `body`."""
    for index, message in enumerate(messages):
        if "body" not in message.model_fields_set:
            raise ApiError(400, f"{where}[{index}] needs a body", "invalid")


def outgoing_batch(messages: list[OutgoingMessage]) -> list[dict[str, Any]]:
    """The items of a batch for `send_batch`; a body that cannot be decoded is named by
    its index (`messages[2]: a bytes body must be valid base64`)."""
    items = []
    for index, message in enumerate(messages):
        try:
            items.append(outgoing(message))
        except InvalidMessage as exc:
            raise in_item(exc, f"messages[{index}]") from None
    return items


def outgoing(message: OutgoingMessage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "body": decode_http_body(message.body, message.content_type),
        "content_type": message.content_type,
    }
    if message.delay_seconds is not None:
        item["delay_seconds"] = message.delay_seconds
    return item
