"""The claim of a woken worker runs by itself on a connection that only claims.

An idle worker's pickup is the enqueue, the NOTIFY, and this claim's round trip; on a
pooled connection the claim was four statements (BEGIN, its transaction's settings, the
claim, COMMIT). On the claim connection the settings hold for the session, so the claim
is the one statement; when that connection is busy (another queue's claim) or gone, the
claim runs on a pooled connection as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from taskflare import App
from taskflare.backends.base import ClaimParams, ReadyInfoParams
from taskflare.backends.postgres import backend as pg_backend
from taskflare.ids import uuid7

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

CLAIM_TEXT = "WITH candidates AS MATERIALIZED"


def expected(queue: str, limit: int) -> ClaimParams:
    """The claim of a woken worker (it expects work)."""
    return ClaimParams(queue, limit, uuid7(), "w", 30.0, describe_empty=False)


def server_url(url: str) -> str:
    return url.split("?", 1)[0]


async def activity(url: str, pid: int) -> tuple[str, str]:
    """The last statement of server process `pid` and its state (read from another
    connection)."""
    async with await psycopg.AsyncConnection.connect(server_url(url), autocommit=True) as conn:
        cur = await conn.execute("SELECT query, state FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
        assert row is not None, f"no server process {pid}"
        return str(row[0]), str(row[1])


async def claims_prepared(conn: Any) -> int:
    """How many claim statements this (pooled) session has prepared."""
    cur = await conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %(claim)s",
        {"claim": f"%{CLAIM_TEXT}%"},
        prepare=False,
    )
    row = await cur.fetchone()
    return int(row[0])


async def send(app: App, queue: str, count: int) -> None:
    for n in range(count):
        await app.get_queue(queue).send({"n": n})


async def backend_of(app: App) -> pg_backend.PostgresBackend:
    backend = await app.backend()
    assert isinstance(backend, pg_backend.PostgresBackend)
    return backend


@on_postgres
async def test_the_expected_claim_is_one_statement_on_the_claim_connection(
    database_url: str,
) -> None:
    """The claim is the last (and only) statement its connection ran: no COMMIT after it,
    no settings before it; one round trip is counted; the pool never sees it."""
    app = App(f"{database_url}&pool_max_size=1")
    try:
        app.queue("q")
        await send(app, "q", 3)
        backend = await backend_of(app)
        before = backend.statements_run
        first = await backend.message_claim_many(expected("q", 2))
        assert len(first.messages) == 2 and first.ready is None
        assert backend.statements_run == before + 1
        pid = backend._db.claim_backend_pid()
        assert pid is not None
        query, state = await activity(database_url, pid)
        assert query.lstrip().startswith(CLAIM_TEXT) and state == "idle", query

        second = await backend.message_claim_many(expected("q", 5))
        assert len(second.messages) == 1
        assert backend._db.claim_backend_pid() == pid  # the same connection, kept open

        async def durable(conn: Any) -> bool:
            cur = await conn.execute("SHOW synchronous_commit", prepare=False)
            return bool((await cur.fetchone()) == ("on",))

        # The pooled session never prepared the claim and keeps durable commits.
        assert await backend._db.run(claims_prepared, "read the pool's session") == 0
        assert await backend._db.run(durable, "read the pool's session")
    finally:
        await app.close()


@on_postgres
async def test_a_claim_while_the_claim_connection_is_busy_runs_on_the_pool(
    database_url: str,
) -> None:
    app = App(f"{database_url}&pool_max_size=1")
    try:
        app.queue("a")
        app.queue("b")
        await send(app, "a", 2)
        await send(app, "b", 2)
        backend = await backend_of(app)
        await backend.message_claim_many(expected("a", 1))  # the claim connection is open
        pid = backend._db.claim_backend_pid()
        assert pid is not None
        results = await asyncio.gather(
            backend.message_claim_many(expected("a", 5)),
            backend.message_claim_many(expected("b", 5)),
        )
        assert [len(r.messages) for r in results] == [1, 2]
        assert backend._db.claim_backend_pid() == pid
        # One of the two ran on the claim connection, the other on the pooled one.
        query, _ = await activity(database_url, pid)
        assert query.lstrip().startswith(CLAIM_TEXT)
        assert await backend._db.run(claims_prepared, "read the pool's session") == 1
    finally:
        await app.close()


@on_postgres
async def test_a_lost_claim_connection_loses_no_claim_and_is_opened_again(
    database_url: str,
) -> None:
    app = App(database_url)
    try:
        app.queue("q")
        await send(app, "q", 3)
        backend = await backend_of(app)
        assert len((await backend.message_claim_many(expected("q", 1))).messages) == 1
        pid = backend._db.claim_backend_pid()
        assert pid is not None
        with psycopg.connect(server_url(database_url), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # The claim that finds the connection gone claims on the pool instead.
        assert len((await backend.message_claim_many(expected("q", 1))).messages) == 1
        # The next one opens a new claim connection.
        assert len((await backend.message_claim_many(expected("q", 1))).messages) == 1
        new_pid = backend._db.claim_backend_pid()
        assert new_pid is not None and new_pid != pid
        assert (await backend.message_claim_many(expected("q", 1))).messages == []
    finally:
        await app.close()


@on_postgres
async def test_no_claim_connection_behind_pgbouncer_or_for_a_describing_claim(
    database_url: str,
) -> None:
    """Behind PgBouncer nothing may rely on a session; a claim that describes an empty
    queue (or waits for a batch to fill) keeps its own statement on the pool."""
    bouncer = App(f"{database_url}&pgbouncer=1")
    try:
        bouncer.queue("q")
        await send(bouncer, "q", 2)
        backend = await backend_of(bouncer)
        assert len((await backend.message_claim_many(expected("q", 1))).messages) == 1
        assert backend._db._resources().claim_conn is None
    finally:
        await bouncer.close()
    app = App(database_url)
    try:
        backend = await backend_of(app)
        describing = ClaimParams("q", 5, uuid7(), "w", 30.0)
        assert len((await backend.message_claim_many(describing)).messages) == 1
        assert backend._db._resources().claim_conn is None
    finally:
        await app.close()


@on_postgres
async def test_a_look_at_the_queue_runs_on_an_open_claim_connection_and_opens_none(
    database_url: str,
) -> None:
    """After a claim took nothing a worker looks at the queue (`queue_ready_info`): on its
    claim connection, planned once there; a process without one (a web process's pull
    consumer) looks on the pool and opens none."""
    app = App(database_url)
    try:
        app.queue("q")
        await send(app, "q", 1)
        await app.get_queue("q").send({"later": True}, delay_seconds=600)
        backend = await backend_of(app)
        params = ReadyInfoParams("q", 10, None)
        on_pool = await backend.queue_ready_info(params)
        assert backend._db._resources().claim_conn is None
        assert on_pool.ready_count == 1 and on_pool.next_available_at is not None
        assert len((await backend.message_claim_many(expected("q", 5))).messages) == 1
        pid = backend._db.claim_backend_pid()
        assert pid is not None
        on_claim_connection = await backend.queue_ready_info(params)
        query, _ = await activity(database_url, pid)
        assert "ready_count" in query, query
        assert on_claim_connection.ready_count == 0
        assert on_claim_connection.next_available_at == on_pool.next_available_at
        assert on_claim_connection.paused is False
    finally:
        await app.close()
