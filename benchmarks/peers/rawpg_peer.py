"""The pickup floor on PostgreSQL: no job system, the fewest hops a durable pickup can take.

The producer inserts a row and NOTIFYs in one autocommit statement (durable commit, as
every subject's enqueue); the worker process listens on one asyncpg connection and, on
each notification, claims the oldest ready row on a second connection with one
`UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING`, then
calls the handler. asyncpg (binary protocol, prepared statements) is the fastest Python
driver here; no pool, no checks, no outcome written. It is context for the pickup row,
not a peer: what this machine's round trips, commit and wake-ups alone cost.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from peers import hits

NAME, BACKEND = "rawpg", "postgres"
BULK_API = ""
CONFIG = (
    "asyncpg; INSERT + pg_notify in one autocommit statement; LISTEN on one connection,"
    " claim one row with UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING on another"
)
URL = os.environ["PB_DATABASE_URL"]
CHANNEL = "rawpg_pickup"

CREATE = """
CREATE TABLE IF NOT EXISTS rawpg_jobs (
    id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'ready', t float8 NOT NULL);
CREATE INDEX IF NOT EXISTS rawpg_jobs_ready ON rawpg_jobs (id) WHERE state = 'ready'
"""
INSERT = (
    "WITH i AS (INSERT INTO rawpg_jobs (t) VALUES ($1) RETURNING 1)"
    f" SELECT pg_notify('{CHANNEL}', '') FROM i"
)
CLAIM = (
    "UPDATE rawpg_jobs SET state = 'running' WHERE id = (SELECT id FROM rawpg_jobs"
    " WHERE state = 'ready' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING t"
)

_conn: asyncpg.Connection | None = None


async def setup() -> None:
    conn = await asyncpg.connect(URL)
    await conn.execute(CREATE)
    await conn.close()


async def open() -> None:
    global _conn
    _conn = await asyncpg.connect(URL)


async def enqueue(t: float) -> None:
    assert _conn is not None
    await _conn.fetchval(INSERT, t)


async def close() -> None:
    if _conn is not None:
        await _conn.close()


def worker_main() -> None:
    async def main() -> None:
        listen = await asyncpg.connect(URL)
        claim = await asyncpg.connect(URL)
        wake = asyncio.Event()

        def woken(*_: object) -> None:
            wake.set()

        await listen.add_listener(CHANNEL, woken)
        while True:
            rows = await claim.fetch(CLAIM)
            for row in rows:
                hits.hit(row["t"])
            if rows:
                continue
            await wake.wait()
            wake.clear()

    asyncio.run(main())
