"""Storage backends, chosen by database URL: SQLite (`sqlite/`) and PostgreSQL (`postgres/`)
behind the protocols of `base`, sharing the Python of `store` and `rows`."""

from __future__ import annotations

from .base import Backend
from .opener import open_backend
from .url import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    redact_url,
    resolve_database_url,
    sqlite_path,
)

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "Backend",
    "open_backend",
    "redact_url",
    "resolve_database_url",
    "sqlite_path",
]
