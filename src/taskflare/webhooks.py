"""Webhook ingress: verify a provider's signature, then enqueue the event as a job.

Two schemes: Stripe's `Stripe-Signature: t=<unix>,v1=<hex>` (HMAC-SHA256 over
`"<t>.<raw body>"`, rejected outside a 5-minute tolerance so a captured request cannot be
replayed later) and the plain `X-Signature: sha256=<hex>` (HMAC-SHA256 over the raw body)
used by GitHub-style senders. The provider's event id becomes the job's idempotency key,
so a redelivered webhook runs once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidQueueConfig, TaskflareError

STRIPE = "stripe"
HMAC_SHA256 = "hmac-sha256"
SCHEMES = (STRIPE, HMAC_SHA256)
DEFAULT_TOLERANCE = 300.0


class WebhookRejected(TaskflareError):
    """A webhook's signature is missing, wrong, or too old."""


@dataclass(frozen=True, slots=True)
class WebhookSource:
    """A configured sender: its secret, signature scheme and the job type its events become."""

    name: str
    secret: str = ""
    job_type: str = ""
    scheme: str = STRIPE
    event_id_field: str = "id"
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InvalidQueueConfig(
                f"webhook scheme must be one of {SCHEMES}, got {self.scheme!r}"
            )
        if not self.secret:
            raise InvalidQueueConfig(f"webhook source {self.name!r} needs a secret")

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookSource({self.name!r}, scheme={self.scheme!r}, job_type={self.job_type!r})"

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> None:
        """Raise `WebhookRejected` unless the request is signed with this source's secret."""
        if self.scheme == STRIPE:
            verify_stripe(body, headers.get("stripe-signature"), self.secret, self.tolerance, now)
        else:
            verify_hmac_sha256(body, headers.get("x-signature"), self.secret)


def _sign(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify_stripe(
    body: bytes, header: str | None, secret: str, tolerance: float, now: float | None = None
) -> None:
    """Check a `Stripe-Signature` header."""
    if not header:
        raise WebhookRejected("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected("malformed Stripe-Signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookRejected("signature timestamp outside the tolerance (replayed or stale)")
    expected = _sign(secret, f"{timestamp}.".encode() + body)
    if not any(hmac.compare_digest(expected, sig) for sig in signatures):
        raise WebhookRejected("signature does not match")


def verify_hmac_sha256(body: bytes, header: str | None, secret: str) -> None:
    """Check an `X-Signature: sha256=<hex>` header."""
    if not header or not header.startswith("sha256="):
        raise WebhookRejected("missing or malformed X-Signature header")
    if not hmac.compare_digest(_sign(secret, body), header[len("sha256=") :]):
        raise WebhookRejected("signature does not match")


def stripe_signature_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """Build a valid `Stripe-Signature` header (for tests and for sending)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_sign(secret, f'{t}.'.encode() + body)}"


def hmac_signature_header(body: bytes, secret: str) -> str:
    """Build a valid `X-Signature` header."""
    return f"sha256={_sign(secret, body)}"


def event_id(source: WebhookSource, event: Any, headers: Mapping[str, str], body: bytes) -> str:
    """The provider's event id: a body field, else a delivery header, else the body's hash."""
    if isinstance(event, dict):
        value = event.get(source.event_id_field)
        if isinstance(value, (str, int)) and str(value):
            return str(value)
    for header in ("x-event-id", "x-github-delivery", "webhook-id"):
        if headers.get(header):
            return headers[header]
    return "sha256:" + hashlib.sha256(body).hexdigest()
