"""How a failed job is retried: exponential backoff, and what an exception means.

Handlers steer retries by raising: `PermanentError` fails the job at once, `Retry`
retries after a chosen delay, and any other exception retries with the job type's
backoff until its attempts run out. An `httpx.HTTPStatusError` with a 4xx status other
than 408 and 429 is permanent (the request will not get better by repeating it); a 429
waits for its `Retry-After` header when it has one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import InvalidJobConfig


class PermanentError(Exception):
    """Raise from a job handler to fail the job now, without using its remaining attempts."""


class Retry(Exception):
    """Raise from a job handler to retry the job after `delay_seconds` (counts an attempt)."""

    def __init__(self, delay_seconds: float = 0, reason: str | None = None) -> None:
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)):
            raise TypeError(f"Retry delay_seconds must be a number, got {delay_seconds!r}")
        if not math.isfinite(delay_seconds) or delay_seconds < 0:  # NaN would be stored
            raise ValueError(
                f"Retry delay_seconds must be a finite number >= 0, got {delay_seconds}"
            )
        super().__init__(reason or f"retry requested in {delay_seconds:g}s")
        self.delay_seconds = float(delay_seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n: `min(base * 2 ** n, cap)` seconds, n = attempts so far.

    With `jitter`, the delay is drawn from [delay/2, delay] so that jobs failing
    together do not all come back together. The seed's `min(60 * 2 ** attempts, 300)`
    is `Backoff(base=60, cap=300, jitter=False)`.
    """

    base: float = 2.0
    cap: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("base", "cap"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidJobConfig(
                    f"Backoff {name} must be a finite number >= 0, got {value!r}",
                    fields=(name,),
                )

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th delivery failed."""
        raw = min(self.base * 2.0 ** min(attempts, 64), self.cap)
        if self.jitter:
            return raw / 2 + random.uniform(0, raw / 2)
        return raw


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an exception means for the job: fail now, or retry after `delay` (None: backoff)."""

    permanent: bool
    delay: float | None = None
    rate_limited: bool = False


def classify(exc: BaseException) -> Verdict:
    """Decide whether `exc` is permanent and whether it asks for a specific delay."""
    if isinstance(exc, PermanentError):
        return Verdict(permanent=True)
    if isinstance(exc, Retry):
        return Verdict(permanent=False, delay=exc.delay_seconds)
    status = _http_status(exc)
    if status is not None:
        if status == 429:
            return Verdict(permanent=False, delay=_retry_after(exc), rate_limited=True)
        if 400 <= status < 500 and status != 408:
            return Verdict(permanent=True)
    return Verdict(permanent=False)


def _http_status(exc: BaseException) -> int | None:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is optional for classification
        return None
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def _retry_after(exc: Any) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), if present."""
    value = exc.response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan", "inf" or "1e400" from a server: no usable delay, never a stored NaN
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
