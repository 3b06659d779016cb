"""Enqueue from Django code so a job exists if and only if the surrounding transaction
commits.

On PostgreSQL (Django 4.2+ with psycopg 3, and taskflare on the same database) the job
or message is written on Django's own connection, inside its transaction. Elsewhere
(SQLite, or taskflare on another database) the write waits for the commit
(`transaction.on_commit`) and is dropped on rollback. Outside `atomic()` it is written
at once either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from django.db import connections, transaction

from ...app import App
from ...errors import InvalidMessage
from ...job_client import bulk_payloads
from ...jobs import Job
from .conf import get_app, read_settings

# The options of `App.enqueue` that `prepare_job` checks before a deferred enqueue.
_CHECKED_NOW = (
    "priority",
    "max_attempts",
    "delay_seconds",
    "run_at",
    "idempotency_key",
    "correlation_id",
    "queue",
    "strict",
    "rate_key",
    "concurrency_key",
)


def enqueue(
    type: str, payload: Any = None, *, using: str | None = None, **options: Any
) -> Job | None:
    """Enqueue job `type` (options as for `App.enqueue`) as part of the current
    transaction of Django database `using` (default `TASKFLARE["DATABASE"]`).

    Returns the `Job`, or None when the enqueue waits for the commit (not PostgreSQL,
    inside `atomic()`); the payload and options are checked at once in both cases.
    Raises what `App.enqueue` raises (`UnknownJobType`, `InvalidPayload`, ...), and
    `InvalidMessage` if `connection` is given (the connection is Django's)."""
    app, connection, driver = _target(using, options)
    if driver is not None:
        return app.enqueue_sync(type, payload, connection=driver, **options)
    if not connection.in_atomic_block:
        return app.enqueue_sync(type, payload, **options)
    app.jobs.prepare_job(type, payload, **{k: v for k, v in options.items() if k in _CHECKED_NOW})
    transaction.on_commit(
        partial(app.enqueue_sync, type, payload, **options), using=connection.alias
    )
    return None


# The options of `App.enqueue_many` that `prepare_jobs` checks before a deferred enqueue.
_CHECKED_NOW_MANY = (
    "priority",
    "max_attempts",
    "delay_seconds",
    "run_at",
    "correlation_id",
    "queue",
    "rate_key",
    "concurrency_key",
)


def enqueue_many(
    type: str, payloads: Iterable[Any], *, using: str | None = None, **options: Any
) -> str | None:
    """`App.enqueue_many` (options as there) as part of the current transaction of Django
    database `using`: every job of the batch exists if and only if it commits.

    Returns the batch id ("" for no payloads), or None when the batch waits for the
    commit; the payloads and options are checked at once in both cases. Raises what
    `App.enqueue_many` raises, and `InvalidMessage` if `connection` is given."""
    app, connection, driver = _target(using, options)
    if driver is not None:
        return app.enqueue_many_sync(type, payloads, connection=driver, **options)
    if not connection.in_atomic_block:
        return app.enqueue_many_sync(type, payloads, **options)
    items = bulk_payloads(payloads, options.get("chunk_size"))
    if items:
        checked = {k: v for k, v in options.items() if k in _CHECKED_NOW_MANY}
        app.jobs.prepare_jobs(type, items, **checked)
    transaction.on_commit(
        partial(app.enqueue_many_sync, type, items, **options), using=connection.alias
    )
    return None


def send(queue: str, body: Any, *, using: str | None = None, **options: Any) -> str | None:
    """Send one message to `queue` (options as for `Queue.send`) as part of the current
    transaction of Django database `using`. Returns the message id, or None when the
    send waits for the commit. Raises what `Queue.send` raises, and `UnknownQueue`."""
    app, connection, driver = _target(using, options)
    handle = app.get_queue(queue)
    if driver is not None:
        return handle.send_sync(body, connection=driver, **options)
    if not connection.in_atomic_block:
        return handle.send_sync(body, **options)
    handle.prepare(
        body,
        delay_seconds=options.get("delay_seconds"),
        content_type=options.get("content_type", "json"),
    )
    transaction.on_commit(partial(handle.send_sync, body, **options), using=connection.alias)
    return None


def send_batch(
    queue: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    using: str | None = None,
    **options: Any,
) -> list[str] | None:
    """`send_batch` to `queue` (all or nothing) as part of the current transaction of
    Django database `using`; the ids, or None when the batch waits for the commit."""
    app, connection, driver = _target(using, options)
    handle = app.get_queue(queue)
    if driver is not None:
        return handle.send_batch_sync(messages, connection=driver, **options)
    if not connection.in_atomic_block:
        return handle.send_batch_sync(messages, **options)
    handle.prepare_batch(messages, options.get("delay_seconds"))
    transaction.on_commit(
        partial(handle.send_batch_sync, messages, **options), using=connection.alias
    )
    return None


def _target(using: str | None, options: Mapping[str, Any]) -> tuple[App, Any, Any]:
    """The app, the Django database connection and, when the write can join that database's
    transaction, its psycopg connection (else None)."""
    if "connection" in options:
        raise InvalidMessage(
            "connection= is not taken here: the write joins Django's connection; "
            "use App.enqueue_sync(connection=...) for another one"
        )
    app = get_app()
    connection = connections[using or read_settings().database]
    if connection.vendor != "postgresql" or not app.database_url.startswith("postgres"):
        return app, connection, None
    connection.ensure_connection()
    driver = connection.connection
    return app, connection, driver if same_database(app.database_url, driver) else None


def same_database(url: str, driver: Any) -> bool:
    """Whether the psycopg connection `driver` is on the database of taskflare `url`: the
    host, port and database name the URL states (a part it leaves out matches any)."""
    if not isinstance(driver, psycopg.Connection):  # psycopg 2: no transactional enqueue
        return False
    info = driver.info
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    wanted = {
        "host": parts.hostname or query.get("host"),
        "port": str(parts.port) if parts.port else query.get("port"),
        "dbname": unquote(parts.path.lstrip("/")) or query.get("dbname"),
    }
    actual = {"host": info.host, "port": str(info.port), "dbname": info.dbname}
    return all(value in (None, "", actual[key]) for key, value in wanted.items())
