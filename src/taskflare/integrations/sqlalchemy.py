"""Transactional enqueue through a SQLAlchemy session (SQLAlchemy 2, psycopg 3 driver).

`app.enqueue_sync(..., connection=psycopg_connection(session))` writes the job inside the
session's transaction: it exists if and only if `session.commit()` does.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Connection

from ..errors import InvalidMessage


def psycopg_connection(session: Any) -> psycopg.Connection[Any]:
    """The psycopg 3 connection under `session` — a `Session`, a `scoped_session` (such
    as Flask-SQLAlchemy's `db.session`) or a `Connection` — in its current transaction,
    begun if none is. Raises `InvalidMessage` naming `session` when it is not bound to
    PostgreSQL through psycopg 3 (a `postgresql+psycopg://` URL)."""
    if isinstance(session, Connection):
        connection = session
    elif callable(getattr(session, "connection", None)):
        connection = session.connection()
    else:
        raise InvalidMessage(
            f"session= must be a SQLAlchemy Session or Connection, got {type(session).__name__}"
        )
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        dialect = connection.dialect
        raise InvalidMessage(
            "session= must be bound to PostgreSQL through psycopg 3 (a postgresql+psycopg:// "
            f"URL); it uses {dialect.name}+{dialect.driver}"
        )
    return driver
