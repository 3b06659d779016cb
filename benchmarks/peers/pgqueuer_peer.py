"""pgqueuer on PostgreSQL: asyncpg driver (its README's), `PgQueuer.run()` with defaults."""

from __future__ import annotations

import asyncio
import os

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from peers import hits

NAME, BACKEND = "pgqueuer", "postgres"
BULK_API = "Queries.enqueue(lists) (one INSERT ... unnest)"
CONFIG = "asyncpg driver, PgQueuer.run() defaults (batch_size 10), LISTEN/NOTIFY"
URL = os.environ["PB_DATABASE_URL"]

_conn: asyncpg.Connection | None = None
_queries: Queries | None = None


async def setup() -> None:
    conn = await asyncpg.connect(URL)
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def open() -> None:
    global _conn, _queries
    _conn = await asyncpg.connect(URL)
    _queries = Queries(AsyncpgDriver(_conn))


async def enqueue(t: float) -> None:
    assert _queries is not None
    await _queries.enqueue("noop", repr(t).encode(), 0)


async def bulk(ts: list[float]) -> None:
    assert _queries is not None
    await _queries.enqueue(["noop"] * len(ts), [repr(t).encode() for t in ts], [0] * len(ts))


async def close() -> None:
    if _conn is not None:
        await _conn.close()


def worker_main() -> None:
    async def main() -> None:
        pgq = PgQueuer.from_asyncpg_connection(await asyncpg.connect(URL))

        @pgq.entrypoint("noop")
        async def noop(job: object) -> None:
            hits.hit(float(job.payload))  # type: ignore[attr-defined]

        await pgq.run()

    asyncio.run(main())
