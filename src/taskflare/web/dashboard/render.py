"""What every dashboard page shares: the Jinja2 environment (autoescape on), the page
context, security headers, and answers for errors and refusals."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .sessions import Session, SessionStore

# The pages load only their own script and stylesheet; no inline script can run, so
# stored text that escaped escaping still could not execute.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
# JSON bodies longer than this are cut on the page, with a link to see all of it.
PREVIEW_CHARS = 4000


def pretty_json(value: Any) -> str:
    """Indented JSON text (non-JSON values as their repr)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)


def when(value: str | datetime | float | None) -> str:
    """A moment for a table cell: `2026-11-30 08:15:02Z`."""
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def atleast(value: float | None, capped: bool) -> str:
    """A count for a cell: with a `+` when it stopped at the counting limit ("10000+")."""
    number = 0.0 if value is None else float(value)
    shown = str(int(number)) if number.is_integer() else str(number)
    return shown + "+" if capped else shown


def seconds(value: float | None) -> str:
    """A duration for a table cell."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("taskflare.web.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = pretty_json
    env.filters["when"] = when
    env.filters["seconds"] = seconds
    env.filters["atleast"] = atleast
    return env


ENV = _environment()


def static_file(name: str) -> bytes | None:
    """A file shipped in the package's static folder, or None."""
    if "/" in name or name.startswith("."):
        return None
    path = resources.files("taskflare.web.dashboard").joinpath("static", name)
    return path.read_bytes() if path.is_file() else None


class Pages:
    """Renders pages for one dashboard: its session store and base path."""

    def __init__(self, sessions: SessionStore, title: str) -> None:
        self.sessions = sessions
        self.title = title

    def base(self, request: Request) -> str:
        """The dashboard's path prefix (where it is mounted)."""
        return str(request.scope.get("root_path") or "").rstrip("/")

    def render(
        self,
        request: Request,
        session: Session,
        template: str,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        """A page from `template` with the shared context; writes the session back."""
        flash = session.flash
        if flash:
            session.flash = None
            session.changed = True
        html = ENV.get_template(template).render(
            base=self.base(request),
            session=session,
            can_write=session.can_write,
            signed_in=session.role is not None,
            tokens_enabled=self.sessions.tokens.enabled,
            csrf=session.csrf,
            flash=flash,
            title=self.title,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code, headers=HEADERS)
        self.sessions.save(request, response, session)
        return response

    def redirect(self, request: Request, session: Session, to: str, flash: str | None) -> Response:
        """303 to a dashboard path (after a POST), with a message for the next page."""
        if flash:
            session.flash = flash
            session.changed = True
        response = RedirectResponse(self.base(request) + to, status_code=303, headers=HEADERS)
        self.sessions.save(request, response, session)
        return response

    def error(self, request: Request, session: Session, status: int, message: str) -> Response:
        """An error page (404 unknown, 403 refused, 400 bad input, 503 no database)."""
        return self.render(request, session, "error.html", status, status=status, message=message)


def is_loopback(request: Request) -> bool:
    """Whether the client connected from this machine."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def loopback_host(request: Request) -> bool:
    """Whether the request's `Host` is a loopback name or address (or absent)."""
    host = request.headers.get("host")
    if host is None:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(request: Request) -> bool:
    """Whether a state-changing request came from a page of this server: its Origin (or,
    without one, its Referer) names the host the request was sent to."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True  # no browser omits both on a form POST; a non-browser needs the CSRF token
    host = request.headers.get("host", "")
    rest = source.split("://", 1)[-1]
    return rest.split("/", 1)[0].lower() == host.lower()


def markup(text: str) -> Markup:
    """Trusted HTML made by this package (charts)."""
    return Markup(text)
