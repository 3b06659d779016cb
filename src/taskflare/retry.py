"""How a failed job is retried: exponential backoff, and what an exception means.

Handlers steer retries by raising: `PermanentError` fails the job at once, `Retry`
retries after a chosen delay, and any other exception retries with the job type's
backoff until its attempts run out. An `httpx.HTTPStatusError` with a 4xx status other
than 408 and 429 is permanent (the request will not get better by repeating it); a 429
waits for its `Retry-After` header when it has one, or for the backoff when that is
longer: a server's delay can lengthen the wait between attempts, never shorten it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .errors import InvalidJobConfig
from .numeric import as_float


class PermanentError(Exception):
    """Raise from a job handler to fail the job now, without using its remaining attempts."""


class Retry(Exception):
    """Raise from a job handler to retry the job after `delay_seconds` (counts an attempt)."""

    def __init__(self, delay_seconds: float = 0, reason: str | None = None) -> None:
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)):
            raise TypeError(f"Retry delay_seconds must be a number, got {delay_seconds!r}")
        # An int past a float's range is an infinity here: refused if negative, else
        # waits the longest delay (every retry delay is capped at one year).
        seconds = as_float(delay_seconds)
        if math.isnan(seconds) or (math.isinf(seconds) and isinstance(delay_seconds, float)):
            raise ValueError(  # NaN would be stored
                f"Retry delay_seconds must be a finite number >= 0, got {delay_seconds}"
            )
        if seconds < 0:
            raise ValueError(
                f"Retry delay_seconds must be a finite number >= 0, got {delay_seconds}"
            )
        super().__init__(reason or f"retry requested in {seconds:g}s")
        self.delay_seconds = seconds


class RetryAfter(Retry):
    """A retry after a delay a server asked for (its `Retry-After`): the job waits that
    long or its backoff, whichever is longer, so a server answering `Retry-After: 0`
    cannot make a job spend its attempts faster than its own schedule."""


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
        if not isinstance(self.jitter, bool):  # "no" or "false" would have meant jitter
            raise InvalidJobConfig(
                f"Backoff jitter must be True or False, got {self.jitter!r}", fields=("jitter",)
            )
        for name in ("base", "cap"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(as_float(value))
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
    at_least: bool = False  # `delay` came from a server: the backoff, if longer, wins


def classify(exc: BaseException) -> Verdict:
    """Decide whether `exc` is permanent and whether it asks for a specific delay."""
    if isinstance(exc, PermanentError):
        return Verdict(permanent=True)
    if isinstance(exc, RetryAfter):
        return Verdict(permanent=False, delay=exc.delay_seconds, at_least=True)
    if isinstance(exc, Retry):
        return Verdict(permanent=False, delay=exc.delay_seconds)
    status = _http_status(exc)
    if status is not None:
        if status == 429:
            delay = retry_after_seconds(_header(exc, "retry-after"))
            return Verdict(permanent=False, delay=delay, rate_limited=True, at_least=True)
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


def _header(exc: BaseException, name: str) -> str | None:
    """A header of the response an `httpx.HTTPStatusError` carries."""
    import httpx

    return exc.response.headers.get(name) if isinstance(exc, httpx.HTTPStatusError) else None


def retry_after_seconds(
    value: str | None, *, cap: float | None = None, now: datetime | None = None
) -> float | None:
    """The wait a `Retry-After` header asks for, in seconds (delta-seconds or an HTTP
    date), at most `cap`; None when it asks for none the caller should use: absent,
    unreadable, not finite (`nan`, `inf`, `1e400`), zero, negative or a date already
    past. None means "use your own schedule" (the job's backoff), never "retry now"."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds if cap is None else min(seconds, cap)
