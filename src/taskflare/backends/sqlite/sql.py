"""The SQLite backend's named statements and migrations, loaded once."""

from __future__ import annotations

from ..sqlfile import load_migrations, load_queries

_PACKAGE = "taskflare.backends.sqlite"
SQL = load_queries(_PACKAGE)
MIGRATIONS = load_migrations(_PACKAGE)
LATEST_VERSION = MIGRATIONS[-1].version
