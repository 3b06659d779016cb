"""Cloudflare Queues' REST API (`/client/v4/accounts/{account_id}/queues/...`) over this app.

Code written against Cloudflare's API (the official SDKs, `curl` scripts) works when its
base URL is `http://<server>/client/v4`: the same paths, request fields and envelope
(`success`, `errors`, `messages`, `result`). Every route maps onto the queue operations and
the read model the rest of the HTTP service uses. A queue's id is its name; any account
id is accepted (the bearer token is what authenticates).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..app import App
from ..errors import BatchTooLarge, InvalidMessage, JobQueueSend, MessageTooLarge, UnknownQueue
from ..queue import Queue
from .common import ERRORS, ApiError, Receive, Scope, Send, said
from .queue_routes import (
    AckRequest,
    OutgoingMessage,
    PullRequest,
    ack_result,
    check_bodies,
    decode_http_body,
    outgoing_batch,
    pull_result,
)

ROOT = "/client/v4/"
PREFIX = "/client/v4/accounts/{account_id}/queues"


class CreateQueueRequest(BaseModel):
    """`POST .../queues`: Cloudflare's `queue_name` (other fields are ignored)."""

    queue_name: str = Field(min_length=1, max_length=255)


class BatchPushRequest(BaseModel):
    """`POST .../messages/batch`: up to 100 messages, and a delay for those setting none."""

    model_config = ConfigDict(extra="forbid")

    messages: list[OutgoingMessage] = Field(min_length=1, max_length=100)
    delay_seconds: float | None = Field(default=None, ge=0, le=365 * 86_400, strict=True)


class QueueSettingsPatch(BaseModel):
    """`settings` of `PATCH .../queues/{queue_id}`: only the pause flag is runtime state."""

    model_config = ConfigDict(extra="forbid")  # other settings live in the app's code

    delivery_paused: bool | None = Field(default=None, strict=True)


class QueuePatchRequest(BaseModel):
    """`PATCH .../queues/{queue_id}`, as `wrangler queues pause-delivery` sends it."""

    model_config = ConfigDict(extra="forbid")

    settings: QueueSettingsPatch


class PurgeStartRequest(BaseModel):
    """`POST .../purge`: must confirm with `delete_messages_permanently: true`."""

    delete_messages_permanently: bool = Field(default=False, strict=True)


class ErrorInfo(BaseModel):
    """One error of Cloudflare's envelope: `code` is the HTTP status."""

    code: int
    message: str


class CloudflareErrorBody(BaseModel):
    """Every error under `/client/v4/`: Cloudflare's envelope."""

    success: bool = False
    errors: list[ErrorInfo]
    messages: list[str] = Field(default_factory=list)
    result: None = None


CLOUDFLARE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": CloudflareErrorBody} for status in ERRORS
}


def envelope(result: Any) -> dict[str, Any]:
    """Cloudflare's success envelope around `result`."""
    return {"success": True, "errors": [], "messages": [], "result": result}


def error_envelope(message: str, status: int) -> bytes:
    """Cloudflare's error envelope: one error whose `code` is the HTTP status."""
    return orjson.dumps(
        {
            "success": False,
            "errors": [{"code": status, "message": message}],
            "messages": [],
            "result": None,
        }
    )


class CloudflareErrors:
    """ASGI middleware: under `/client/v4/`, rewrite the API's error body
    (`{"success": false, "error": ...}`), whichever layer answered, into Cloudflare's
    envelope, so the SDKs read the message where they expect it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or ROOT not in scope["path"]:
            await self.app(scope, receive, send)
            return
        start: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def rewrite(message: MutableMapping[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _converted(b"".join(chunks), start["status"])
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def _converted(body: bytes, status: int) -> bytes:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        message, code = parsed["error"], parsed.get("code")
        if isinstance(code, str) and code not in message:
            # Cloudflare names the error in its message (`queue_delivery_paused`), as its
            # runtime writes "<cause> (<code>)": keep the API's code readable here too.
            message = f"{message} ({code})"
        return error_envelope(message, status)
    return body


def cloudflare_queue(queue: dict[str, Any]) -> dict[str, Any]:
    """A queue as `GET /queues/{name}` shows it, in Cloudflare's shape (`queue_id` is the
    name; a worker consumer is listed with its batch settings)."""
    name = queue["name"]
    settings = queue["settings"] or {}
    consumers = []
    if queue["consumer"] is not None:
        consumers.append(
            {
                "type": "worker",
                "queue_name": name,
                "script_name": None,
                "dead_letter_queue": settings.get("dead_letter_queue"),
                "settings": {
                    "batch_size": settings.get("max_batch_size"),
                    "max_retries": settings.get("max_retries"),
                    "max_wait_time_ms": int(settings.get("max_batch_timeout", 0) * 1000),
                    "retry_delay": settings.get("retry_delay"),
                    "max_concurrency": settings.get("max_concurrency"),
                },
            }
        )
    return {
        "queue_id": name,
        "queue_name": name,
        "producers": [],
        "producers_total_count": 0,
        "consumers": consumers,
        "consumers_total_count": len(consumers),
        "settings": {
            "delivery_paused": queue["paused"],
            "delivery_delay": settings.get("delivery_delay", 0),
        },
    }


def cloudflare_router(app: App) -> APIRouter:
    """The Cloudflare-compatible routes, bound to `app`."""
    router = APIRouter(prefix=PREFIX, tags=["cloudflare"], responses=CLOUDFLARE_ERRORS)

    async def known(queue_id: str) -> Queue:
        try:
            return await app.stored_queue(queue_id)
        except UnknownQueue as exc:
            raise ApiError(404, said(exc), "unknown_queue") from None

    async def shown(queue_id: str) -> dict[str, Any]:
        return cloudflare_queue(await app.read.queue(queue_id))

    @router.get("")
    async def list_queues(account_id: str) -> dict[str, Any]:
        queues = await app.read.queues()
        return envelope([cloudflare_queue(q) for q in queues])

    @router.post("")
    async def create_queue(account_id: str, body: CreateQueueRequest) -> dict[str, Any]:
        try:
            await app.stored_queue(body.queue_name)
        except UnknownQueue:
            await app.stored_queue(body.queue_name, create=True)
            return envelope(await shown(body.queue_name))
        raise ApiError(409, f"queue {body.queue_name!r} already exists", "already_exists")

    @router.get("/{queue_id}")
    async def get_queue(account_id: str, queue_id: str) -> dict[str, Any]:
        await known(queue_id)
        return envelope(await shown(queue_id))

    @router.patch("/{queue_id}")
    async def update_queue(
        account_id: str, queue_id: str, body: QueuePatchRequest
    ) -> dict[str, Any]:
        queue = await known(queue_id)
        paused = body.settings.delivery_paused
        if paused is not None:
            await (queue.pause() if paused else queue.resume())
        return envelope(await shown(queue_id))

    @router.delete("/{queue_id}")
    async def delete_queue(account_id: str, queue_id: str) -> dict[str, Any]:
        await known(queue_id)
        await app.delete_queue(queue_id)
        return {"success": True, "errors": [], "messages": []}

    @router.post("/{queue_id}/messages")
    async def push(account_id: str, queue_id: str, body: OutgoingMessage) -> dict[str, Any]:
        queue = await known(queue_id)
        if "body" not in body.model_fields_set:
            raise ApiError(400, "a message needs a body", "invalid")
        with _send_errors():
            await queue.send(
                decode_http_body(body.body, body.content_type),
                delay_seconds=body.delay_seconds,
                content_type=body.content_type,
            )
        return envelope({})

    @router.post("/{queue_id}/messages/batch")
    async def push_batch(account_id: str, queue_id: str, body: BatchPushRequest) -> dict[str, Any]:
        queue = await known(queue_id)
        check_bodies(body.messages, "messages")
        with _send_errors():
            await queue.send_batch(outgoing_batch(body.messages), delay_seconds=body.delay_seconds)
        return envelope({})

    @router.post("/{queue_id}/messages/pull")
    async def pull(
        account_id: str, queue_id: str, body: PullRequest | None = None
    ) -> dict[str, Any]:
        await known(queue_id)
        return envelope(await pull_result(app, queue_id, body or PullRequest()))

    @router.post("/{queue_id}/messages/ack")
    async def ack(account_id: str, queue_id: str, body: AckRequest) -> dict[str, Any]:
        await known(queue_id)
        return envelope(await ack_result(app, queue_id, body))

    @router.post("/{queue_id}/purge")
    async def purge(
        account_id: str, queue_id: str, body: PurgeStartRequest | None = None
    ) -> dict[str, Any]:
        queue = await known(queue_id)
        if body is None or not body.delete_messages_permanently:
            raise ApiError(
                400,
                "delete_messages_permanently: must be true to purge the queue",
                "confirm_mismatch",
            )
        await queue.purge()
        return envelope(await shown(queue_id))

    @router.get("/{queue_id}/purge")
    async def purge_status(account_id: str, queue_id: str) -> dict[str, Any]:
        await known(queue_id)
        # A purge is one statement: it has completed by the time its request answered.
        return envelope({"completed": "true", "started_at": None})

    return router


@contextmanager
def _send_errors() -> Iterator[None]:
    """Turn a refused message into the API's 413 or 422."""
    try:
        yield
    except (MessageTooLarge, BatchTooLarge) as exc:
        raise ApiError(413, said(exc), "too_large") from None
    except JobQueueSend as exc:
        raise ApiError(409, said(exc), "job_queue") from None
    except InvalidMessage as exc:
        raise ApiError(422, said(exc), "invalid_message") from None
