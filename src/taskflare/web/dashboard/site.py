"""`create_dashboard(app)`: the dashboard as an ASGI app, mountable under any prefix.

`taskflare serve` and `taskflare dev` mount it at `/dashboard`; a FastAPI or Starlette
app mounts it with `api.mount("/admin/jobs", create_dashboard(app))`. Its guard decides
before any page runs: loopback only without tokens, sign-in with a token otherwise;
every POST needs the session's CSRF token, a page of this origin, and a write session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...app import App
from ..common import Tokens, allowed_methods
from ..failures import SIGN_IN_LIMITS, FailureLimit, client_address, too_many
from ..security import storage_failure
from .actions import Actions
from .pages import Views
from .render import HEADERS, Pages, is_loopback, loopback_host, same_origin, static_file
from .sessions import READ, WRITE, Session, SessionStore

log = logging.getLogger("taskflare.dashboard")

Page = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, FormData], Awaitable[Response]]
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
MAX_FORM_FIELDS = 2000


class Dashboard:
    """The guard around every page and action of one dashboard."""

    def __init__(self, app: App, tokens: Tokens, secret: str | None, title: str) -> None:
        self.app = app
        self.sessions = SessionStore(tokens, secret)
        self.failures = FailureLimit(SIGN_IN_LIMITS)
        self.pages = Pages(self.sessions, title)
        self.views = Views(app, self.pages)
        self.actions = Actions(app, self.pages)

    def _refusal(self, request: Request, session: Session) -> Response | None:
        # Without tokens: only clients on this machine, and only under a loopback name (a
        # page from a rebound DNS name would otherwise read and post as this machine).
        if not self.sessions.tokens.enabled and not (
            is_loopback(request) and loopback_host(request)
        ):
            return self.pages.error(
                request,
                session,
                403,
                "no API token is configured, so the dashboard answers this machine only "
                "(at 127.0.0.1, localhost or [::1])",
            )
        return None

    def page(self, view: Page) -> Callable[[Request], Awaitable[Response]]:
        """A GET page: signed-in sessions only (others go to the sign-in form)."""

        async def handle(request: Request) -> Response:
            session = self.sessions.load(request)
            refused = self._refusal(request, session)
            if refused is not None:
                return refused
            if session.role is None:
                target = self._page_path(request) + (
                    f"?{request.url.query}" if request.url.query else ""
                )
                response = RedirectResponse(
                    f"{self.pages.base(request)}/login?next={quote(target)}", 303, headers=HEADERS
                )
                self.sessions.save(request, response, session)
                return response
            return await self._guarded(request, session, view(request, session))

        return handle

    def _page_path(self, request: Request) -> str:
        """The page's path inside the dashboard (`/queues/emails`), what `next` and every
        redirect take: `request.url.path` holds the prefix the dashboard is mounted under
        too (`/dashboard/queues/emails`), and the sign-in's redirect adds it again."""
        path, base = request.url.path, self.pages.base(request)
        if base and (path == base or path.startswith(base + "/")):
            path = path[len(base) :]
        return path or "/"

    def action(self, act: Action) -> Callable[[Request], Awaitable[Response]]:
        """A POST action: same origin, the session's CSRF token, a write session."""

        async def handle(request: Request) -> Response:
            session = self.sessions.load(request)
            refused = self._refusal(request, session)
            if refused is not None:
                return refused
            form = await request.form(max_fields=MAX_FORM_FIELDS)
            if not same_origin(request):
                return self.pages.error(request, session, 403, "this form was sent by another site")
            if not self.sessions.csrf_ok(session, _field(form, "csrf")):
                return self.pages.error(
                    request, session, 403, "the form's security token is missing or stale; reload"
                )
            if session.role != WRITE:
                return self.pages.error(
                    request, session, 403, "this session is read-only: it can change nothing"
                )
            return await self._guarded(request, session, act(request, session, form))

        return handle

    async def _guarded(
        self, request: Request, session: Session, work: Awaitable[Response]
    ) -> Response:
        try:
            return await work
        except Exception as exc:
            failure = storage_failure(exc)
            if failure is None:
                raise
            log.warning("dashboard %s: the database is unavailable: %s", request.url.path, failure)
            return self.pages.error(request, session, 503, "the database is unavailable")

    # -- sign-in -----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        session = self.sessions.load(request)
        refused = self._refusal(request, session)
        if refused is not None:
            return refused
        if session.role is not None and self.sessions.tokens.enabled is False:
            return RedirectResponse(self.pages.base(request) + "/", 303, headers=HEADERS)
        return self.pages.render(
            request, session, "login.html", next=_safe_next(request.query_params.get("next"))
        )

    async def login(self, request: Request) -> Response:
        session = self.sessions.load(request)
        refused = self._refusal(request, session)
        if refused is not None:
            return refused
        form = await request.form(max_fields=10)
        target = _safe_next(_field(form, "next"))
        if not same_origin(request) or not self.sessions.csrf_ok(session, _field(form, "csrf")):
            return self.pages.error(request, session, 403, "the sign-in form is stale; reload it")
        client = client_address(request.scope.get("client"))
        wait = self.failures.retry_after(client)
        if wait is not None:  # refused before the token is looked at
            log.warning("dashboard: sign-in from %s refused: too many wrong tokens", client)
            response = self.pages.render(
                request, session, "login.html", 429, next=target, error=too_many(wait)
            )
            response.headers["retry-after"] = str(wait)
            return response
        role = self.sessions.role_of(_field(form, "token") or "")
        if role is None:
            self.failures.failed(client)
            log.info("dashboard: a sign-in with a wrong token from %s", client)
            return self.pages.render(
                request, session, "login.html", 401, next=target, error="That token is not valid."
            )
        self.failures.succeeded(client)
        self.sessions.sign_in(session, role, _field(form, "token") or "")
        note = (
            "Signed in read-only: you can see everything and change nothing"
            if role == READ
            else None
        )
        return self.pages.redirect(request, session, target, note)

    async def logout(self, request: Request) -> Response:
        session = self.sessions.load(request)
        form = await request.form(max_fields=10)
        if not self.sessions.csrf_ok(session, _field(form, "csrf")):
            return self.pages.error(request, session, 403, "the form is stale; reload it")
        self.sessions.sign_out(session)
        return self.pages.redirect(request, session, "/login", "Signed out")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = static_file(name)
        suffix = name[name.rfind(".") :] if "." in name else ""
        if body is None or suffix not in STATIC_TYPES:
            return Response("not found", 404, media_type="text/plain")
        return Response(
            body,
            media_type=STATIC_TYPES[suffix],
            headers={"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"},
        )


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _safe_next(value: str | None) -> str:
    """A path inside the dashboard to go back to after signing in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def create_dashboard(
    app: App,
    tokens: Tokens | None = None,
    *,
    secret: str | None = None,
    title: str = "taskflare",
) -> Starlette:
    """The dashboard of `app` as an ASGI app; mount it under any prefix.

    `tokens`: who may sign in (default: $TASKFLARE_API_TOKEN for everything and
    $TASKFLARE_API_READ_TOKEN for a read-only session); with none, it answers clients
    on this machine only. `secret` signs the session cookies (default: derived from the
    tokens, so sessions survive restarts; random when there are no tokens).
    """
    dashboard = Dashboard(app, tokens or Tokens.from_env(), secret, title)
    views, actions = dashboard.views, dashboard.actions
    page, act = dashboard.page, dashboard.action
    routes = [
        Route("/", page(views.overview), name="overview"),
        Route("/login", dashboard.login_form, methods=["GET"]),
        Route("/login", dashboard.login, methods=["POST"]),
        Route("/logout", dashboard.logout, methods=["POST"]),
        Route("/static/{name}", dashboard.static),
        Route("/queues/{name}", page(views.queue)),
        Route("/queues/{name}/messages", page(views.messages)),
        Route("/queues/{name}/messages/delete", act(actions.messages), methods=["POST"]),
        Route("/queues/{name}/dlq", page(views.messages)),
        Route("/queues/{name}/dlq/{action}", act(actions.dead_letters), methods=["POST"]),
        Route("/queues/{name}/{action}", act(actions.queue_action), methods=["POST"]),
        Route("/jobs", page(views.jobs)),
        Route("/jobs/count", page(views.jobs_count)),
        Route("/jobs/bulk", act(actions.bulk), methods=["POST"]),
        Route("/jobs/{job_id}", page(views.job)),
        Route("/jobs/{job_id}/{action}", act(actions.job_action), methods=["POST"]),
        Route("/cron", page(views.cron)),
        Route("/cron/{name}/trigger", act(actions.cron_trigger), methods=["POST"]),
        Route("/workers", page(views.workers)),
        Route("/batches", page(views.batches)),
    ]
    site = Starlette(routes=routes)
    site.state.dashboard = dashboard

    async def not_found(request: Request, exc: Any) -> Response:
        session = dashboard.sessions.load(request)
        status = getattr(exc, "status_code", 404)
        response = dashboard.pages.error(request, session, status, "not found")
        if status == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(routes, request.scope))
        return response

    site.add_exception_handler(404, not_found)
    site.add_exception_handler(405, not_found)
    return site
