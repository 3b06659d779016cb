"""Webhook ingress: verify a provider's signature, then enqueue the event as a job.

Four schemes, each the provider's documented recipe:

* `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 over
  `"<t>.<raw body>"`, refused outside `tolerance` seconds of now.
* `standard-webhooks` (Svix and others): `webhook-id`, `webhook-timestamp` and
  `webhook-signature: v1,<base64> ...`, computed by the `standardwebhooks` package.
* `github`: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the raw body.
* `hmac-sha256`: `X-Signature: sha256=<hex>`, the same recipe under a generic name.

The job's idempotency key comes only from signed material: the signed event id, else a
SHA-256 of what was signed. Nothing unsigned (a delivery header) can make a replayed
request look new. `github` and `hmac-sha256` sign no timestamp, so a captured request
stays valid forever; its key is remembered for `replay_window` seconds, after which a
replay cannot be told from a new event (prefer a timestamped scheme where you can).

Verification is cheap and total for any input: headers are length-bounded, numbers are
parsed only when short, signatures are compared as bytes after an ASCII shape check, and
every refusal is a `WebhookRejected` carrying its HTTP status (400 malformed, 401 bad).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from standardwebhooks import Webhook

from .errors import InvalidMessage, InvalidWebhookConfig, TaskflareError
from .messages import MAX_DELAY_SECONDS
from .numeric import as_float
from .text import check_name

STRIPE = "stripe"
GITHUB = "github"
HMAC_SHA256 = "hmac-sha256"
STANDARD_WEBHOOKS = "standard-webhooks"
SCHEMES = (STRIPE, GITHUB, HMAC_SHA256, STANDARD_WEBHOOKS)
TIMESTAMPED = (STRIPE, STANDARD_WEBHOOKS)

DEFAULT_TOLERANCE = 300.0
MAX_TOLERANCE = 86_400.0
DEFAULT_REPLAY_WINDOW = 7 * 86_400.0

# Real signature headers are well under 300 characters (a few signatures during a secret
# rotation); anything longer is refused before it is parsed.
MAX_HEADER_CHARS = 1024
MAX_WEBHOOK_ID_CHARS = 256
MAX_SOURCE_NAME_CHARS = 100
# Longer event ids are hashed, so `<source>:<key>` stays within the 255-character
# idempotency key.
MAX_EVENT_ID_CHARS = 128
# Ten digits last until 2286; twelve leave room and keep int() trivially cheap.
MAX_TIMESTAMP_DIGITS = 12

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_BASE64_SHA256 = re.compile(r"[A-Za-z0-9+/]{43}=")
_SECRET_PREFIX = "whsec_"

_HUB_HEADERS = {GITHUB: "x-hub-signature-256", HMAC_SHA256: "x-signature"}
_DISPLAY_NAMES = {
    "stripe-signature": "Stripe-Signature",
    "x-hub-signature-256": "X-Hub-Signature-256",
    "x-signature": "X-Signature",
    "webhook-id": "webhook-id",
    "webhook-timestamp": "webhook-timestamp",
    "webhook-signature": "webhook-signature",
}


class WebhookRejected(TaskflareError):
    """A webhook's signature is missing, malformed, wrong, or too old.

    `status` is the HTTP answer: 400 for a request that is malformed, 401 for one that is
    not signed with the source's secret or is outside the tolerance.
    """

    def __init__(self, message: str, status: int = 401, code: str = "bad_signature") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _malformed(message: str) -> WebhookRejected:
    return WebhookRejected(message, status=400)


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A request that passed verification: its event, and the key and TTL to dedupe it by."""

    event: Any
    dedup_key: str
    ttl: float


@dataclass(frozen=True, slots=True)
class WebhookSource:
    """A configured sender: its secret, signature scheme and the job type its events become.

    `replay_window` (seconds) is how long a verified event's key is remembered: a replay or
    redelivery within it is the same job. For `github` and `hmac-sha256`, which sign no
    timestamp, a replay older than the window is indistinguishable from a new event.
    """

    name: str
    secret: str = ""
    job_type: str = ""
    scheme: str = STRIPE
    event_id_field: str = "id"
    tolerance: float = DEFAULT_TOLERANCE
    replay_window: float = DEFAULT_REPLAY_WINDOW

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InvalidWebhookConfig(
                f"webhook scheme must be one of {SCHEMES}, got {self.scheme!r}"
            )
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_SOURCE_NAME_CHARS:
            raise InvalidWebhookConfig(
                f"webhook source name must be 1-{MAX_SOURCE_NAME_CHARS} characters, "
                f"got {self.name!r}"
            )
        try:  # its URL could never name it
            check_name(self.name, f"webhook source name {self.name!r}")
        except InvalidMessage as exc:
            raise InvalidWebhookConfig(str(exc)) from None
        if not isinstance(self.secret, str) or not self.secret:
            raise InvalidWebhookConfig(f"webhook source {self.name!r} needs a secret")
        if self.scheme == STANDARD_WEBHOOKS:
            _check_standard_secret(self.name, self.secret)
        _check_seconds(self.tolerance, f"webhook {self.name!r} tolerance", MAX_TOLERANCE)
        _check_seconds(
            self.replay_window, f"webhook {self.name!r} replay_window", MAX_DELAY_SECONDS
        )

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookSource({self.name!r}, scheme={self.scheme!r}, job_type={self.job_type!r})"

    @property
    def ttl(self) -> float:
        """How long an event's key is kept: the replay window, and for a timestamped scheme at
        least as long as a signed timestamp stays acceptable (up to `tolerance` either side)."""
        if self.scheme in TIMESTAMPED:
            return max(float(self.replay_window), 2.0 * self.tolerance)
        return float(self.replay_window)

    def verify(
        self, body: bytes, headers: Mapping[str, str], now: float | None = None
    ) -> VerifiedWebhook:
        """Check the request's signature and return its event and dedup key.

        Raises `WebhookRejected` (and nothing else) when the request is malformed, not
        signed with this source's secret, outside the tolerance, or its body is not JSON.
        """
        lowered = {key.lower(): value for key, value in headers.items()}
        current = time.time() if now is None else now
        if self.scheme == STRIPE:
            timestamp = _verify_stripe(body, lowered, self.secret, self.tolerance, current)
            signed_id = None
            signed = f"{timestamp}.".encode() + body
        elif self.scheme == STANDARD_WEBHOOKS:
            signed_id = _verify_standard_webhooks(
                body, lowered, self.secret, self.tolerance, current
            )
            signed = body
        else:
            _verify_hub(body, lowered, _HUB_HEADERS[self.scheme], self.secret)
            signed_id = None
            signed = body
        event = _parse_json(body)
        key = signed_id or _body_event_id(event, self.event_id_field)
        dedup_key = _bounded(key) if key else "sha256:" + hashlib.sha256(signed).hexdigest()
        return VerifiedWebhook(event=event, dedup_key=dedup_key, ttl=self.ttl)


def _check_seconds(value: object, what: str, limit: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(as_float(value))
        or not 0 < value <= limit
    ):
        raise InvalidWebhookConfig(
            f"{what} must be a number of seconds in (0, {limit:_.0f}], got {value!r}"
        )


def _check_standard_secret(name: str, secret: str) -> None:
    """A Standard Webhooks secret is `whsec_<base64>`; refuse a typo at startup."""
    raw = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        key = b""
    if not secret.startswith(_SECRET_PREFIX) or not key:
        raise InvalidWebhookConfig(
            f"webhook source {name!r}: a standard-webhooks secret is 'whsec_' followed by "
            "base64, as the sender's dashboard shows it"
        )
    Webhook(secret)  # accepts whatever passed the stricter check above


def _header(headers: Mapping[str, str], name: str) -> str:
    """A required header, present and of sane length (401 if missing, 400 if absurd)."""
    value = headers.get(name)
    if not value:
        raise WebhookRejected(f"missing {_DISPLAY_NAMES[name]} header")
    if len(value) > MAX_HEADER_CHARS:
        raise _malformed(f"{_DISPLAY_NAMES[name]} header is longer than {MAX_HEADER_CHARS}")
    return value


def _unix_time(value: str, header: str) -> int:
    """Whole seconds since the epoch, from ASCII digits only (no signs, no `²`, no 400 zeros)."""
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS):
        raise _malformed(f"{header} timestamp is not a Unix time in seconds")
    return int(value)


def _check_tolerance(timestamp: int, tolerance: float, now: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise WebhookRejected(
            f"signature timestamp is outside the tolerance of {tolerance:g} s (replayed or stale)"
        )


def _hex_digest(value: str, header: str) -> bytes:
    if not _HEX_SHA256.fullmatch(value):
        raise _malformed(f"{header}: a SHA-256 signature is 64 hex digits")
    return bytes.fromhex(value)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _matches(expected: bytes, given: list[bytes]) -> None:
    if not any(hmac.compare_digest(expected, signature) for signature in given):
        raise WebhookRejected("signature does not match")


def _verify_stripe(
    body: bytes, headers: Mapping[str, str], secret: str, tolerance: float, now: float
) -> int:
    """Check `Stripe-Signature` (lower-cased `headers`); return its signed timestamp."""
    header = _header(headers, "stripe-signature")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            if timestamp is not None:
                raise _malformed("Stripe-Signature has more than one timestamp")
            timestamp = _unix_time(value, "Stripe-Signature")
        elif key == "v1":
            signatures.append(_hex_digest(value, "Stripe-Signature"))
        # Other schemes (v0 test-mode signatures, future ones) are ignored, as Stripe's
        # own libraries do.
    if timestamp is None or not signatures:
        raise _malformed("Stripe-Signature needs t=<unix time> and at least one v1=<hex>")
    _check_tolerance(timestamp, tolerance, now)
    _matches(_hmac(secret.encode(), f"{timestamp}.".encode() + body), signatures)
    return timestamp


def _verify_hub(body: bytes, headers: Mapping[str, str], name: str, secret: str) -> None:
    """Check a `sha256=<hex>` header (GitHub's `X-Hub-Signature-256`, or `X-Signature`)."""
    header = _header(headers, name)
    prefix, _, value = header.partition("=")
    if prefix != "sha256":
        raise _malformed(f"{_DISPLAY_NAMES[name]} must be sha256=<hex>")
    _matches(_hmac(secret.encode(), body), [_hex_digest(value, _DISPLAY_NAMES[name])])


def _verify_standard_webhooks(
    body: bytes, headers: Mapping[str, str], secret: str, tolerance: float, now: float
) -> str:
    """Check the Standard Webhooks headers; return the signed message id.

    The signature itself is the `standardwebhooks` package's (`Webhook.sign`); its
    `verify()` is not used because it checks the time against the wall clock with a fixed
    5-minute tolerance and raises `ValueError`s on malformed headers.
    """
    msg_id = _header(headers, "webhook-id")
    timestamp_header = _header(headers, "webhook-timestamp")
    signature_header = _header(headers, "webhook-signature")
    if len(msg_id) > MAX_WEBHOOK_ID_CHARS or not (msg_id.isascii() and msg_id.isprintable()):
        raise _malformed(
            f"webhook-id must be printable ASCII, at most {MAX_WEBHOOK_ID_CHARS} chars"
        )
    timestamp = _unix_time(timestamp_header, "webhook-timestamp")
    signatures = _standard_signatures(signature_header)
    _check_tolerance(timestamp, tolerance, now)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("a Standard Webhooks body must be UTF-8") from None
    signed_at = datetime.fromtimestamp(timestamp, UTC)  # within tolerance of now: in range
    expected = Webhook(secret).sign(msg_id, signed_at, text).partition(",")[2]
    _matches(base64.b64decode(expected), signatures)
    return msg_id


def _standard_signatures(header: str) -> list[bytes]:
    """The `v1` signatures of a `webhook-signature` header (other versions are skipped)."""
    signatures: list[bytes] = []
    for entry in header.split(" "):
        if not entry:
            continue
        version, comma, value = entry.partition(",")
        if not comma:
            raise _malformed("webhook-signature entries must be <version>,<signature>")
        if version != "v1":
            continue  # e.g. v1a (asymmetric), which a shared secret cannot check
        if not _BASE64_SHA256.fullmatch(value):
            raise _malformed("webhook-signature v1 signature is not a base64 SHA-256")
        try:
            signatures.append(base64.b64decode(value, validate=True))
        except binascii.Error:  # unreachable after the pattern; kept so nothing else escapes
            raise _malformed("webhook-signature v1 signature is not base64") from None
    if not signatures:
        raise WebhookRejected("webhook-signature has no v1 signature")
    return signatures


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRejected("webhook body is not JSON", status=400, code="invalid") from None


def _body_event_id(event: Any, field: str) -> str | None:
    """The event's own id, a field of the signed body (Stripe's `evt_...`)."""
    if not isinstance(event, dict):
        return None
    value = event.get(field)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _bounded(key: str) -> str:
    """`key` itself if it is short and printable, else its SHA-256."""
    if len(key) <= MAX_EVENT_ID_CHARS and key.isprintable():
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def stripe_signature_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """Build a valid `Stripe-Signature` header (for tests and for sending)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_hmac(secret.encode(), f'{t}.'.encode() + body).hex()}"


def hmac_signature_header(body: bytes, secret: str) -> str:
    """Build a valid `sha256=<hex>` value for `X-Signature` or `X-Hub-Signature-256`."""
    return f"sha256={_hmac(secret.encode(), body).hex()}"
