"""`webhook-delivery`: deliver a webhook (an HTTP request) to a receiver, signed by the
Standard Webhooks scheme, retried the way receivers expect.

Payload: `url`, `method` (default POST), `body` (JSON, or a string sent as it is),
optional `headers` and `id` (the `webhook-id`, fixed at enqueue when not given, so every
retry carries the same one). 2xx: done; 408, 429, 5xx and network errors: retried with
backoff (a 429's or 503's `Retry-After` can make the wait longer, never shorter); 410
and other 4xx: failed at once. Redirects are not followed unless the settings say so.
Destinations are checked against SSRF rules.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ..context import JobContext
from ..retry import Backoff, PermanentError, Retry
from .common import (
    ContribSettings,
    JobOptions,
    Payload,
    jittered,
    one_line,
    raise_for_http_status,
    refuse_repeated_headers,
    register,
)
from .net import DestinationPolicy, check_url, pinned_fetch, redirect_target
from .network_errors import network_failure

if TYPE_CHECKING:
    from ..app import App

MAX_REDIRECTS = 5
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}
_SIGNATURE_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature"}
# Dropped when a redirect leads to another origin (as browsers, curl and httpx do).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CREDENTIALS = {"authorization", "cookie", "proxy-authorization"}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


class WebhookDelivery(Payload):
    """The `webhook-delivery` payload (the Queue Service's shape: `{"url", "method", "body"}`)."""

    url: str
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = "POST"
    body: Any = None
    headers: dict[str, str] | None = None
    id: str | None = Field(
        default=None, max_length=255, description="the webhook-id; set at enqueue when not given"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            if not _TOKEN.fullmatch(name):  # RFC 9110 field names are tokens
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in _HOP_BY_HOP | _SIGNATURE_HEADERS:
                raise ValueError(f"header {name!r} is set by taskflare")
            one_line(text, f"header {name!r}")
        refuse_repeated_headers(value or ())
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else one_line(value, "id (the webhook-id header)")

    @model_validator(mode="after")
    def _fill_id(self) -> WebhookDelivery:
        if self.id is None:  # fixed at enqueue: the same webhook-id on every attempt
            self.id = f"msg_{uuid.uuid4().hex}"
        return self


class WebhookSettings(ContribSettings):
    """How `webhook-delivery` sends (each field also from `TASKFLARE_WEBHOOK_<NAME>`).

    `secret`: the Standard Webhooks signing secret (`whsec_...`); without one requests are
    not signed. `timeout` [s] per request. `allow_private`: reach loopback and private
    addresses (off: only public ones); `allowed_networks`: addresses allowed anyway (e.g.
    `["127.0.0.1/32"]`; from the environment as a JSON list). `follow_redirects`: follow
    up to 5 redirects (each target checked too). `per_host_concurrency`: deliveries to one
    host at once per worker process; a delivery that waits `host_wait` seconds for one is
    retried after about `host_busy_delay` seconds instead of holding a worker slot.
    `max_response_bytes`: how much of the answer's body the result keeps.
    """

    model_config = SettingsConfigDict(env_prefix="TASKFLARE_WEBHOOK_", extra="ignore", frozen=True)

    secret: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0)
    allow_private: bool = False
    allowed_networks: list[str] = Field(default_factory=list)
    follow_redirects: bool = False
    per_host_concurrency: int = Field(default=4, ge=1)
    host_wait: float = Field(default=5.0, ge=0)
    host_busy_delay: float = Field(default=10.0, ge=0)
    max_response_bytes: int = Field(default=1024, ge=0, le=65_536)
    user_agent: str = "taskflare-webhooks"


class HostSlots:
    """Deliveries in flight per destination host, at most `limit` each (per event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Held weakly by loop: a loop that has ended takes its semaphores with it (never
        # handed to a new loop that happens to get the same id()).
        self._slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def of(self, host: str) -> asyncio.Semaphore:
        """The semaphore of `host` on the running loop."""
        slots = self._slots.setdefault(asyncio.get_running_loop(), {})
        found = slots.get(host)
        if found is None:
            found = slots[host] = asyncio.Semaphore(self.limit)
        return found


def encode_body(body: Any) -> tuple[bytes, str | None]:
    """The bytes sent and their content type: a string as it is (text), else JSON."""
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return orjson.dumps(body), "application/json"


def signature_headers(secret: SecretStr, webhook_id: str, content: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for this attempt (a fresh timestamp, the same id)."""
    from standardwebhooks.webhooks import Webhook

    now = datetime.now(UTC).replace(microsecond=0)
    signature = Webhook(secret.get_secret_value()).sign(webhook_id, now, content.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


class WebhookExtension:
    """`webhook-delivery`, installed by `app.use(contrib.webhooks(...))`."""

    def __init__(self, settings: WebhookSettings | None, options: JobOptions) -> None:
        self.settings = settings
        self.options = options

    def install(self, app: App) -> None:
        """Register the `webhook-delivery` job type on `app`."""
        given = self.settings
        state: dict[str, Any] = {}

        def config() -> tuple[WebhookSettings, DestinationPolicy, HostSlots]:
            if not state:
                settings = given or WebhookSettings()
                state["s"] = settings
                state["p"] = DestinationPolicy.create(
                    settings.allow_private, settings.allowed_networks
                )
                state["h"] = HostSlots(settings.per_host_concurrency)
            return state["s"], state["p"], state["h"]

        async def deliver_webhook(payload: WebhookDelivery, ctx: JobContext) -> dict[str, Any]:
            settings, policy, slots = config()
            url = check_url(payload.url)
            slot = slots.of(url.host)
            try:
                async with asyncio.timeout(settings.host_wait or 0.001):  # not wait_for:
                    await slot.acquire()  # it can swallow a cancellation on Python 3.11
            except TimeoutError:
                raise Retry(
                    jittered(settings.host_busy_delay),
                    f"{url.host} already has {slots.limit} deliveries in flight",
                ) from None
            try:
                return await _deliver(payload, url, settings, policy, ctx)
            finally:
                slot.release()

        register(app, self.options, deliver_webhook)


async def _deliver(
    payload: WebhookDelivery,
    url: httpx.URL,
    settings: WebhookSettings,
    policy: DestinationPolicy,
    ctx: JobContext,
) -> dict[str, Any]:
    content, content_type = encode_body(payload.body)
    headers = dict(payload.headers or {})
    # The payload's own User-Agent, in any case, replaces the default (both were sent).
    if not any(k.lower() == "user-agent" for k in headers):
        headers = {"User-Agent": settings.user_agent, **headers}
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    assert payload.id is not None
    if settings.secret is not None:
        headers.update(signature_headers(settings.secret, payload.id, content))
    else:
        headers["webhook-id"] = payload.id
    started = time.monotonic()
    method = payload.method
    async with httpx.AsyncClient(timeout=settings.timeout, trust_env=False) as client:
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                # Only the first `max_response_bytes` of the answer are read: a receiver
                # answering gigabytes costs this worker that much and no more.
                response, raw = await pinned_fetch(
                    client,
                    method,
                    target,
                    policy,
                    settings.max_response_bytes,
                    headers=headers,
                    content=content,
                )
            except (httpx.TransportError, OSError) as exc:  # timeouts too
                raise network_failure(exc, target, settings.timeout) from None
            location = redirect_target(response, target)
            if location is None:
                break
            if not settings.follow_redirects:
                raise PermanentError(
                    f"{target} answered {response.status_code} redirecting to {location}; "
                    "redirects are not followed (follow_redirects=True to follow them)"
                )
            if _origin(location) != _origin(target):
                # Credentials the payload gave for one site are not handed to another.
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
            if response.status_code == 303 and method != "GET":
                # 303 See Other: fetch the answer with GET, without the body (RFC 9110).
                method, content = "GET", b""
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            target = location
        else:
            raise PermanentError(f"more than {MAX_REDIRECTS} redirects from {url}")
    snippet = raw.decode("utf-8", "replace")
    raise_for_http_status(response.status_code, response.headers, f"{target.host}", snippet[:200])
    return {
        "delivered": True,
        "status": response.status_code,
        "body": snippet,
        "webhookId": payload.id,
        "url": str(target),
        "attempt": ctx.attempt,
        "durationMs": round((time.monotonic() - started) * 1000, 1),
    }


def webhooks(
    settings: WebhookSettings | None = None,
    *,
    name: str = "webhook-delivery",
    queue: str = "webhooks",
    max_attempts: int = 8,
    timeout: float | None = 60.0,
    retry: Backoff | None = None,
    max_concurrency: int | None = 50,
) -> WebhookExtension:
    """The `webhook-delivery` job type: `app.use(contrib.webhooks())` reads
    `TASKFLARE_WEBHOOK_SECRET`, ... when it first delivers; or pass `WebhookSettings(...)`.

    Retries up to `max_attempts` with `retry` (default 5 s doubling to 1 h, jittered);
    `max_concurrency`: deliveries at once per worker, so webhooks never take every slot.
    """
    options = JobOptions(
        name=name,
        queue=queue,
        max_attempts=max_attempts,
        timeout=timeout,
        retry=retry or Backoff(base=5, cap=3600),
        max_concurrency=max_concurrency,
    )
    return WebhookExtension(settings, options)
