"""pgqueuer's job drain measured as `drain_cpu.py` measures taskflare's: CPU per job.

    python benchmarks/pgqueuer_drain_cpu.py [--jobs 20000]

Installs pgqueuer's tables in a database of their own (`BENCH_PGQUEUER_URL`, default the
`pgdrain` database on the benchmark server, created if missing), enqueues `--jobs` no-op
jobs with its one-call bulk enqueue, then drains them with `PgQueuer.run()` in this
process (its defaults, as `benchmarks/peers/pgqueuer_peer.py`) and prints the rate, the
process's CPU per job and the CPU per job of the server backends serving the drain
(found by `application_name`, read from /proc). Run it alternately with `drain_cpu.py`:
what "3x pgqueuer's rate" asks of taskflare in CPU per job on a CPU-bound machine.
Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid

import asyncpg
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries
from scale import cpu_of

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
URL = os.environ.get("BENCH_PGQUEUER_URL", "postgresql://postgres@127.0.0.1:5432/pgdrain")


def ensure_database() -> None:
    name = URL.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]


async def server_cpu(tag: str) -> float:
    conn = await asyncpg.connect(URL)
    try:
        pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", tag)
    finally:
        await conn.close()
    return sum(cpu_of(r["pid"]) for r in pids)


async def drain(jobs: int) -> None:
    setup = await asyncpg.connect(URL)
    queries = Queries(AsyncpgDriver(setup))
    with contextlib.suppress(Exception):  # nothing installed yet
        await queries.uninstall()
    await queries.install()
    await queries.enqueue(["noop"] * jobs, [b"0"] * jobs, [0] * jobs)
    tag = f"pgq_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(URL, server_settings={"application_name": tag})
    pgq = PgQueuer.from_asyncpg_connection(conn)
    count = 0
    done = asyncio.Event()

    @pgq.entrypoint("noop")
    async def noop(job: object) -> None:
        nonlocal count
        count += 1
        if count >= jobs:
            done.set()

    server0 = await server_cpu(tag)
    cpu0, t0 = time.process_time(), time.perf_counter()
    running = asyncio.create_task(pgq.run())
    await done.wait()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = await server_cpu(tag) - server0
    pgq.shutdown.set()
    await running
    await conn.close()
    await queries.uninstall()
    await setup.close()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"pgqueuer: {jobs} jobs, {jobs / seconds:,.0f} jobs/s, client {1e6 * cpu / jobs:.1f}"
        f" µs/job, server {1e6 * server / jobs:.1f} µs/job (load {load})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    ensure_database()
    asyncio.run(drain(args.jobs))


if __name__ == "__main__":
    main()
