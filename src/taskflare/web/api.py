"""The HTTP service: `create_api(app)` builds the FastAPI app that `taskflare serve` runs."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..app import App
from ..errors import InvalidJobState, InvalidQueueConfig, TaskflareError
from ..webhooks import WebhookRejected
from .cloudflare_api import CloudflareErrors, cloudflare_router
from .common import (
    DEFAULT_BODY_LIMIT,
    ERRORS,
    ApiError,
    BodyLimit,
    HeadAsGet,
    Tokens,
    allowed_methods,
    error_body,
    internal_error,
    known_query_only,
    said,
)
from .dashboard import create_dashboard
from .health import health_router
from .jobs_routes import job_router
from .metrics import render_metrics
from .namespace_routes import namespace_router
from .queue_routes import Envelope, queue_router
from .security import (
    EdgeGuard,
    HttpSecurity,
    StrictJsonBody,
    add_docs,
    database_unavailable,
    storage_failure,
)

log = logging.getLogger("taskflare.http")

# Declares the scheme in the OpenAPI document (Swagger UI's "Authorize"). `EdgeGuard` has
# checked the token before any body was read; the routes' `tokens.check` is a second lock.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="TASKFLARE_API_TOKEN (every endpoint) or TASKFLARE_API_READ_TOKEN "
    "(GET and HEAD only).",
)


# The router's own 404 and 405 (a path or method the API does not have), with the code
# every other error carries.
ROUTING_ERRORS = {
    404: ("not_found", "no such path", "Not Found"),
    405: ("method_not_allowed", "method not allowed on this path", "Method Not Allowed"),
}


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    problems = []
    status = 422
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        if error.get("type") == "json_invalid":
            status = 400
            problems.append("malformed JSON body")
            continue
        message = str(error.get("msg", "invalid"))
        if location == "body" and error.get("type") == "value_error":
            # A check of the whole body (two fields that exclude each other): its own
            # message names the fields, without pydantic's "Value error, " in front.
            problems.append(message.removeprefix("Value error, "))
            continue
        if message[-1:].isdigit():  # "less than or equal to 31536000": say in what
            message += _unit_of(location)
        problems.append(f"{location}: {message}")
    return status, "; ".join(problems) or "invalid request"


def _unit_of(field: str) -> str:
    """The unit a request field is counted in, from its name (`delaySeconds`, `...Ms`)."""
    name = field.rsplit(".", 1)[-1]
    if name.endswith(("Seconds", "_seconds")):
        return " seconds"
    if name.endswith(("Ms", "_ms")):
        return " milliseconds"
    if name.endswith(("Bytes", "_bytes")):
        return " bytes"
    return ""


def create_api(
    app: App, tokens: Tokens | None = None, security: HttpSecurity | None = None
) -> FastAPI:
    """The FastAPI application serving `app`: jobs, queues, pull consumers, webhooks, metrics.

    `tokens` default to $TASKFLARE_API_TOKEN/$TASKFLARE_API_READ_TOKEN, `security` (Host,
    Origin, docs, timeouts) to `HttpSecurity.from_env()`; see docs/security.md.
    """
    tokens = tokens or Tokens.from_env()
    security = security or HttpSecurity.from_env()
    for source in app.webhook_sources.values():
        app.job_type(source.job_type)  # a webhook must name a registered job type

    async def authorize(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
    ) -> None:
        tokens.check(request)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        try:
            await app.declare_queues()
        except TaskflareError as exc:  # the database is down: the API answers 503 meanwhile
            log.warning("could not store the queue settings: %s", exc)
        yield
        await app.close()

    api = FastAPI(
        title="taskflare",
        version=__version__,
        description="Jobs and queues with Cloudflare Queues semantics.",
        lifespan=lifespan,
        docs_url=None,  # served by `add_docs` from the package, never from a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    add_docs(api)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        failure = storage_failure(exc)
        if failure is not None:  # a route turned an outage into a 4xx: it is a 503
            return database_unavailable(request, failure, app.database_url)
        code = exc.code if isinstance(exc, ApiError) else None
        message = str(exc.detail)
        routing = ROUTING_ERRORS.get(exc.status_code)
        if code is None and routing is not None and message == routing[2]:  # no route
            code, what, _ = routing
            message = f"{what}: {request.method} {request.url.path} (the paths are listed at /docs)"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(request.app.router.routes, request.scope))
            headers = {**(headers or {}), "Allow": allow}
        return Response(
            error_body(message, code),
            status_code=exc.status_code,
            media_type="application/json",
            headers=headers,
        )

    @api.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        status, message = _validation_message(exc)
        return Response(
            error_body(message, "invalid"), status_code=status, media_type="application/json"
        )

    @api.exception_handler(TaskflareError)
    async def taskflare_error(request: Request, exc: TaskflareError) -> Response:
        failure = storage_failure(exc)
        if failure is not None:
            return database_unavailable(request, failure, app.database_url)
        # Routes turn the errors they expect into their own status and code; this answers
        # the rest (a webhook's event that fails its job type's model), with a code too.
        status, code = (
            (422, "invalid")
            if isinstance(exc, (ValueError, InvalidQueueConfig))
            else (404, "not_found")
            if isinstance(exc, LookupError)
            else (409, "wrong_state")
            if isinstance(exc, InvalidJobState)
            else (503, "unavailable")
        )
        return Response(
            error_body(said(exc), code), status_code=status, media_type="application/json"
        )

    @api.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> Response:
        # Only what fails outside `EdgeGuard` (which answers the routes' own errors).
        log.exception("unhandled error in the HTTP API")
        return Response(
            error_body(internal_error(exc), "internal"),
            status_code=500,
            media_type="application/json",
        )

    @api.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        # A browser goes to the dashboard; a program gets where things are.
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"{request.scope.get('root_path', '')}/dashboard/", 303)
        return JSONResponse({"service": "taskflare", "dashboard": "/dashboard/", "docs": "/docs"})

    @api.get("/dashboard", include_in_schema=False)
    async def dashboard_slash(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/dashboard/", 307)

    # The dashboard signs browsers in with the same tokens (a session cookie) and guards
    # its own forms (CSRF token, same origin, read-only sessions refused).
    api.mount("/dashboard", create_dashboard(app, tokens))

    api.include_router(health_router(app))
    protected = [Depends(authorize)]
    # The API's own routes refuse query parameters they do not take; the Cloudflare
    # routes take what its SDKs send (paging of lists they do not page here).
    own = [*protected, Depends(known_query_only)]
    api.include_router(job_router(app), dependencies=own)
    api.include_router(queue_router(app), dependencies=own)
    api.include_router(namespace_router(app), dependencies=own)
    api.include_router(cloudflare_router(app), dependencies=protected)

    @api.get(
        "/metrics",
        tags=["service"],
        dependencies=protected,
        response_class=PlainTextResponse,
        responses=ERRORS,
    )
    async def metrics(request: Request) -> Response:
        body, content_type = await render_metrics(app, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    @api.post("/webhooks/{source}", tags=["webhooks"], response_model=Envelope, responses=ERRORS)
    async def webhook(source: str, request: Request) -> JSONResponse:
        config = app.webhook_sources.get(source)
        if config is None:  # `EdgeGuard` drops the body before the 404 goes out
            raise ApiError(404, f"no webhook source {source!r}", "unknown_source")
        body = await request.body()
        try:
            verified = config.verify(body, request.headers)
        except WebhookRejected as exc:
            # One line, no traceback: anyone can send these. The message holds no header text.
            log.warning("webhook %r rejected (%d): %s", source, exc.status, exc)
            raise ApiError(exc.status, f"webhook rejected: {exc}", exc.code) from None
        job = await app.enqueue(
            config.job_type,
            verified.event,
            idempotency_key=f"{source}:{verified.dedup_key}",
            idempotency_ttl=verified.ttl,
        )
        return JSONResponse(
            {
                "success": True,
                "received": True,
                "jobId": job.id,
                "eventId": verified.dedup_key,
                "duplicate": job.duplicate,
            }
        )

    def limit_for(path: str) -> int:
        parts = path.strip("/").split("/")
        if parts[:3] == ["client", "v4", "accounts"] and parts[4:5] == ["queues"]:
            parts = parts[4:]  # client/v4/accounts/{id}/queues/{queue}/messages...
        if len(parts) >= 3 and parts[0] == "queues" and parts[2] == "messages":
            queue = app.queues.get(parts[1])
            if queue is not None:
                # JSON framing around the largest batch the queue accepts.
                return queue.config.max_batch_bytes * 2 + 64 * 1024
        return DEFAULT_BODY_LIMIT

    # The last added runs first: the edge checks, then the size limit, then strict JSON.
    api.add_middleware(StrictJsonBody)
    api.add_middleware(BodyLimit, limit_for=limit_for)
    api.add_middleware(EdgeGuard, tokens=tokens, security=security)
    api.add_middleware(CloudflareErrors)  # every error under /client/v4/
    api.add_middleware(HeadAsGet, routes=api.router.routes)  # outermost: HEAD is a GET
    return api
