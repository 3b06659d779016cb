"""A job drain's CPU per job: the client's and the PostgreSQL server's.

    python benchmarks/drain_cpu.py [--backend postgres|sqlite] [--jobs 20000] [--analyze]
                                   [--profile]

Enqueues `--jobs` no-op jobs with `enqueue_many`, then drains them with an in-process
`Worker` (default settings) and prints the rate, the process's CPU per job
(`time.process_time`: every thread) and, on PostgreSQL, the CPU per job of the server
backends serving this run (found by `application_name`, read from /proc). The drain
starts right after the burst is stored, before a worker has refreshed the planner
statistics, as in a live system; `--analyze` runs ANALYZE first. `--profile` prints
the client's cProfile (CPU time) top entries. To compare two checkouts, run it with
`PYTHONPATH=<other checkout>/src` alternately. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
import uuid
from typing import Any

import psycopg
from scale import server_cpu  # CPU of the PostgreSQL backends tagged by application_name

from taskflare import App, Worker, WorkerConfig

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def drain(backend: str, jobs: int, analyze: bool, profile: bool) -> None:
    tag = ""
    if backend == "postgres":
        schema = f"drain_{uuid.uuid4().hex[:10]}"
        tag = f"tf_{schema}"
        url = f"{SERVER_URL}?schema={schema}&application_name={tag}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='taskflare-drain-')}/drain.db"
    app = App(url)
    done = asyncio.Event()
    count = 0

    @app.job("noop")
    async def noop(payload: Any) -> None:
        nonlocal count
        count += 1
        if count >= jobs:
            done.set()

    try:
        await app.backend()
        await app.enqueue_many("noop", list(range(jobs)))
        if analyze and tag:
            with psycopg.connect(SERVER_URL, autocommit=True) as conn:
                conn.execute(f'ANALYZE "{schema}".messages')  # type: ignore[arg-type]
        worker = Worker(app, WorkerConfig())
        server0 = server_cpu(tag) if tag else 0.0
        profiler = cProfile.Profile(time.process_time) if profile else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        running = asyncio.create_task(worker.run())
        await done.wait()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if profiler:
            profiler.disable()
        server = server_cpu(tag) - server0 if tag else 0.0
        worker.stop()
        await running
    finally:
        await app.close()
        if tag:
            with psycopg.connect(SERVER_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{backend}: {jobs} jobs, {jobs / seconds:,.0f} jobs/s, client {1e6 * cpu / jobs:.1f}"
        f" µs/job, server {1e6 * server / jobs:.1f} µs/job (load {load})"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--analyze", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(drain(args.backend, args.jobs, args.analyze, args.profile))


if __name__ == "__main__":
    main()
