"""CPU per item of a bulk enqueue on PostgreSQL, client and server, for A/B of code changes.

Two measures, each on a fresh schema after a warm-up call: `app.enqueue_many` of 5 000
jobs in one call (default chunk_size), and 5 000 messages as 50 `queue.send_batch` calls
of 100 (what `benchmarks/compare.py`'s bulk row times). Per item: the client's
`time.process_time`, and the CPU of the server process serving the app's one connection
(`/proc/<pid>/stat`, so the server must run on this machine; 10 ms ticks, hence several
calls per figure), plus the wall-clock rate, which moves with the machine's load.

`--pgqueuer` adds pgqueuer's bulk call (`Queries.enqueue` with lists: one INSERT ...
unnest, asyncpg) measured the same way in the same rounds, in a database of its own.

A/B: `--against DIR` runs the same measures with another checkout's `src` directory
first on the import path (e.g. `git worktree add /tmp/before <commit>`, then
`--against /tmp/before/src`), alternating the two in separate processes round after
round (this, other, other, this, ...), and prints each round and the medians.

Usage: .venv/bin/python benchmarks/bulk_cpu.py [--items 5000] [--calls 4] [--rounds 4]
       [--against DIR] [--pgqueuer]
($TASKFLARE_BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/test, in a schema
of its own that is dropped afterwards). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

PG_URL = os.environ.get("TASKFLARE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MEASURES = ("enqueue_many", "send_batch")
PGQUEUER = "pgqueuer"


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one local server process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(what: str, items: int, calls: int) -> dict[str, float]:
    """Client and server CPU per item [µs] and items/s of `calls` bulk calls of `items`."""
    import psycopg

    from taskflare import App

    schema = f"bench_bulk_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in PG_URL else "?"
    app = App(f"{PG_URL}{sep}schema={schema}&pool_min_size=1&pool_max_size=1")

    @app.job("noop")
    async def noop(payload: Any) -> None:
        pass

    queue = app.queue("messages", max_batch_size=100, max_batch_timeout=0)

    @queue.consumer
    async def consume(batch: Any) -> None:
        pass

    async def one_call() -> None:
        if what == "enqueue_many":
            await app.enqueue_many("noop", [{"t": 0.0} for _ in range(items)])
        else:
            for _ in range(0, items, 100):
                await queue.send_batch([{"body": {"t": 0.0}} for _ in range(100)])

    try:
        await one_call()  # connects, migrates, prepares the statements
        backend = await app.backend()
        pool = await backend._db._pool()  # type: ignore[attr-defined]  # its one connection
        conn = await pool.getconn()
        pid = conn.info.backend_pid
        await pool.putconn(conn)
        server0, client0, wall0 = server_cpu(pid), time.process_time(), time.perf_counter()
        for _ in range(calls):
            await one_call()
        wall = time.perf_counter() - wall0
        client, server = time.process_time() - client0, server_cpu(pid) - server0
        n = items * calls
        return {"client_us": client / n * 1e6, "server_us": server / n * 1e6, "rate": n / wall}
    finally:
        await app.close()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


async def measure_pgqueuer(items: int, calls: int) -> dict[str, float]:
    """pgqueuer's bulk enqueue, as `benchmarks/peers/pgqueuer_peer.py` calls it."""
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg
    import psycopg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    name = f"bench_bulk_pgq_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        conn = await asyncpg.connect(urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}")))
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        pid = conn.get_server_pid()

        async def one_call() -> None:
            ts = [0.0] * items
            await queries.enqueue(["noop"] * items, [repr(t).encode() for t in ts], [0] * items)

        await one_call()
        server0, client0, wall0 = server_cpu(pid), time.process_time(), time.perf_counter()
        for _ in range(calls):
            await one_call()
        wall = time.perf_counter() - wall0
        client, server = time.process_time() - client0, server_cpu(pid) - server0
        await conn.close()
        n = items * calls
        return {"client_us": client / n * 1e6, "server_us": server / n * 1e6, "rate": n / wall}
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def run_child(what: str, items: int, calls: int, src: str) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, __file__, "--child", what, "--items", str(items)]
    out = subprocess.run(
        [*args, "--calls", str(calls)], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--against", help="another checkout's src directory (A/B)")
    parser.add_argument("--pgqueuer", action="store_true", help="add pgqueuer's bulk call")
    parser.add_argument("--child", choices=(*MEASURES, PGQUEUER), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == PGQUEUER:
        print(json.dumps(asyncio.run(measure_pgqueuer(args.items, args.calls))))
        return
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.items, args.calls))))
        return
    here = str(Path(__file__).resolve().parent.parent / "src")
    sides = {"this": here, **({"against": args.against} if args.against else {})}
    if args.pgqueuer:
        sides[PGQUEUER] = here
    seen: dict[tuple[str, str], list[dict[str, float]]] = {}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for round_ in range(1, args.rounds + 1):
        order = list(sides) if round_ % 2 else list(reversed(sides))
        for what in MEASURES:
            for side in order:
                if side == PGQUEUER and what != "enqueue_many":
                    continue  # pgqueuer has one bulk call: compared with both
                child = PGQUEUER if side == PGQUEUER else what
                got = run_child(child, args.items, args.calls, sides[side])
                seen.setdefault((what, side), []).append(got)
                print(
                    f"round {round_} {what:<12} {side:<7} client {got['client_us']:5.1f} µs"
                    f"  server {got['server_us']:5.1f} µs  {got['rate']:8,.0f}/s"
                    f"  (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    if args.pgqueuer:  # its one bulk figure stands beside both measures
        seen[("send_batch", PGQUEUER)] = seen[("enqueue_many", PGQUEUER)]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(seen, list(sides))


def report(seen: dict[tuple[str, str], list[dict[str, float]]], sides: list[str]) -> None:
    """The medians of every (measure, side), and each side's CPU per item over this one's."""
    print("\n| measure | side | client µs/item | server µs/item | items/s (wall) |")
    print("|---|---|---|---|---|")
    total: dict[tuple[str, str], float] = {}
    for (what, side), runs in seen.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        total[(what, side)] = med["client_us"] + med["server_us"]
        print(
            f"| {what} | {side} | {med['client_us']:.1f} | {med['server_us']:.1f} "
            f"| {med['rate']:,.0f} |"
        )
    for what in MEASURES:
        for side in sides:
            if side != "this" and (what, side) in total:
                ratio = total[(what, side)] / total[(what, "this")]
                print(f"{what}: CPU per item (client + server), {side} / this = {ratio:.2f}")


if __name__ == "__main__":
    main()
