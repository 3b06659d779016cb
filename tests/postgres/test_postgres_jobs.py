"""PostgreSQL and jobs: a schema made by an older taskflare upgrades with `taskflare migrate`,
the migrated schema mirrors SQLite's, and `enqueue(..., connection=conn)` joins the caller's
transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskflare import App, JobStatus, Unique
from taskflare.backends import open_backend
from taskflare.backends.base import MessageGetParams
from taskflare.backends.postgres import backend as pg_backend
from taskflare.errors import InvalidMessage, SchemaOutdated
from taskflare.testing import drain

TASKFLARE = str(Path(sys.executable).with_name("taskflare"))

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def schema_of(url: str) -> str:
    return url.split("schema=", 1)[1].split("&", 1)[0]


def server_url(url: str) -> str:
    return url.split("?", 1)[0]


def migrate_command(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TASKFLARE, "migrate", url], capture_output=True, text=True, timeout=60)


@on_postgres
async def test_schema_at_version_1_upgrades_through_every_migration_with_taskflare_migrate(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old_code:  # the taskflare that only knew schema 1
        old_code.setattr(pg_backend, "MIGRATIONS", pg_backend.MIGRATIONS[:1])
        old_code.setattr(pg_backend, "LATEST_VERSION", 1)
        old = open_backend(database_url)
        assert await old.migrate() == [1]
        await old.close()
    kept = "0190a0a0-0000-7000-8000-000000000001"
    with psycopg.connect(server_url(database_url)) as conn:  # a message of version 1
        conn.execute(
            f'INSERT INTO "{schema_of(database_url)}".messages (id, queue, body,'
            " content_type, created_at, available_at) VALUES (%s, 'q', %s, 'json', 0, 0)",
            [kept, b'{"made": "by version 1"}'],
        )

    app = App(database_url)
    app.job("greet")(lambda payload: f"hello {payload}")
    try:
        with pytest.raises(SchemaOutdated, match="taskflare migrate"):
            await app.enqueue("greet", "refused")
        done = await asyncio.to_thread(migrate_command, database_url)
        assert done.returncode == 0, done.stderr
        later = ", ".join(str(m.version) for m in pg_backend.MIGRATIONS[1:])
        assert f"applied migrations {later}" in done.stdout
        again = await asyncio.to_thread(migrate_command, database_url)
        assert again.returncode == 0 and "up to date" in again.stdout, again
        await app.close()

        backend = await app.backend()
        message = await backend.message_get(MessageGetParams(kept))
        assert message is not None and message.type is None and message.state == "ready"
        job = await app.enqueue("greet", "world", idempotency_key="k")
        await drain(app, ["default"])
        assert (await app.wait_for_job(job.id, timeout=10)) == "hello world"
        with psycopg.connect(server_url(database_url)) as conn:
            versions = conn.execute(
                f'SELECT version FROM "{schema_of(database_url)}".schema_migrations'
                " ORDER BY version"
            ).fetchall()
        assert versions == [(m.version,) for m in pg_backend.MIGRATIONS]
    finally:
        await app.close()


def _sqlite_columns(tmp_path: Path) -> dict[str, set[str]]:
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    app = App(url)
    app.list_jobs_sync()  # creates and migrates the file
    app.close_sync()
    with sqlite3.connect(tmp_path / "mirror.db") as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {row[1] for row in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


@on_postgres
async def test_migrated_schema_has_the_same_tables_and_columns_as_sqlite(
    app: App, database_url: str, tmp_path: Path
) -> None:
    await app.list_jobs()  # creates the schema
    with psycopg.connect(server_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = %s",
            [schema_of(database_url)],
        ).fetchall()
    postgres: dict[str, set[str]] = {}
    for table, column in rows:
        postgres.setdefault(table, set()).add(column)
    assert postgres == _sqlite_columns(tmp_path)


@on_postgres
async def test_enqueue_with_connection_stores_the_job_only_when_the_transaction_commits(
    app: App, database_url: str
) -> None:
    app.job("invoice")(lambda payload: payload["n"] * 2)
    async with await psycopg.AsyncConnection.connect(server_url(database_url)) as conn:
        async with conn.transaction():
            committed = await app.enqueue("invoice", {"n": 21}, connection=conn)
            assert committed.status is JobStatus.PENDING and not committed.duplicate
            assert await app.get_job(committed.id) is None  # nobody else sees it yet
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                rolled_back = await app.enqueue(
                    "invoice", {"n": 1}, idempotency_key="order-1", connection=conn
                )
                1 / 0  # noqa: B018 - the business code fails after enqueueing
    assert await app.get_job(rolled_back.id) is None
    # The rolled-back job's idempotency key went with it: the key is free.
    fresh = await app.enqueue("invoice", {"n": 2}, idempotency_key="order-1")
    assert not fresh.duplicate and fresh.id != rolled_back.id
    await drain(app)
    assert await app.wait_for_job(committed.id, timeout=10) == 42
    assert await app.wait_for_job(fresh.id, timeout=10) == 4


@on_postgres
async def test_enqueue_with_connection_returns_a_committed_duplicate(
    app: App, database_url: str
) -> None:
    app.job("invoice")(lambda payload: None)
    first = await app.enqueue("invoice", {"n": 1}, idempotency_key="k")
    conn = await psycopg.AsyncConnection.connect(server_url(database_url))
    async with conn, conn.transaction():
        again = await app.enqueue("invoice", {"n": 2}, idempotency_key="k", connection=conn)
    assert again.duplicate and again.id == first.id and again.payload == {"n": 1}
    assert len((await app.list_jobs()).jobs) == 1


@on_postgres
def test_enqueue_sync_joins_a_plain_psycopg_transaction(database_url: str) -> None:
    """What a Django or Flask view holds: a plain (sync) psycopg connection, from plain
    code. The job exists if and only if that transaction commits."""
    app = App(database_url)
    app.job("invoice")(lambda payload: payload["n"] * 2)
    try:
        with psycopg.connect(server_url(database_url)) as conn:
            with conn.transaction():
                committed = app.enqueue_sync("invoice", {"n": 21}, connection=conn)
                assert app.get_job_sync(committed.id) is None  # not visible before commit
            with pytest.raises(ZeroDivisionError), conn.transaction():
                rolled_back = app.enqueue_sync(
                    "invoice", {"n": 1}, idempotency_key="order-1", connection=conn
                )
                1 / 0  # noqa: B018 - the business code fails after enqueueing
        assert app.get_job_sync(rolled_back.id) is None
        stored = app.get_job_sync(committed.id)
        assert stored is not None and stored.status is JobStatus.PENDING
    finally:
        app.close_sync()


@on_postgres
async def test_enqueue_with_something_else_than_a_psycopg_connection_is_refused(
    app: App,
) -> None:
    app.job("invoice")(lambda payload: None)
    not_a_connection: Any = object()
    with pytest.raises(InvalidMessage, match="psycopg 3 Connection or AsyncConnection"):
        await app.enqueue("invoice", 1, connection=not_a_connection)
    assert (await app.list_jobs()).jobs == []


async def test_sqlite_refuses_enqueue_with_connection(sqlite_url: str) -> None:
    app = App(sqlite_url)
    app.job("invoice")(lambda payload: None)
    try:
        with pytest.raises(InvalidMessage, match="needs the PostgreSQL backend"):
            await app.enqueue("invoice", 1, connection=object())
        assert (await app.list_jobs()).jobs == []
    finally:
        await app.close()


@on_postgres
async def test_enqueue_many_with_connection_stores_the_batch_only_when_the_transaction_commits(
    app: App, database_url: str
) -> None:
    """As `enqueue(connection=)`: the batch record and every chunk go inside the caller's
    transaction (several chunks here), so the batch is whole after a commit and leaves
    nothing behind after a rollback."""
    app.job("invoice")(lambda payload: payload["n"] * 2)
    async with await psycopg.AsyncConnection.connect(server_url(database_url)) as conn:
        async with conn.transaction():
            payloads = [{"n": n} for n in range(7)]
            committed = await app.enqueue_many("invoice", payloads, chunk_size=3, connection=conn)
            assert await app.get_batch(committed) is None  # nobody else sees it yet
            assert (await app.list_jobs()).jobs == []
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                rolled_back = await app.enqueue_many(
                    "invoice", [{"n": 100}, {"n": 101}], connection=conn
                )
                1 / 0  # noqa: B018 - the business code fails after enqueueing
    assert await app.get_batch(rolled_back) is None
    batch = await app.get_batch(committed)
    assert batch is not None and (batch.total, batch.pending) == (7, 7)
    await drain(app)
    done = await app.get_batch(committed)
    assert done is not None and done.completed == 7
    jobs = (await app.list_jobs(limit=100)).jobs
    assert sorted(j.result for j in jobs) == [n * 2 for n in range(7)]


@on_postgres
def test_enqueue_many_sync_joins_a_plain_psycopg_transaction(database_url: str) -> None:
    """What a Django or Flask view holds: a plain (sync) psycopg connection."""
    app = App(database_url)
    app.job("invoice")(lambda payload: None)
    try:
        with psycopg.connect(server_url(database_url)) as conn:
            with conn.transaction():
                committed = app.enqueue_many_sync("invoice", [1, 2], connection=conn)
                assert app.get_batch_sync(committed) is None  # not visible before commit
            with pytest.raises(ZeroDivisionError), conn.transaction():
                rolled_back = app.enqueue_many_sync("invoice", [3, 4], connection=conn)
                1 / 0  # noqa: B018 - the business code fails after enqueueing
        assert app.get_batch_sync(rolled_back) is None
        batch = app.get_batch_sync(committed)
        assert batch is not None and (batch.total, batch.pending) == (2, 2)
        assert sorted(j.payload for j in app.list_jobs_sync().jobs) == [1, 2]
    finally:
        app.close_sync()


@on_postgres
async def test_enqueue_many_under_unique_with_connection_holds_no_key_after_a_rollback(
    app: App, database_url: str
) -> None:
    """Unique jobs are stored one statement each; with a connection, each of those and the
    batch record is inside the caller's transaction too."""
    app.job("sync-account", unique=Unique(by=("type", "payload")))(lambda payload: None)
    async with await psycopg.AsyncConnection.connect(server_url(database_url)) as conn:
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                gone = await app.enqueue_many("sync-account", [1, 2, 2], connection=conn)
                1 / 0  # noqa: B018 - the business code fails after enqueueing
        assert await app.get_batch(gone) is None and (await app.list_jobs()).jobs == []
        async with conn.transaction():
            kept = await app.enqueue_many("sync-account", [1, 2, 2], connection=conn)
    batch = await app.get_batch(kept)
    assert batch is not None and batch.total == 2  # the rolled-back jobs held no key
    assert sorted(j.payload for j in (await app.list_jobs()).jobs) == [1, 2]
