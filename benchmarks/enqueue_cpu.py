"""Client CPU per single job enqueue, for A/B of code changes on a loaded machine.

`await app.enqueue("noop", {"t": 1.0})`, sequential, one process, after a warm-up; the
figure is `time.process_time` (every thread of the process: SQLite's statement thread
included) divided by the number of enqueues. Wall-clock rates on a shared machine move
with everyone else's work; the CPU an enqueue costs moves much less.

A/B: `--against DIR` runs the same measurement with another checkout's `src` directory
first on the import path (e.g. `git worktree add /tmp/before <commit>`, then
`--against /tmp/before/src`), alternating the two in separate processes round after
round, and prints each round's values and the median of the rounds' own ratios.

Usage: .venv/bin/python benchmarks/enqueue_cpu.py [--backend sqlite|postgres]
       [--count 3000] [--rounds 4] [--against DIR]
Printed per round: client CPU (and, on PostgreSQL, the server processes' CPU, read as
`scale.py` reads it) per enqueue.
(PostgreSQL: $TASKFLARE_BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/test,
in a schema of its own that is dropped afterwards). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PG_URL = os.environ.get("TASKFLARE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
WARM_UP = 300


async def measure(backend: str, count: int) -> tuple[float, float]:
    """Client CPU and PostgreSQL server CPU (0 on SQLite) per enqueue [µs]."""
    import psycopg
    from scale import server_cpu

    from taskflare import App

    with tempfile.TemporaryDirectory() as tmp:
        schema = f"bench_enq_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in PG_URL else "?"
        tag = "" if backend == "sqlite" else schema
        url = (
            f"sqlite:///{tmp}/bench.db"
            if backend == "sqlite"
            else f"{PG_URL}{sep}schema={schema}&application_name={tag}"
        )
        app = App(url)

        @app.job("noop")
        async def noop(payload: object, ctx: object) -> None:
            pass

        try:
            for _ in range(WARM_UP):
                await app.enqueue("noop", {"t": 1.0})
            server = server_cpu(tag)
            start = time.process_time()
            for _ in range(count):
                await app.enqueue("noop", {"t": 1.0})
            client = (time.process_time() - start) / count * 1e6
            return client, (server_cpu(tag) - server) / count * 1e6
        finally:
            await app.close()
            if backend != "sqlite":
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run_child(backend: str, count: int, src: str | None) -> tuple[float, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, __file__, "--child", "--backend", backend, "--count", str(count)]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    client, server = out.split()[-2:]
    return float(client), float(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--against", help="another checkout's src directory (A/B)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(*asyncio.run(measure(args.backend, args.count)))
        return
    here = str(Path(__file__).resolve().parent.parent / "src")
    ratios: list[tuple[float, float]] = []
    for round_ in range(1, args.rounds + 1):
        this = run_child(args.backend, args.count, here)
        line = f"round {round_}: this checkout {_cpu(this)}"
        if args.against:
            other = run_child(args.backend, args.count, args.against)
            ratios.append((this[0] / other[0], this[1] / other[1] if other[1] else 1.0))
            line += f"; --against {_cpu(other)}"
        print(line, flush=True)
    load = os.getloadavg()[0]
    if ratios:
        client = statistics.median(r[0] for r in ratios)
        server = statistics.median(r[1] for r in ratios)
        print(f"median ratio: client {client:.2f}, server {server:.2f} (load average {load:.1f})")
    else:
        print(f"load average {load:.1f}")


def _cpu(figures: tuple[float, float]) -> str:
    client, server = figures
    return f"client {client:.0f} µs/enqueue" + (f", server {server:.0f} µs" if server else "")


if __name__ == "__main__":
    main()
