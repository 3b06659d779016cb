"""Backend lifecycle: migrating a fresh database, closing."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from helpers import wait_until
from taskflare.backends import Backend
from taskflare.backends.base import State
from taskflare.errors import BackendUnavailable

from .conftest import claim_one, enqueue, message, record


async def test_migrate_applies_every_migration_once_in_order(backend: Backend) -> None:
    applied = await backend.migrate()
    assert applied and applied[0] == 1 and applied == sorted(set(applied))
    assert await backend.migrate() == []
    sent = message("q")
    await enqueue(backend, sent)
    assert (await claim_one(backend, "q")).id == sent.id
    assert (await record(backend, sent.id)).state == State.LEASED


async def test_a_fresh_database_is_migrated_on_first_use(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    assert await backend.migrate() == []


async def test_close_is_safe_twice(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    await backend.close()
    await backend.close()


async def test_ping_answers_on_a_live_database_and_raises_once_its_schema_is_gone(
    backend: Backend, database_url: str
) -> None:
    await backend.ping()
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        for file in path.parent.glob(path.name + "*"):
            file.unlink()
    else:
        schema = database_url.rpartition("schema=")[2]
        with psycopg.connect(database_url.partition("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    with pytest.raises(BackendUnavailable):
        await backend.ping()


async def test_stale_planner_statistics_are_refreshed_once(
    backend: Backend, database_url: str
) -> None:
    """A burst into a fresh table leaves PostgreSQL's planner without statistics until
    autovacuum's next round; a worker's check gathers them (once, not on every call).
    SQLite's planner needs none: the check never does anything there."""
    await backend.migrate()
    assert await backend.refresh_statistics() is False  # an empty table needs nothing
    for _ in range(3):
        await enqueue(backend, *[message("q") for _ in range(500)])
    if not database_url.startswith("postgresql"):
        assert await backend.refresh_statistics() is False
        return
    # The server publishes its row counters within about a second of the writes.
    await wait_until(backend.refresh_statistics, what="the statistics to be refreshed")
    schema = database_url.rsplit("schema=", 1)[1].split("&")[0]
    with psycopg.connect(database_url.split("?")[0]) as conn:
        row = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [f"{schema}.messages"]
        ).fetchone()
    assert row is not None and row[0] == 1500
    assert await backend.refresh_statistics() is False


async def test_sqlite_claims_skip_the_fsync_and_everything_else_keeps_it(
    backend: Backend, database_url: str
) -> None:
    """A claim commits with synchronous=NORMAL (losing it to a power cut only means
    delivering again); the connection is back to the configured FULL for every other
    write, so a settled outcome still waits for the disk."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL claims use synchronous_commit=off in the statement itself")
    sent = message("q")
    await enqueue(backend, sent)
    claimed = await claim_one(backend, "q")
    assert claimed.id == sent.id

    def synchronous() -> int:
        return int(backend._db._connection().execute("PRAGMA synchronous").fetchone()[0])  # type: ignore[attr-defined]

    assert await backend._db.call(synchronous) == 2  # type: ignore[attr-defined]  # FULL
