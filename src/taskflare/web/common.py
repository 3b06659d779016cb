"""Shared pieces of the HTTP service: auth, error bodies, the request-size guard."""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import HTTPException, Request
from pydantic import BaseModel
from starlette.routing import BaseRoute, Match, Mount

from ..errors import InvalidConfig, TaskflareError
from ..queue import format_bytes

TOKEN_ENV = "TASKFLARE_API_TOKEN"
READ_TOKEN_ENV = "TASKFLARE_API_READ_TOKEN"
# Shorter tokens get a warning on a public address: 16 random characters of
# `secrets.token_urlsafe` carry 96 bits; a word or a short code can be guessed.
MIN_TOKEN_CHARS = 16
DEFAULT_BODY_LIMIT = 1024 * 1024
# A refused body up to this size is read and dropped before answering 413.
DISCARD_LIMIT = 32 * 1024 * 1024


# The Python argument names an error may name, as an HTTP caller spells them.
HTTP_NAMES = {
    "run_at": "runAt",
    "delay_seconds": "delaySeconds",
    "max_attempts": "maxAttempts",
    "idempotency_key": "idempotencyKey",
    "correlation_id": "correlationId",
    "content_type": "contentType",
    "rate_key": "rateKey",
    "concurrency_key": "concurrencyKey",
}


def said(exc: BaseException) -> str:
    """An error's message naming fields as the HTTP caller did (`runAt`, not `run_at`)."""
    return exc.message_for(HTTP_NAMES) if isinstance(exc, TaskflareError) else str(exc)


class ErrorBody(BaseModel):
    """Every error: `{"success": false, "error": "..."}` (plus a `code` where useful)."""

    success: bool = False
    error: str
    code: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 408, 409, 413, 415, 422, 503)
}
# RFC 6750's challenge, sent with every 401 of the bearer-token check.
BEARER_CHALLENGE = 'Bearer realm="taskflare"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="taskflare", error="invalid_token"'


class ApiError(HTTPException):
    """An error with the JSON body the API promises."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


def error_body(message: str, code: str | None = None) -> bytes:
    """The JSON of an error response."""
    body: dict[str, Any] = {"success": False, "error": message}
    if code:
        body["code"] = code
    return orjson.dumps(body)


def internal_error(exc: BaseException) -> str:
    """What a 500 says of an unexpected error: its type only (its text may quote data or
    secrets); the traceback goes to the server log."""
    return f"internal error ({type(exc).__name__}); see the server log"


def _token_from_env(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.strip():
        raise InvalidConfig(f"{name} is set but blank: set a token, or unset it")
    if value != value.strip():
        raise InvalidConfig(f"{name} starts or ends with whitespace: remove it")
    return value


@dataclass(frozen=True, slots=True)
class Tokens:
    """The bearer tokens: `write` may do everything, `read` only GET requests."""

    write: str | None
    read: str | None

    @classmethod
    def from_env(cls) -> Tokens:
        """From $TASKFLARE_API_TOKEN and $TASKFLARE_API_READ_TOKEN (unset: no token).

        A variable that is set but blank, or whose token starts or ends with whitespace
        (a stray newline from a secrets file), is `InvalidConfig` naming it: such a token
        would be "enabled" yet match no request.
        """
        return cls(_token_from_env(TOKEN_ENV), _token_from_env(READ_TOKEN_ENV))

    def short(self) -> list[tuple[str, int]]:
        """(variable, length) of each token shorter than `MIN_TOKEN_CHARS` characters."""
        given = ((TOKEN_ENV, self.write), (READ_TOKEN_ENV, self.read))
        return [(name, len(t)) for name, t in given if t and len(t) < MIN_TOKEN_CHARS]

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (else the API is open: loopback only)."""
        return bool(self.write or self.read)

    def refusal(self, method: str, authorization: str) -> str | None:
        """Why a request with this method and Authorization header is refused, or None."""
        if not self.enabled:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return "missing bearer token (Authorization: Bearer <token>)"
        allowed = [self.write] + ([self.read] if method in ("GET", "HEAD") else [])
        if not any(t and hmac.compare_digest(given.encode(), t.encode()) for t in allowed):
            return "invalid token for this request"
        return None

    def known(self, authorization: str) -> bool:
        """Whether this Authorization header carries one of the tokens (whatever the
        method: a read token sent with a POST is refused, but it is no guess)."""
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return any(
            t and hmac.compare_digest(given.encode(), t.encode()) for t in (self.write, self.read)
        )

    def check(self, request: Request) -> None:
        """Raise 401 unless the request carries a token allowed for its method."""
        header = request.headers.get("authorization", "")
        problem = self.refusal(request.method, header)
        if problem is not None:
            challenge = INVALID_TOKEN_CHALLENGE if header else BEARER_CHALLENGE
            raise ApiError(401, problem, headers={"WWW-Authenticate": challenge})


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit with 413 before reading them in full."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        limit_for: Callable[[str], int],
    ) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        # No Content-Type rewriting here: a body must say it is JSON (`security.EdgeGuard`
        # answers 415 otherwise), or any web page could post one without a CORS preflight.
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # Refuse without parsing; read (and drop) a moderately sized body first so the
            # client, still sending, gets the answer instead of a reset connection, and
            # the connection stays open for its next request.
            drained = int(declared) <= DISCARD_LIMIT
            if drained:
                await _discard(receive)
            await _too_large(send, limit, close=not drained)
            return
        received = 0
        too_large = False

        async def guarded_receive() -> MutableMapping[str, Any]:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, guarded_receive, send)
        except _BodyTooLarge:
            await _too_large(send, limit, close=True)


class _BodyTooLarge(ApiError):
    """Raised while reading a body past the limit. An HTTP error, so that FastAPI's body
    parsing lets it through (it turns any other exception into a 400) and the API's error
    handler answers 413; the middleware answers 413 itself if it surfaces there."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit), "too_large")
        self.headers = {"connection": "close"}


def _too_large_message(limit: int) -> str:
    return f"request body is larger than the limit of {format_bytes(limit)}"


async def _discard(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _too_large(send: Send, limit: int, *, close: bool) -> None:
    body = error_body(_too_large_message(limit), "too_large")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:  # the body was not read to its end
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route answers at this request's path, for the `Allow` header a
    405 must carry (RFC 9110, 15.5.6). The router's own 405 names only the first route
    that matched the path, so a path served by two routes (GET and POST) named one."""
    found = []
    for method in METHODS:
        probe = {**scope, "method": method}
        if any(_answers(route, probe) for route in routes):
            found.append(method)
    if "GET" in found and "HEAD" not in found:  # `HeadAsGet` answers it
        found.insert(found.index("GET") + 1, "HEAD")
    return found


class HeadAsGet:
    """ASGI middleware: answer HEAD wherever GET is answered, with GET's status and
    headers (its `Content-Length` included) and no body, as RFC 9110, 9.3.2 asks of
    every general-purpose server. FastAPI's routes declare GET alone: without this a
    HEAD (a monitor's, a link checker's, `curl -I`) got 405.

    `routes` is the application's route list, read at each HEAD request; a path that no
    route answers with GET keeps its HEAD (and so its 404 or 405)."""

    def __init__(self, app: Any, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        if any(_answers(route, scope) for route in self.routes) or not any(
            _answers(route, as_get) for route in self.routes
        ):
            await self.app(scope, receive, send)
            return

        async def bodiless(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(as_get, receive, bodiless)


# The methods a 405's `Allow` may name (what the routes declare).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _answers(route: BaseRoute, scope: Scope) -> bool:
    """Whether `route` (or, for a mount, one of its routes) takes this path and method."""
    match, child = route.matches(scope)
    if match is not Match.FULL:
        return False
    if isinstance(route, Mount):
        return any(_answers(inner, {**scope, **child}) for inner in route.routes)
    return True


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not take (422 `invalid`, naming it and
    those it takes): `?offset=50` or `?page=2` on a listing paged by cursor was ignored,
    and a client paging that way read the first page for ever."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        takes = ", ".join(sorted(_query_names(dependant))) or "none"
        raise ApiError(
            422,
            f"query.{unknown[0]}: unknown query parameter (this path takes: {takes})",
            "invalid",
        )
