"""Flow control a handler asks for: snooze (run me again later) and rate-limited (back off).

`raise Snooze(30)` (or `return ctx.snooze(30)`) puts the job back to pending for 30 s
without spending an attempt; its history shows the attempt as `snoozed`.
`raise RateLimited(retry_after=20)` does the same for the job and also holds every
rate-limit key of the job (see `taskflare.limits`) for 20 s, so no other job of those
keys is claimed until then.
"""

from __future__ import annotations

# The longest a snooze or a back-off may last [s] (a year, as for delays).
MAX_SNOOZE_SECONDS = 365 * 86_400.0


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_SNOOZE_SECONDS:
        raise ValueError(f"{what} must be from 0 to {MAX_SNOOZE_SECONDS:g} seconds, got {value!r}")
    return float(value)


class Snooze(Exception):
    """Raise (or return) from a job handler to run the job again after `seconds`.

    The job goes back to pending, its attempt is not spent (`job.attempts` is unchanged,
    so a job may snooze any number of times), and its history records the delivery as
    `snoozed`. `TypeError`/`ValueError` for a delay that is not 0..one year.
    """

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        self.seconds = _seconds(seconds, "Snooze seconds")
        super().__init__(reason or f"snoozed for {self.seconds:g}s")


class RateLimited(Exception):
    """Raise from a job handler when the service it calls said "too many requests".

    The job goes back to pending for `retry_after` seconds without spending an attempt,
    and every rate-limited key of the job (its `rate_limit` keys) is held for as long:
    no job of those keys is claimed anywhere until then. An `httpx.HTTPStatusError`
    with status 429 raised from a job whose type has a rate limit is treated the same
    way (its `Retry-After` header gives the delay; `default_retry_after` without one).
    """

    def __init__(self, retry_after: float = 1.0, reason: str | None = None) -> None:
        self.retry_after = _seconds(retry_after, "RateLimited retry_after")
        super().__init__(reason or f"rate limited for {self.retry_after:g}s")
