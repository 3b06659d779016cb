"""What each index of the messages table costs a new job, beside the peers' enqueue, in
one run (issue #13: the bulk and single enqueue goals).

    python benchmarks/index_cost.py [--rounds 3] [--rows 5000] [--count 2000]
           [--out benchmarks/RESULTS-index-cost.md]

PostgreSQL, bulk: one `INSERT ... SELECT FROM unnest(...)` of `--rows` jobs as
`enqueue_many` stores them (a type, a batch id) into a schema taskflare migrated, three
calls a round after a warm-up call, with every index, without each index a new job takes
an entry in (one at a time), and with only the primary key and the claim index; beside
pgqueuer's bulk `Queries.enqueue` on its own schema in the same database. Server CPU per
row from `/proc/<pid>/schedstat` of every backend connected to the database.

SQLite, single: `--count` autocommit INSERTs (WAL, synchronous=FULL: one fsync a call)
of one job row with every index, without the jobs-list indexes, with only the primary key
and the claim index; a huey-shaped table (integer key, one index); huey's own enqueue;
the every-index insert run on a worker thread and awaited from an event loop (the hop
an async API takes so that its loop does not wait for the fsync); and taskflare's whole
`app.enqueue` (on its own file, CPU from the process clock).

Variants alternate in a shuffled order each round. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import enqueue_floor as ef  # noqa: E402  (the floors' helpers: schema, server CPU, ids)

SERVER_URL = ef.SERVER_URL
CLAIM_INDEX = "messages_ready_idx"
SQLITE_INSERT = (
    "INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,"
    " created_at, available_at, type, max_attempts)"
    " VALUES (?, 'default', 'ready', ?, 'json', 0, 0, ?, ?, 'noop', 3)"
)
HUEY_SHAPE = (
    "CREATE TABLE task (id INTEGER PRIMARY KEY, queue TEXT, data BLOB, priority REAL"
    " DEFAULT 0.0);"
    " CREATE INDEX task_priority_id ON task (priority DESC, id ASC);"
)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _alternated(rounds: int, subjects: list[str]) -> Iterator[str]:
    """Every subject once a round, in a new shuffled order each round."""
    for _ in range(rounds):
        order = subjects[:]
        random.shuffle(order)
        yield from order


# -- PostgreSQL ----------------------------------------------------------------------------


async def pg_rounds(rounds: int, rows: int) -> dict[str, list[tuple[float, float]]]:
    import asyncpg
    import psycopg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    name = f"tfidx_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = f"{SERVER_URL.rsplit('/', 1)[0]}/{name}"
    try:
        await ef.migrate_taskflare(f"{url}?schema={ef.TF_SCHEMA}")
        conn = await asyncpg.connect(url)
        pgq_conn = await asyncpg.connect(url)
        queries = Queries(AsyncpgDriver(pgq_conn))
        await queries.install()
        found = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1"
            " AND tablename = 'messages'",
            ef.TF_SCHEMA,
        )
        defs = {r["indexname"]: r["indexdef"] for r in found}
        # The indexes a new job takes an entry in (the others are partial on other states
        # or on columns a plain job leaves NULL).
        await conn.execute(ef.TF_UNNEST_PG, ef.ids(1), [b"{}"], "noop", 3, "b")
        entry = []
        for index in defs:
            if index.endswith("pkey"):
                continue
            stats = await conn.fetchval(
                "SELECT pg_relation_size(($1 || '.' || $2)::regclass)", ef.TF_SCHEMA, index
            )
            if stats and stats > 8192:
                entry.append(index)
        variants: dict[str, list[str]] = {"every index": []}
        variants |= {f"without {i}": [i] for i in sorted(entry)}
        variants["primary key and claim index only"] = [
            i for i in defs if not i.endswith("pkey") and i != CLAIM_INDEX
        ]
        out: dict[str, list[tuple[float, float]]] = {v: [] for v in [*variants, "pgqueuer"]}
        server = ef.ServerCpu(url)
        bodies = [f'{{"t":{t}.0}}'.encode() for t in range(rows)]
        for variant in _alternated(rounds, list(out)):
            drop = variants.get(variant, [])
            for index in drop:
                await conn.execute(f'DROP INDEX "{ef.TF_SCHEMA}"."{index}"')
            await conn.execute(f'TRUNCATE "{ef.TF_SCHEMA}".messages')
            await conn.execute("TRUNCATE pgqueuer")

            async def call(variant: str = variant) -> None:
                if variant == "pgqueuer":
                    await queries.enqueue(["noop"] * rows, bodies, [0] * rows)
                else:
                    await conn.execute(
                        ef.TF_UNNEST_PG, ef.ids(rows), bodies, "noop", 3, str(uuid.uuid4())
                    )

            await call()
            server.begin()
            start = time.perf_counter()
            for _ in range(3):
                await call()
            wall = time.perf_counter() - start
            out[variant].append((server.spent_ns() / (3 * rows) / 1e3, 3 * rows / wall))
            for index in drop:
                await conn.execute(defs[index])
        server.close()
        await conn.close()
        await pgq_conn.close()
        return out
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


# -- SQLite --------------------------------------------------------------------------------


def sqlite_rounds(rounds: int, count: int) -> dict[str, list[tuple[float, float]]]:
    from huey import SqliteHuey

    from taskflare.ids import uuid7

    with tempfile.TemporaryDirectory(prefix="taskflare-idx-", dir=ef.BENCH_DIR) as tmp:
        path = f"{tmp}/tf.db"
        asyncio.run(ef.migrate_taskflare(f"sqlite:///{path}"))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        defs = dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name = 'messages' AND sql IS NOT NULL"
            ).fetchall()
        )
        listing = [i for i in defs if i.startswith("messages_jobs_")]
        variants: dict[str, list[str]] = {
            "every index": [],
            "without the jobs-list indexes": listing,
            "primary key and claim index only": [i for i in defs if i != CLAIM_INDEX],
            "every index, from an event loop via a worker thread": [],
        }
        bare = sqlite3.connect(f"{tmp}/bare.db", isolation_level=None)
        bare.execute("PRAGMA journal_mode=WAL")
        bare.execute("PRAGMA synchronous=FULL")
        bare.executescript(HUEY_SHAPE)
        huey = SqliteHuey("idx", filename=f"{tmp}/huey.db")

        @huey.task()
        def noop(t: float = 0.0) -> None:
            return None

        pool = concurrent.futures.ThreadPoolExecutor(1)

        def insert() -> None:
            now = time.time()
            conn.execute(SQLITE_INSERT, (uuid7(), b'{"t":0.0}', now, now))

        calls: dict[str, Callable[[], None]] = {
            "huey-shaped table": lambda: bare.execute(
                "INSERT INTO task (queue, data, priority) VALUES ('idx', ?, 0.0)", (b"x" * 64,)
            ),
            "huey": lambda: noop(0.0),
        }
        subjects = [*variants, *calls, "taskflare app.enqueue"]
        out: dict[str, list[tuple[float, float]]] = {v: [] for v in subjects}
        for variant in _alternated(rounds, list(out)):
            drop = variants.get(variant, [])
            for index in drop:
                conn.execute(f"DROP INDEX {index}")
            if variant == "taskflare app.enqueue":
                out[variant].append(asyncio.run(_app_enqueue(f"{tmp}/app.db", count)))
                continue
            one = calls.get(variant, insert)
            hop = pool if variant.endswith("worker thread") else None
            out[variant].append(_timed(one, count, hop))
            for index in drop:
                conn.execute(defs[index])
        pool.shutdown()
        return out


def _timed(
    one: Callable[[], None], count: int, hop: concurrent.futures.Executor | None
) -> tuple[float, float]:
    """(CPU µs a call, calls a second) of `count` calls of `one`, after 100 untimed ones;
    with `hop`, each call runs there, awaited from an event loop."""
    for _ in range(100):
        one()

    async def hopped() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            await loop.run_in_executor(hop, one)

    cpu, start = time.process_time(), time.perf_counter()
    if hop is not None:
        asyncio.run(hopped())
    else:
        for _ in range(count):
            one()
    wall = time.perf_counter() - start
    return (time.process_time() - cpu) / count * 1e6, count / wall


async def _app_enqueue(path: str, count: int) -> tuple[float, float]:
    """(CPU µs a call, calls a second) of `count` `app.enqueue` calls, after 100."""
    from taskflare import App

    app = App(f"sqlite:///{path}")

    @app.job("noop")
    async def noop_job(payload: object) -> None:
        return None

    for _ in range(100):
        await app.enqueue("noop", {"t": 0.0})
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(count):
        await app.enqueue("noop", {"t": 0.0})
    wall = time.perf_counter() - start
    await app.close()
    return (time.process_time() - cpu) / count * 1e6, count / wall


# -- the report ----------------------------------------------------------------------------


def table(
    title: str, cpu: str, rate: str, results: dict[str, list[tuple[float, float]]], peer: str
) -> list[str]:
    peer_rate = statistics.median(r for _, r in results[peer])
    lines = [
        f"### {title}",
        "",
        f"| subject | {cpu} | {rate} | over {peer} (median) | rounds ({rate}) |",
        "|---|---|---|---|---|",
    ]
    for subject, values in results.items():
        med_cpu = statistics.median(c for c, _ in values)
        med_rate = statistics.median(r for _, r in values)
        rounds = " / ".join(f"{r:,.0f}" for _, r in values)
        lines.append(
            f"| {subject} | {med_cpu:,.2f} | {med_rate:,.0f} | {med_rate / peer_rate:.2f}x"
            f" | {rounds} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--out", default=str(HERE / "RESULTS-index-cost.md"))
    args = parser.parse_args()
    began, load_before = time.time(), loadavg()
    pg = asyncio.run(pg_rounds(args.rounds, args.rows))
    lite = sqlite_rounds(args.rounds, args.count)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    when = dt.datetime.fromtimestamp(began, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines: list[Any] = [
        "# What each index costs a new job",
        "",
        f"Measured {when}, taskflare at {head}, {args.rounds} round(s), load before"
        f" {load_before}, after {loadavg()}; {(time.time() - began) / 60:.1f} min."
        " Written by `benchmarks/index_cost.py` (its docstring says what each subject does).",
        "Cells are medians over the rounds; the last column has every round's rate.",
        "",
        *table(
            f"Bulk insert of {args.rows:,} jobs, PostgreSQL",
            "server CPU µs/row",
            "rows/s",
            pg,
            "pgqueuer",
        ),
        *table(
            "Single durable insert, SQLite (synchronous=FULL)",
            "CPU µs/call",
            "calls/s",
            lite,
            "huey",
        ),
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
