"""Calls one after another reuse the connection returned last.

psycopg_pool hands out its idle connections in the order they were returned (FIFO), so
sequential enqueues alternated over every idle connection of the pool, each a server
process of its own to wake, with its own plan cache. The pool here takes the one
returned last: sequential calls stay on one server process, and the connections left
idle are the ones the pool closes first when it shrinks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskflare import App

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def backend_pid(conn: Any) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    return int(row[0])


@on_postgres
async def test_sequential_calls_stay_on_the_connection_returned_last(database_url: str) -> None:
    app = App(database_url)
    try:
        backend = await app.backend()
        db = backend._db
        started = asyncio.Event()
        release = asyncio.Event()

        async def hold(conn: Any) -> int:
            pid = await backend_pid(conn)
            started.set()
            await release.wait()
            return pid

        # Two calls at once: the pool holds (at least) two open connections after them.
        first = asyncio.create_task(db.run(hold, "hold a connection"))
        await started.wait()
        second = await db.run(backend_pid, "a second connection")
        release.set()
        held = await first
        assert held != second

        pids = [await db.run(backend_pid, "one call") for _ in range(10)]
        assert len(set(pids)) == 1, f"sequential calls alternated over server processes {pids}"
        # Each call took the connection returned last: the first held one.
        assert pids[0] == held

        # Enqueues, one after another, likewise stay on one server process.
        @app.job("noop")
        async def noop(payload: Any) -> None:
            pass

        for _ in range(5):
            await app.enqueue("noop", {})
        assert await db.run(backend_pid, "after the enqueues") == held
    finally:
        await app.close()
