"""`settings.TASKFLARE`: what it may hold, and the app built from it.

```python
TASKFLARE = {
    "DATABASE_URL": None,       # default: Django's PostgreSQL database (see below)
    "DATABASE": "default",      # the Django database whose transactions enqueue joins
    "SCHEMA": "taskflare",      # PostgreSQL schema of taskflare's tables
    "TASKS_MODULE": "tasks",    # imported from every installed app at start-up ("" : none)
}
```

Without `DATABASE_URL`, a PostgreSQL `DATABASE` is used as it is configured in
`DATABASES` (same server, name, user and libpq `OPTIONS`), so jobs can be written in
the same transactions as your models; any other database (SQLite) leaves taskflare on
its own default (`$TASKFLARE_DATABASE_URL`, else `sqlite:///taskflare.db`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ...app import App
from ...backends.url import resolve_database_url

KEYS = ("DATABASE_URL", "DATABASE", "SCHEMA", "TASKS_MODULE")
POSTGRES_ENGINES = ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis")
# Keys of a PostgreSQL database's OPTIONS that Django itself consumes (not libpq's).
DJANGO_OPTIONS = frozenset({"isolation_level", "server_side_binding", "pool", "assume_role"})


@dataclass(frozen=True)
class TaskflareSettings:
    """`settings.TASKFLARE`, checked: the database URL, the Django database alias
    whose transactions enqueue joins, and the handler module name."""

    database_url: str
    database: str
    tasks_module: str


def _text(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ImproperlyConfigured(
            f"TASKFLARE[{key!r}] must be a string, got {type(value).__name__}"
        )
    return value


def read_settings() -> TaskflareSettings:
    """`settings.TASKFLARE` (absent: `{}`), checked. Raises `ImproperlyConfigured` naming
    the key at fault: an unknown key, a value of the wrong type, a `DATABASE` missing from
    `DATABASES`, or `SCHEMA` beside an explicit `DATABASE_URL`."""
    raw = getattr(settings, "TASKFLARE", {})
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"TASKFLARE must be a dict, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"TASKFLARE has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(KEYS)}"
        )
    alias = _text(raw, "DATABASE", "default")
    if alias not in settings.DATABASES:
        raise ImproperlyConfigured(
            f"TASKFLARE['DATABASE'] is {alias!r}, which is not in DATABASES "
            f"({', '.join(settings.DATABASES)})"
        )
    url = _text(raw, "DATABASE_URL", "")
    schema = _text(raw, "SCHEMA", "")
    if url and schema:
        raise ImproperlyConfigured(
            "TASKFLARE['SCHEMA'] applies to the URL built from DATABASES; with "
            "TASKFLARE['DATABASE_URL'], put ?schema= in the URL"
        )
    if not url:
        database = settings.DATABASES[alias]
        if database.get("ENGINE") in POSTGRES_ENGINES:
            url = postgres_url(database, schema or None)
        elif schema:
            raise ImproperlyConfigured(
                f"TASKFLARE['SCHEMA'] needs a PostgreSQL database; DATABASES[{alias!r}] "
                f"is {database.get('ENGINE')}"
            )
    tasks_module = _text(raw, "TASKS_MODULE", "tasks")
    return TaskflareSettings(resolve_database_url(url or None), alias, tasks_module)


def postgres_url(database: dict[str, Any], schema: str | None) -> str:
    """The taskflare URL of a Django PostgreSQL database (`DATABASES[alias]`): its NAME,
    USER, PASSWORD, HOST (a socket folder too), PORT and libpq OPTIONS, plus `schema`."""
    user, password = database.get("USER") or "", database.get("PASSWORD") or ""
    host, port = str(database.get("HOST") or ""), str(database.get("PORT") or "")
    userinfo = quote(str(user), safe="")
    if password:
        userinfo += ":" + quote(str(password), safe="")
    query: list[tuple[str, str]] = []
    if host.startswith("/"):  # a Unix socket folder goes in the query, as libpq reads it
        query.append(("host", host))
        host = ""
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += host + (f":{port}" if port else "")
    for key, value in (database.get("OPTIONS") or {}).items():
        if key not in DJANGO_OPTIONS and isinstance(value, str | int):
            query.append((key, str(value)))
    if schema:
        query.append(("schema", schema))
    name = quote(str(database.get("NAME") or ""), safe="")
    return f"postgresql://{netloc}/{name}" + (
        f"?{urlencode(query, quote_via=quote)}" if query else ""
    )


_lock = threading.Lock()
_app: list[App] = []


def get_app() -> App:
    """The project's taskflare `App`, built once per process from `settings.TASKFLARE`.

    Declare handlers on it in `<your app>/tasks.py`: `app = get_app()`, then
    `@app.job("send-welcome")`. Raises `ImproperlyConfigured` for bad settings."""
    with _lock:
        if not _app:
            _app.append(App(read_settings().database_url))
        return _app[0]
