"""What a PostgreSQL job drain writes per job: rows, index entries, HOT updates, WAL.

    python benchmarks/drain_work.py [--jobs 20000] [--statements]

Enqueues `--jobs` no-op jobs with `enqueue_many`, then drains them with an in-process
`Worker` (default settings), as `drain_cpu.py` does, and prints per job: the rows
inserted, updated (HOT or not) and deleted in each table (`pg_stat_user_tables`), the
index entries added to each index of the job tables (leaf items counted with
`pageinspect`, which must be installed in the database: `CREATE EXTENSION pageinspect`;
a lower bound, as PostgreSQL removes entries of dead row versions when a leaf would
otherwise split: bottom-up deletion), the WAL written
(`pg_stat_wal`) and the server and client CPU. `--statements` also logs every statement
of the drain (`log_min_duration_statement=0` for its connections) and sums the server's
reported durations per statement from the server log (`--log`). Nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
import uuid
from collections import defaultdict
from typing import Any

import psycopg
from scale import server_cpu

from taskflare import App, Worker, WorkerConfig

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = ("messages", "job_attempts", "job_batches", "workers", "stats_minutes", "queues")


def snapshot(schema: str) -> dict[str, Any]:
    """Counters of the schema's tables and indexes, and the server's WAL totals."""
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        tables = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
                " FROM pg_stat_user_tables WHERE schemaname = %s",
                [schema],
            )
        }
        indexes: dict[str, int] = {}
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_am a ON a.oid = c.relam"
            " WHERE n.nspname = %s AND c.relkind = 'i' AND a.amname = 'btree'",
            [schema],
        ).fetchall():
            qualified = f'"{schema}"."{name}"'
            blocks = conn.execute(
                "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                [qualified],
            ).fetchone()
            assert blocks is not None
            items = 0
            for blk in range(1, blocks[0]):
                row = conn.execute(
                    "SELECT type, btpo_next FROM bt_page_stats(%s, %s)", [qualified, blk]
                ).fetchone()
                assert row is not None
                if row[0] != "l":
                    continue
                # Heap pointers on the leaf (a deduplicated posting list holds several); a
                # leaf's first item is its high key unless it is the rightmost leaf.
                first = 2 if row[1] != 0 else 1
                counted = conn.execute(
                    "SELECT coalesce(sum(coalesce(cardinality(tids), 1)), 0)"
                    " FROM bt_page_items(%s, %s) WHERE itemoffset >= %s",
                    [qualified, blk, first],
                ).fetchone()
                assert counted is not None
                items += int(counted[0])
            indexes[name] = items
        wal = conn.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").fetchone()
        lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    return {"tables": tables, "indexes": indexes, "wal": wal, "lsn": lsn}


async def drain(jobs: int, statements: bool, log_path: str, log_start: int) -> None:
    schema = f"work_{uuid.uuid4().hex[:10]}"
    tag = f"tf_{schema}"
    url = f"{SERVER_URL}?schema={schema}&application_name={tag}"
    if statements:
        os.environ["PGOPTIONS"] = "-c log_min_duration_statement=0"
    done = asyncio.Event()
    count = 0

    def make_app() -> App:
        app = App(url)

        @app.job("noop")
        async def noop(payload: Any) -> None:
            nonlocal count
            count += 1
            if count >= jobs:
                done.set()

        return app

    # Each app's connections are closed before a snapshot: a server process reports its
    # table counters when it exits (otherwise at most once a second, or when idle 10 s).
    filler = make_app()
    try:
        await filler.enqueue_many("noop", list(range(jobs)))
    finally:
        await filler.close()
    app = make_app()
    try:
        await app.backend()
        before = snapshot(schema)
        worker = Worker(app, WorkerConfig())
        server0 = server_cpu(tag)
        cpu0, t0 = time.process_time(), time.perf_counter()
        running = asyncio.create_task(worker.run())
        await done.wait()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server = server_cpu(tag) - server0
        worker.stop()
        await running
        os.environ.pop("PGOPTIONS", None)
        await app.close()
        after = snapshot(schema)
    finally:
        os.environ.pop("PGOPTIONS", None)
        await app.close()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{jobs} jobs, {jobs / seconds:,.0f} jobs/s, client {1e6 * cpu / jobs:.1f} µs/job,"
        f" server {1e6 * server / jobs:.1f} µs/job (load {load})"
    )
    print("\nper job: table  inserted  updated  hot  deleted")
    for name in TABLES:
        a, b = after["tables"].get(name), before["tables"].get(name)
        if a is None or b is None:
            continue
        d = [(x - y) / jobs for x, y in zip(a, b, strict=True)]
        print(f"  {name:<14} {d[0]:7.3f} {d[1]:7.3f} {d[2]:7.3f} {d[3]:7.3f}")
    print("\nper job: index entries added")
    total = 0.0
    for name, n in sorted(after["indexes"].items()):
        added = (n - before["indexes"].get(name, 0)) / jobs
        total += added
        if added:
            print(f"  {name:<36} {added:6.3f}")
    print(f"  {'(all)':<36} {total:6.3f}")
    records = (after["wal"][0] - before["wal"][0]) / jobs
    fpi = (after["wal"][1] - before["wal"][1]) / jobs
    wal_bytes = (after["wal"][2] - before["wal"][2]) / jobs
    print(
        f"\nWAL per job (whole server): {records:.1f} records, {fpi:.2f} full pages,"
        f" {wal_bytes:,.0f} bytes"
    )
    if statements:
        per_statement(log_path, log_start, jobs)


_LINE = re.compile(r"duration: ([0-9.]+) ms\s+(parse|bind|execute|statement)[^:]*:\s*(.*)")


def per_statement(log_path: str, start: int, jobs: int) -> None:
    """Sum the server's logged durations per statement (the first words of its text)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    with open(log_path, errors="replace") as f:
        f.seek(start)
        for line in f:
            m = _LINE.search(line)
            if not m:
                continue
            text = " ".join(m.group(3).split())[:70]
            entry = totals[f"{m.group(2):<9} {text}"]
            entry[0] += float(m.group(1))
            entry[1] += 1
    print("\nserver-reported duration per job, by statement (µs/job, calls)")
    for key, (ms, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:25]:
        print(f"  {1000 * ms / jobs:7.2f} {calls:6d}  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--statements", action="store_true")
    parser.add_argument("--log", default="/var/log/postgresql/postgresql-15-main.log")
    args = parser.parse_args()
    log_start = os.path.getsize(args.log) if args.statements else 0
    asyncio.run(drain(args.jobs, args.statements, args.log, log_start))


if __name__ == "__main__":
    main()
