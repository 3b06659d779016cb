"""procrastinate on PostgreSQL: psycopg connector, async task, a worker of concurrency 10."""

from __future__ import annotations

import asyncio
import os

import procrastinate

from peers import hits

NAME, BACKEND = "procrastinate", "postgres"
CONCURRENCY = 10  # the default is 1; its docs suggest more for I/O-bound tasks
BULK_API = "Task.batch_defer_async (one INSERT)"
CONFIG = (
    f"PsycopgConnector (psycopg 3 pool), async task, run_worker_async(concurrency={CONCURRENCY}),"
    " listen_notify on (default)"
)

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["PB_DATABASE_URL"])
)


@app.task(name="noop", queue="pb")
async def noop(t: float = 0.0) -> None:
    hits.hit(t)


async def setup() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def open() -> None:
    await app.open_async()


async def enqueue(t: float) -> None:
    await noop.defer_async(t=t)


async def bulk(ts: list[float]) -> None:
    await noop.batch_defer_async(*[{"t": t} for t in ts])


async def close() -> None:
    await app.close_async()


def worker_main() -> None:
    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=True)

    asyncio.run(main())
