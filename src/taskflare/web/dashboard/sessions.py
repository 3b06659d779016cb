"""Dashboard sign-in: signed session cookies, roles and CSRF tokens.

A browser signs in with one of the HTTP API's tokens; the session cookie (HttpOnly,
SameSite=Strict, signed with itsdangerous, Secure over HTTPS) then carries the role
(`write` or `read`), a fingerprint of the token it was opened with (a session dies when
that token is changed or removed) and the CSRF token every form must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ..common import Tokens

COOKIE = "taskflare_session"
SESSION_SECONDS = 12 * 3600
WRITE = "write"
READ = "read"


@dataclass
class Session:
    """What the cookie holds: role (None: signed out), CSRF token, one flash message."""

    role: str | None
    csrf: str
    fingerprint: str | None = None
    flash: str | None = None
    changed: bool = False

    @property
    def can_write(self) -> bool:
        """Whether actions (POSTs that change state) are allowed."""
        return self.role == WRITE


class SessionStore:
    """Reads and writes the signed session cookie for one dashboard."""

    def __init__(self, tokens: Tokens, secret: str | None = None) -> None:
        self.tokens = tokens
        if secret is None:
            if tokens.enabled:  # stable across restarts and processes sharing the tokens
                material = f"taskflare-dashboard:{tokens.write or ''}:{tokens.read or ''}"
                secret = hashlib.sha256(material.encode()).hexdigest()
            else:
                secret = secrets.token_hex(32)
        self._secret = secret
        self._signer = URLSafeTimedSerializer(secret, salt="taskflare-dashboard-session")

    def fingerprint(self, token: str) -> str:
        """A short keyed hash of a token (the cookie never holds the token itself)."""
        return hmac.new(self._secret.encode(), token.encode(), hashlib.sha256).hexdigest()[:24]

    def role_of(self, token: str) -> str | None:
        """The role a token gives, or None for a wrong token."""
        given = token.encode()
        if self.tokens.write and hmac.compare_digest(given, self.tokens.write.encode()):
            return WRITE
        if self.tokens.read and hmac.compare_digest(given, self.tokens.read.encode()):
            return READ
        return None

    def load(self, request: Request) -> Session:
        """The request's session; a fresh signed-out one when the cookie is missing,
        forged, expired or opened with a token no longer configured. Without tokens
        every session may write (the server is reachable from this machine only)."""
        raw = request.cookies.get(COOKIE)
        data: dict[str, Any] = {}
        if raw:
            try:
                data = self._signer.loads(raw, max_age=SESSION_SECONDS)
            except BadSignature:
                data = {}
        csrf = data.get("csrf") if isinstance(data.get("csrf"), str) else None
        session = Session(None, csrf or secrets.token_urlsafe(24), changed=csrf is None)
        session.flash = data.get("flash") if isinstance(data.get("flash"), str) else None
        if not self.tokens.enabled:
            session.role = WRITE
            return session
        role, fingerprint = data.get("role"), data.get("fp")
        current = {WRITE: self.tokens.write, READ: self.tokens.read}.get(str(role))
        if (
            current
            and isinstance(fingerprint, str)
            and hmac.compare_digest(fingerprint, self.fingerprint(current))
        ):
            session.role = str(role)
            session.fingerprint = fingerprint
        return session

    def sign_in(self, session: Session, role: str, token: str) -> None:
        """Open a session with `role`; a new CSRF token (no fixation)."""
        session.role = role
        session.fingerprint = self.fingerprint(token)
        session.csrf = secrets.token_urlsafe(24)
        session.changed = True

    def sign_out(self, session: Session) -> None:
        """Forget the role; a new CSRF token."""
        session.role = None if self.tokens.enabled else WRITE
        session.fingerprint = None
        session.csrf = secrets.token_urlsafe(24)
        session.changed = True

    def save(self, request: Request, response: Response, session: Session) -> None:
        """Write the cookie when the session changed (sign-in, sign-out, flash)."""
        if not session.changed:
            return
        data: dict[str, Any] = {"csrf": session.csrf, "t": int(time.time())}
        if session.role and self.tokens.enabled:
            data["role"] = session.role
            data["fp"] = session.fingerprint
        if session.flash:
            data["flash"] = session.flash
        response.set_cookie(
            COOKIE,
            self._signer.dumps(data),
            max_age=SESSION_SECONDS,
            path=_cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        """Whether a form's CSRF token is the session's."""
        return bool(given) and hmac.compare_digest(str(given).encode(), session.csrf.encode())


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path") or "") or "/"
