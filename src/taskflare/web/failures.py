"""A bound on wrong tokens per client address: the brute-force guard of the dashboard's
sign-in form and of the HTTP API's bearer token check.

Each failure is counted per client address in moving windows (the `limits` library, in
this process's memory: one `taskflare serve` process; behind a proxy the address is the
one uvicorn took from `X-Forwarded-For` of a trusted proxy). While an address is over
any of its limits it is refused before its token is even looked at (HTTP 429 with
`Retry-After`), so guessing goes no faster than the limits allow; a correct token clears
the address's failures. Other addresses are not affected.
"""

from __future__ import annotations

import math
import time

from limits import parse_many, storage, strategies

# The dashboard's sign-in form: 5 wrong tokens a minute, 20 an hour, per address.
SIGN_IN_LIMITS = "5/minute;20/hour"
# Bearer tokens on the HTTP API: scripts retry, so more, but still far from a guess rate.
API_LIMITS = "30/minute;300/hour"


class FailureLimit:
    """Counts failures per client address against moving-window limits.

    `limits` is the `limits` library's notation, e.g. "5/minute;20/hour" (`ValueError`
    for anything else)."""

    def __init__(self, limits: str) -> None:
        self.items = parse_many(limits)
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try a token again, or None if it may now."""
        wait = 0.0
        for item in self.items:
            if not self._limiter.test(item, client):
                reset = self._limiter.get_window_stats(item, client).reset_time
                wait = max(wait, reset - time.time())
        return max(math.ceil(wait), 1) if wait > 0 else None

    def failed(self, client: str) -> None:
        """Count one wrong token from `client`."""
        for item in self.items:
            self._limiter.hit(item, client)

    def succeeded(self, client: str) -> None:
        """A right token from `client`: forget its failures."""
        for item in self.items:
            self._limiter.clear(item, client)


def client_address(scope_client: tuple[str, int] | list[object] | None) -> str:
    """The address a request came from ("" when the server did not say)."""
    if not scope_client:
        return ""
    return str(scope_client[0])


def too_many(seconds: int) -> str:
    """The refusal's message."""
    return (
        "too many wrong tokens from this address; "
        f"try again in {seconds} second{'s' if seconds != 1 else ''}"
    )
