"""Opening the backend a database URL names (nothing connects until first use)."""

from __future__ import annotations

from urllib.parse import parse_qs

from ..errors import InvalidDatabaseUrl
from .base import Backend
from .url import redact_url, split_database_url, sqlite_path


def open_backend(url: str, *, create: bool = True) -> Backend:
    """Create the backend for a database URL (nothing connects until first use).

    `create=False`: a missing database (SQLite file, PostgreSQL schema) is an error
    (`BackendUnavailable`) instead of being created.
    """
    parts = split_database_url(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        from .sqlite.backend import SQLiteBackend

        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        synchronous = options.get("synchronous", "full").upper()
        if synchronous not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
            raise InvalidDatabaseUrl(
                f"synchronous={synchronous.lower()!r} is not a SQLite synchronous mode; "
                "use full (the default) or normal"
            )
        return SQLiteBackend(sqlite_path(url), synchronous=synchronous, create=create)
    if scheme in {"postgresql", "postgres"}:
        try:
            from .postgres.backend import PostgresBackend
        except ImportError as exc:
            raise InvalidDatabaseUrl(
                f"the PostgreSQL backend is not available in this build: {exc}"
            ) from exc
        return PostgresBackend(url, auto_migrate=create)
    raise InvalidDatabaseUrl(
        f"unsupported database URL {redact_url(url)!r}: use sqlite:///file.db or "
        "postgresql://user@host/db"
    )
