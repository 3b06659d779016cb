"""Storage backends, chosen by database URL."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from ..errors import InvalidDatabaseUrl
from .base import Backend

DEFAULT_DATABASE_URL = "sqlite:///taskflare.db"
DATABASE_URL_ENV = "TASKFLARE_DATABASE_URL"


def resolve_database_url(url: str | None) -> str:
    """The URL given, else $TASKFLARE_DATABASE_URL, else the SQLite default."""
    if url:
        return url
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///relative.db` or `sqlite:////absolute.db` URL."""
    parts = urlsplit(url)
    path = url[len("sqlite://") :].split("?", 1)[0]
    if parts.netloc:
        raise InvalidDatabaseUrl(
            f"SQLite URL {url!r} has a host part; use sqlite:///relative.db or sqlite:////abs.db"
        )
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise InvalidDatabaseUrl(f"SQLite URL {url!r} names no file")
    return path


def open_backend(url: str) -> Backend:
    """Create the backend for a database URL (nothing connects until first use)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from .sqlite.backend import SQLiteBackend

        options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        synchronous = options.get("synchronous", "full").upper()
        if synchronous not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
            raise InvalidDatabaseUrl(
                f"synchronous={synchronous.lower()!r} is not a SQLite synchronous mode; "
                "use full (the default) or normal"
            )
        return SQLiteBackend(sqlite_path(url), synchronous=synchronous)
    if scheme in {"postgresql", "postgres"}:
        try:
            from .postgres.backend import PostgresBackend
        except ImportError as exc:
            raise InvalidDatabaseUrl(
                f"the PostgreSQL backend is not available in this build: {exc}"
            ) from exc
        return PostgresBackend(url)
    raise InvalidDatabaseUrl(
        f"unsupported database URL {redact_url(url)!r}: use sqlite:///file.db or "
        "postgresql://user@host/db"
    )
