"""The HTTP service's edge: who may reach it, what it accepts, how long a client may take.

`EdgeGuard` (ASGI) decides before anything reads a body: control characters in the path
or query (400), the `Host` (400 `invalid_host`, against DNS rebinding), the `Origin` of a
state-changing request (403 `forbidden_origin`, against forged cross-site requests), the
bearer token (401), the `Content-Type` of a body (415), and a deadline for the body (408);
a body still unread when any answer starts is read and dropped first (`request_body`).
`StrictJsonBody` refuses what is not JSON (`NaN`, `Infinity`) before FastAPI parses it.
`HeaderTimeoutH11Protocol` closes connections that do not finish their request headers in
time. The threat model and every setting are in docs/security.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
import logging
import os
import re
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import h11
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from pydantic import field_validator
from pydantic_core import PydanticCustomError
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..backends.url import hide_credentials, redact_url
from ..encoding import loads_strict
from ..errors import (
    BackendUnavailable,
    InvalidDatabaseUrl,
    SchemaOutdated,
    SchemaTooNew,
    TaskflareError,
)
from .common import (
    BEARER_CHALLENGE,
    INVALID_TOKEN_CHALLENGE,
    ApiError,
    Receive,
    Scope,
    Send,
    Tokens,
    error_body,
    internal_error,
)
from .failures import API_LIMITS, FailureLimit, client_address, too_many
from .request_body import BodyTimeout, RequestBody, has_body

log = logging.getLogger("taskflare.http")

ALLOWED_HOSTS_ENV = "TASKFLARE_ALLOWED_HOSTS"
ALLOWED_ORIGINS_ENV = "TASKFLARE_ALLOWED_ORIGINS"
PUBLIC_DOCS_ENV = "TASKFLARE_PUBLIC_DOCS"
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_LIMIT_CONCURRENCY = 1000
# A list answer stops adding items past this many bytes of JSON (and gives a cursor).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/redoc"})
_DOCS_ASSETS = "/docs/assets/"
# The dashboard's pages and forms (HTML forms, guarded by its own session and CSRF token).
DASHBOARD = "/dashboard/"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
_API_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
# Swagger UI and ReDoc: their own scripts and styles (plus the inline ones FastAPI's pages
# use), nothing from elsewhere; ReDoc runs its search in a blob: worker.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpSecurity:
    """How the HTTP service guards its edge: the names it answers to, the origins that may
    change things, whether the schema and docs are public, and how long clients may take."""

    bind_host: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    public_docs: bool = False
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
    _hosts: frozenset[tuple[str, int | None]] = field(init=False, repr=False, compare=False)
    _origins: frozenset[tuple[str, str, int]] = field(init=False, repr=False, compare=False)
    _local_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "limit_concurrency"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        hosts = set()
        for entry in self.allowed_hosts:
            parsed = _split_host(entry, None) if entry != "*" else ("*", None)
            if parsed is None:
                raise ValueError(f"allowed host {entry!r} is not a host name or host:port")
            hosts.add(parsed)
        origins = set()
        for entry in self.allowed_origins:
            parsed_origin = _split_origin(entry) if entry != "*" else ("*", "*", 0)
            if parsed_origin is None:
                raise ValueError(
                    f"allowed origin {entry!r} is not scheme://host[:port] (http or https)"
                )
            origins.add(parsed_origin)
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_origins", frozenset(origins))
        local = set(LOOPBACK_NAMES)
        if self.bind_host is not None and self.bind_host not in _WILDCARD_ADDRESSES:
            local.add(_bare(self.bind_host).lower())
        object.__setattr__(self, "_local_names", frozenset(local))

    @classmethod
    def from_env(
        cls,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        public_docs: bool = False,
        **settings: Any,
    ) -> HttpSecurity:
        """These settings plus $TASKFLARE_ALLOWED_HOSTS and $TASKFLARE_ALLOWED_ORIGINS
        (comma-separated, added to the lists) and $TASKFLARE_PUBLIC_DOCS=1."""
        return cls(
            allowed_hosts=(*allowed_hosts, *_env_list(ALLOWED_HOSTS_ENV)),
            allowed_origins=(*allowed_origins, *_env_list(ALLOWED_ORIGINS_ENV)),
            public_docs=public_docs or _env_flag(PUBLIC_DOCS_ENV),
            **settings,
        )

    def host_allowed(
        self, host: str | None, server: tuple[str, int | None] | None, https: bool
    ) -> bool:
        """Whether a request's `Host` names this server: a loopback name or the bound host
        at the server's port, the address the connection arrived on, or an allowed name.
        A page that reached the server through a rebound DNS name carries that name."""
        if host is None or ("*", None) in self._hosts:
            return True  # an HTTP/1.0 client without Host is no browser
        parsed = _split_host(host, 443 if https else 80)
        if parsed is None:
            return False
        name, port = parsed
        if parsed in self._hosts or (name, None) in self._hosts:
            return True
        server_port = server[1] if server is not None else None
        at_server_port = server_port is None or port == server_port
        if server is not None and name == _bare(server[0]).lower() and at_server_port:
            return True  # the address the connection arrived on: no DNS name to rebind
        return name in self._local_names and at_server_port

    def origin_allowed(self, origin: str, host: str | None, https: bool) -> bool:
        """Whether a state-changing request from this `Origin` may proceed: the same scheme,
        host and port as the request's `Host`, or an allowed origin."""
        if ("*", "*", 0) in self._origins:
            return True
        parsed = _split_origin(origin)
        if parsed is None:  # "null" (sandboxed frames, file: pages) or garbage
            return False
        if parsed in self._origins:
            return True
        scheme = "https" if https else "http"
        target = None if host is None else _split_host(host, 443 if https else 80)
        return target is not None and parsed == (scheme, *target)

    def is_public(self, path: str, tokens: Tokens) -> bool:
        """Whether `path` is answered without a bearer token: /health, webhooks (their
        signature authenticates), the dashboard (it signs browsers in with the same tokens
        and guards its forms itself), `/` (a redirect), and the schema and docs when
        published (or when no token is set)."""
        if path in ("/health", "/health/live", "/", "/dashboard"):
            return True  # "/" and "/dashboard" only redirect
        if path.startswith(("/webhooks/", DASHBOARD)):
            return True  # the dashboard signs browsers in itself
        return is_docs_path(path) and (self.public_docs or not tokens.enabled)


def is_docs_path(path: str) -> bool:
    """The OpenAPI schema, Swagger UI, ReDoc and their assets."""
    return path in _DOCS_PATHS or path.startswith(_DOCS_ASSETS)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _split_host(value: str, default_port: int | None) -> tuple[str, int | None] | None:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (lower-case name, port)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    else:  # a name, or a bare IPv6 address in a setting
        name, port_text = value, ""
    name = name.rstrip(".")
    if not name or any(c in name for c in "/?#@ "):
        return None
    if not port_text:
        return name, default_port
    if not port_text.isdigit() or int(port_text) > 65535:
        return None
    return name, int(port_text)


def _split_origin(value: str) -> tuple[str, str, int] | None:
    """`scheme://host[:port]` as (scheme, lower-case host, port), or None."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


# -- the edge ------------------------------------------------------------------------------


class EdgeGuard:
    """ASGI middleware: refuse what must not reach the routes, before any body is read;
    give the body a deadline; before any answer that starts with the body unread (its
    own refusals, the router's 404 and 405, a route's early error), read and drop the
    body (`request_body`); add the hardening headers to every answer."""

    def __init__(self, app: Any, tokens: Tokens, security: HttpSecurity) -> None:
        self.app = app
        self.tokens = tokens
        self.security = security
        self.failures = FailureLimit(API_LIMITS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        body = RequestBody(scope, receive, self.security.body_timeout)
        started = False

        async def guarded_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # An answer that did not need the body (a refusal, a 404, a 405): read
                # and drop what the client is still sending first, so that it gets the
                # answer, not a reset connection (see `request_body`).
                await body.drain()
                message = dict(message)
                out = list(message.get("headers") or [])
                present = {name.lower() for name, _ in out}
                out += [(name, value) for name, value in _API_HEADERS if name not in present]
                if not body.done and b"connection" not in present:
                    # The body was not read: the connection cannot carry another request.
                    out.append((b"connection", b"close"))
                message["headers"] = out
            await send(message)

        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _answer(guarded_send, *refusal)
            return
        try:
            await self.app(scope, body.receive, guarded_send)
        except BodyTimeout as exc:
            if started:
                raise
            log.info("%s %s: %s", scope["method"], scope["path"], exc.detail)
            await _answer(guarded_send, 408, exc.detail, "timeout")
        except Exception as exc:
            if started:
                raise
            # Answered here rather than by Starlette's outermost error middleware, so that
            # a 500 gets what every answer gets: the drain, the hardening headers, and,
            # under /client/v4/, Cloudflare's error shape.
            log.exception("unhandled error in the HTTP API")
            await _answer(guarded_send, 500, internal_error(exc), "internal")

    def _refusal(
        self, scope: Scope, headers: dict[bytes, bytes]
    ) -> tuple[int, str, str | None, list[tuple[bytes, bytes]]] | None:
        path: str = scope["path"]
        method: str = scope["method"]
        if _CONTROL.search(path) or _CONTROL_BYTES.search(
            unquote_to_bytes(scope.get("query_string") or b"")
        ):
            return (
                400,
                "the path or query string holds a control character (such as NUL, %00); "
                "no id, name, key or cursor can contain one",
                "control_character",
                [],
            )
        https = scope.get("scheme") == "https"
        host = _text(headers.get(b"host"))
        if not self.security.host_allowed(host, scope.get("server"), https):
            return (
                400,
                f"this server does not answer to Host {host!r}; allow it with --allowed-host "
                "or TASKFLARE_ALLOWED_HOSTS",
                "invalid_host",
                [],
            )
        webhook = path.startswith("/webhooks/")  # signed by the sender, sent by servers
        origin = _text(headers.get(b"origin"))
        if (
            method in _STATE_CHANGING
            and not webhook
            and origin is not None
            and not self.security.origin_allowed(origin, host, https)
        ):
            return (
                403,
                f"a page from {origin!r} may not change anything here; allow it with "
                "--allowed-origin or TASKFLARE_ALLOWED_ORIGINS",
                "forbidden_origin",
                [],
            )
        if not self.security.is_public(path, self.tokens):
            authorization = _text(headers.get(b"authorization")) or ""
            client = client_address(scope.get("client"))
            wait = self.failures.retry_after(client) if authorization else None
            if wait is not None:  # refused before the token is looked at
                log.warning("%s %s from %s: too many wrong tokens", method, path, client)
                return 429, too_many(wait), "too_many_failures", [(b"retry-after", b"%d" % wait)]
            problem = self.tokens.refusal(method, authorization)
            if problem is not None:
                if authorization and not self.tokens.known(authorization):
                    self.failures.failed(client)
                challenge = INVALID_TOKEN_CHALLENGE if authorization else BEARER_CHALLENGE
                return 401, problem, None, [(b"www-authenticate", challenge.encode())]
        if (
            method in _STATE_CHANGING
            and not webhook
            and not path.startswith(DASHBOARD)
            and has_body(headers)
            and not _is_json(headers.get(b"content-type", b""))
        ):
            return (
                415,
                "a request body must be JSON sent with Content-Type: application/json",
                "unsupported_media_type",
                [],
            )
        return None


class StrictJsonBody:
    """ASGI middleware: refuse a JSON body that Python's `json` would accept but JSON does
    not (`NaN`, `Infinity`, `-Infinity`, lone surrogates) with 400, before FastAPI parses
    it. Such numbers would otherwise be stored as null."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        if (
            scope["type"] != "http"
            or scope["method"] not in _STATE_CHANGING
            or scope["path"].startswith("/webhooks/")
            or not has_body(headers)
            or not _is_json(headers.get(b"content-type", b""))
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_problem(body) if body else None
        if problem is not None:
            await _answer(send, 400, problem, "invalid")
            return
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


# Arrays and objects nested deeper than this are refused before FastAPI reads the body:
# its parser (Python's `json`, recursive) fails past ~970 levels with a bare "error
# parsing the body", while orjson here reads up to 1024. No stored value is this deep
# (a payload or body past ~254 levels cannot be encoded: 422 naming it).
MAX_JSON_DEPTH = 512


def json_problem(body: bytes) -> str | None:
    """Why `body` is not strict JSON (RFC 8259), or None if it is: a NaN, an `Infinity` or
    a number too large for a float is named with where it is (`payload.x: NaN is not...`);
    arrays and objects nested more than `MAX_JSON_DEPTH` levels are refused too."""
    try:
        value = loads_strict(body)
    except ValueError as exc:
        return f"malformed JSON body: {exc}"
    # Counting brackets is fast; only a body with that many is walked.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        return (
            f"malformed JSON body: arrays and objects nested more than {MAX_JSON_DEPTH} levels deep"
        )
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests lists and dicts more than `limit` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend(
                (child, depth + 1) for child in children if isinstance(child, (list, dict))
            )
    return False


async def _answer(
    send: Send,
    status: int,
    message: str,
    code: str | None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    body = error_body(message, code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


# -- the server ----------------------------------------------------------------------------


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request line and headers
    take longer than `header_timeout` (408 if it had started one). uvicorn has no such
    timeout: a client sending one header line a second held its connection for good."""

    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()  # a connection that never sends a byte ends too

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # bytes of a request whose headers are not in
            self._request_begun = True
            if self._header_timer is None:
                self._start_header_timer()
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._stop_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._request_begun = False

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._request_begun:
            log.info(
                "closed a connection from %s: no complete request headers within %g s",
                self.client[0] if self.client else "?",
                self.header_timeout,
            )
            body = error_body(
                f"the request headers did not arrive within {self.header_timeout:g} s",
                "timeout",
            )
            head = (
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            )
            self.transport.write(head + body)
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


def uvicorn_options(security: HttpSecurity) -> dict[str, Any]:
    """The uvicorn settings that enforce `security`'s header timeout and connection limit
    (`uvicorn.run(api, **uvicorn_options(s), ...)` or `uvicorn.Config`)."""
    protocol = type(
        "HeaderTimeoutH11Protocol",
        (HeaderTimeoutH11Protocol,),
        {"header_timeout": security.header_timeout},
    )
    return {"http": protocol, "limit_concurrency": security.limit_concurrency}


# -- request models ------------------------------------------------------------------------


def no_control_characters(*fields: str) -> Any:
    """A pydantic validator for request models: these text fields (or lists of text) may
    not hold NUL or another control character (PostgreSQL text cannot hold NUL; both
    backends refuse alike, with 422 naming the field). The text is checked as the caller
    sent it: an opaque token (a pull lease id) is not decoded here, its decoder says
    whether it is one of ours.

    Use in a model's body: `check_text = no_control_characters("type", "queue")`.
    """

    def check(value: Any) -> Any:
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                found = _CONTROL.search(text)
                if found:
                    raise PydanticCustomError(
                        "control_character",
                        "holds a control character ({char}); text fields cannot",
                        {"char": f"U+{ord(found.group()):04X}"},
                    )
        return value

    return field_validator(*fields)(check)


# -- answers -------------------------------------------------------------------------------


def items_within(items: Sequence[Any], budget: int = MAX_RESPONSE_BYTES) -> int:
    """How many of `items`, from the first, fit in `budget` bytes of JSON (at least one),
    so that a list route can answer a shorter page with a cursor instead of 60 MB."""
    used = 0
    for count, item in enumerate(items):
        used += len(orjson.dumps(item, default=str)) + 1
        if used > budget and count > 0:
            return count
    return len(items)


_STORAGE_ERRORS = (BackendUnavailable, SchemaOutdated, SchemaTooNew, InvalidDatabaseUrl)
UNAVAILABLE_MESSAGE = "the database is unavailable"


def storage_failure(exc: BaseException) -> TaskflareError | None:
    """The storage error behind `exc`: itself, or one it was raised while handling (a route
    that turns every `TaskflareError` into a 400 must not turn an outage into one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _STORAGE_ERRORS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def database_unavailable(request: Request, failure: BaseException, database_url: str) -> Response:
    """503 saying only that the database is unavailable; the detail goes to the log, with
    the database URL redacted (clients never see its user, host, port, name or password)."""
    log.warning(
        "%s %s: the database is unavailable: %s",
        request.method,
        request.url.path,
        redact_secrets(f"{type(failure).__name__}: {failure}", database_url),
    )
    return Response(
        error_body(UNAVAILABLE_MESSAGE, "database_unavailable"),
        status_code=503,
        media_type="application/json",
        headers={"retry-after": "5"},
    )


def redact_secrets(text: str, database_url: str) -> str:
    """`text` with the database URL redacted wherever it (or its password) appears."""
    text = hide_credentials(text.replace(database_url, redact_url(database_url)))
    try:
        password = urlsplit(database_url).password
    except ValueError:  # not a URL: hide_credentials did what can be done
        return text
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


# -- docs ----------------------------------------------------------------------------------

_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


@functools.cache
def _asset(name: str) -> bytes:
    # Swagger UI and ReDoc as the fastapi-offline package ships them (pinned in pyproject).
    return (importlib.resources.files("fastapi_offline") / "static" / name).read_bytes()


def add_docs(api: FastAPI) -> None:
    """`/docs` (Swagger UI) and `/redoc`, with their scripts served from the installed
    package: they work offline and load nothing from a CDN. Whether they need a token is
    `EdgeGuard`'s business (`HttpSecurity.public_docs`)."""
    schema = api.openapi_url or "/openapi.json"

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{schema}",
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{root}{_DOCS_ASSETS}swagger-ui-bundle.js",
            swagger_css_url=f"{root}{_DOCS_ASSETS}swagger-ui.css",
            swagger_favicon_url=f"{root}{_DOCS_ASSETS}favicon.png",
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )
        page.headers["content-security-policy"] = _DOCS_CSP
        return page

    @api.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{schema}",
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{_DOCS_ASSETS}redoc.standalone.js",
            redoc_favicon_url=f"{root}{_DOCS_ASSETS}favicon.png",
            with_google_fonts=False,
        )
        page.headers["content-security-policy"] = _DOCS_CSP
        return page

    @api.get(_DOCS_ASSETS + "{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise ApiError(404, f"no docs asset named {name!r}", "not_found")
        return Response(
            _asset(name), media_type=media_type, headers={"cache-control": "private, max-age=86400"}
        )
