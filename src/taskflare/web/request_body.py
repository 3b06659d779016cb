"""A request's body as the HTTP service's edge reads it: within the body timeout, and read
and dropped before an answer that starts while it is still unread.

An answer sent while the client is still sending its body, on a connection the server
then closes, makes the kernel answer the bytes still arriving with a reset, which can
reach the client before it has read the answer: it sees "Connection reset by peer"
instead of a 401 or a 404. So whatever answers before the body was read (a refusal at
the edge, the router's 404 or 405, a route's or the dashboard's early error), what is
left of the body is read and dropped first, as nginx discards the body of a request it
answers without it: at most `DRAIN_LIMIT` bytes, never buffered, within the body
timeout. A body drained to its end leaves the connection open for the next request; one
past the cap or the deadline gets the answer at once and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping
from typing import Any

from .common import DEFAULT_BODY_LIMIT, ApiError, Receive, Scope

# At most this many bytes of a body are read and dropped before an answer that does not
# need them: the default body limit, so any body the API would take is drained. A client
# that announces more gets the answer at once, and the connection is closed.
DRAIN_LIMIT = DEFAULT_BODY_LIMIT


class BodyTimeout(ApiError):
    """Raised while reading a body past its deadline. An HTTP error, so that FastAPI's body
    parsing lets it through; the API's handler or `EdgeGuard` answers 408."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {seconds:g} s",
            "timeout",
            headers={"connection": "close"},
        )


class RequestBody:
    """One HTTP request's body. `receive` is the ASGI receive the application gets: it
    raises `BodyTimeout` past `timeout` seconds from the request's start. `drain()` reads
    and drops what is left before an early answer; `done` says whether the body was read
    to its end (else the connection cannot carry another request)."""

    def __init__(self, scope: Scope, receive: Receive, timeout: float) -> None:
        headers = dict(scope.get("headers") or [])
        self.timeout = timeout
        self.done = not has_body(headers)
        self.timed_out = False
        self._receive = receive
        self._read = 0  # bytes of the body received so far
        self._asked = False  # whether anything asked for the body (uvicorn then sends 100)
        length = headers.get(b"content-length", b"").strip()
        self._declared = int(length) if length.isdigit() else None
        self._awaits_continue = headers.get(b"expect", b"").strip().lower() == b"100-continue"
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + timeout

    async def receive(self) -> MutableMapping[str, Any]:
        """The next ASGI message; `BodyTimeout` when the body is late."""
        if self.done:  # after the body: waiting for a disconnect has no deadline
            return await self._receive()
        self._asked = True
        try:
            async with asyncio.timeout(self._deadline - self._loop.time()):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise BodyTimeout(self.timeout) from None
        if message["type"] == "http.request":
            self._read += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body, unless it is longer than `DRAIN_LIMIT`
        (by its `Content-Length`, or once that much was dropped), its deadline has
        passed, or the client waits for `100 Continue` before sending it (it is told the
        answer instead, and sends nothing)."""
        if self.done or self.timed_out or (self._awaits_continue and not self._asked):
            return
        if self._declared is not None and self._declared - self._read > DRAIN_LIMIT:
            return
        limit = self._read + DRAIN_LIMIT
        with contextlib.suppress(BodyTimeout):
            while not self.done and self._read <= limit:
                await self.receive()


def has_body(headers: dict[bytes, bytes]) -> bool:
    """Whether a request with these headers has a body (`Content-Length` > 0, or chunked)."""
    length = headers.get(b"content-length", b"").strip()
    return b"transfer-encoding" in headers or (length.isdigit() and int(length) > 0)
