"""The pruner's deletes of expired idempotency keys and `ctx.once` results read the
expired rows only, never every key kept: every worker's pruner runs them every minute
(on SQLite with the write lock held), so their cost must not grow with the keys held.
Counted in SQLite's virtual-machine steps (its progress handler), not timed; on
PostgreSQL, by the plan."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from taskflare import App
from taskflare.backends.sqlite.sql import SQL

STEP = 100  # VM instructions per progress-handler call
SMALL, LARGE = 50, 5000
STATEMENTS = ["idempotency_prune", "once_prune"]


def add_keys(conn: sqlite3.Connection | psycopg.Connection[object], table: str, n: int) -> None:
    """`n` rows of `table` (idempotency_keys or once_results) expiring in a day."""
    later = time.time() + 86_400.0
    rows = [(f"k{i}", later) for i in range(n)]
    if table == "idempotency_keys":
        sql = "INSERT INTO {t} (type, key, job_id, expires_at) VALUES ('call', {p}, 'j', {p})"
    else:
        sql = "INSERT INTO {t} (key, state, expires_at) VALUES ({p}, 'done', {p})"
    if isinstance(conn, sqlite3.Connection):
        conn.executemany(sql.format(t=table, p="?"), rows)
    else:
        with conn.cursor() as cur:
            cur.executemany(sql.format(t=table, p="%s"), rows)  # type: ignore[arg-type]


def table_of(statement: str) -> str:
    return "idempotency_keys" if statement == "idempotency_prune" else "once_results"


def sqlite_steps(path: Path, statement: str) -> int:
    """The VM instructions of one run of `statement` (rolled back)."""
    conn = sqlite3.connect(path, isolation_level=None)
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_progress_handler(tick, STEP)
        conn.execute(SQL[statement], {"now": time.time()})
        conn.set_progress_handler(None, 0)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return count[0] * STEP


@pytest.mark.parametrize("statement", STATEMENTS)
async def test_sqlite_expiry_prune_reads_no_more_with_many_keys_held(
    tmp_path: Path, statement: str
) -> None:
    path = tmp_path / "taskflare.db"
    app = App(f"sqlite:///{path}")
    try:
        app.job("call")(lambda p: None)
        await app.enqueue("call", 0)  # the schema exists
    finally:
        await app.close()
    table = table_of(statement)
    with sqlite3.connect(path) as conn:
        add_keys(conn, table, SMALL)
    conn.close()
    small = sqlite_steps(path, statement)
    with sqlite3.connect(path) as conn:
        conn.execute(f"DELETE FROM {table}")
        add_keys(conn, table, LARGE)
    conn.close()
    large = sqlite_steps(path, statement)
    # A scan of the table reads 100x more rows; a seek into the index reads the same.
    assert large <= small + 2 * STEP, (small, large)


on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@on_postgres
@pytest.mark.parametrize("table", ["idempotency_keys", "once_results"])
async def test_postgres_expiry_prune_finds_expired_rows_by_index(
    database_url: str, table: str
) -> None:
    app = App(database_url)
    try:
        app.job("call")(lambda p: None)
        await app.enqueue("call", 0)  # the schema exists
    finally:
        await app.close()
    server = database_url.split("?")[0]
    schema = parse_qs(urlsplit(database_url).query)["schema"][0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')  # type: ignore[arg-type]
        add_keys(conn, table, LARGE)
        conn.execute(f"ANALYZE {table}")  # type: ignore[arg-type]
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN DELETE FROM {table} WHERE expires_at < %s",  # type: ignore[arg-type]
                [time.time()],
            )
        )
    assert f"Seq Scan on {table}" not in plan, plan
    assert f"{table}_expires_idx" in plan, plan
