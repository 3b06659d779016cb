"""What the dashboard's indexes (schema 8) cost an enqueue: CPU per job with and without
them, on both backends, interleaved rounds on fresh databases.

    python benchmarks/dashboard_index_cost.py [--jobs 20000] [--rounds 3]

"without" is the same schema with migration 8 undone (its ready-by-creation index
dropped, the batch and status indexes of schema 2 and 6 as they were). Measured: CPU of
the enqueuing process (SQLite runs in it) and, on PostgreSQL, CPU of the server process
serving the app's one connection (/proc), per job; jobs enqueued with `enqueue_many`
(1 000 a call) and one at a time with `enqueue`. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from taskflare import App

PG_URL = (
    os.environ.get("TASKFLARE_TEST_DATABASE_URL")
    or os.environ.get("TASKFLARE_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
UNDO = [
    "DROP INDEX {s}messages_ready_created_idx",
    "DROP INDEX {s}messages_batch_state_idx",
    "CREATE INDEX messages_batch_idx ON {t}messages (batch_id) WHERE batch_id IS NOT NULL",
    "DROP INDEX {s}messages_jobs_state_created_idx",
    "CREATE INDEX messages_jobs_state_created_idx ON {t}messages (state, created_at DESC, "
    "id DESC) WHERE type IS NOT NULL",
]


def server_cpu(app_name: str) -> float:
    """CPU seconds of the server processes of connections named `app_name`."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
            )
        ]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def measure(kind: str, with_indexes: bool, jobs: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    folder = tempfile.mkdtemp(prefix="tf-idx-cost-")
    if kind == "sqlite":
        url = f"sqlite:///{folder}/bench.db"
    else:
        url = (
            f"{PG_URL}?schema=tf_idx_{tag}&pool_min_size=1&pool_max_size=1"
            f"&application_name=tfidx{tag}"
        )
    app = App(url)
    app.job("work", queue="work")(lambda payload: None)
    try:
        await app.declare_queues()
        if not with_indexes:
            if kind == "sqlite":
                with sqlite3.connect(f"{folder}/bench.db") as conn:
                    for statement in UNDO:
                        conn.execute(statement.format(s="", t=""))
            else:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    for statement in UNDO:
                        conn.execute(statement.format(s=f"tf_idx_{tag}.", t=f"tf_idx_{tag}."))
        result = {}
        for label, many in (("enqueue_many", True), ("enqueue", False)):
            count = jobs if many else jobs // 10
            client0 = time.process_time()
            server0 = server_cpu(f"tfidx{tag}") if kind == "postgres" else 0.0
            if many:
                for start in range(0, count, 1000):
                    await app.enqueue_many("work", [{"n": start + i} for i in range(1000)])
            else:
                for n in range(count):
                    await app.enqueue("work", {"n": n})
            client = time.process_time() - client0
            server = server_cpu(f"tfidx{tag}") - server0 if kind == "postgres" else 0.0
            result[f"{label} client"] = client / count * 1e6
            if kind == "postgres":
                result[f"{label} server"] = server / count * 1e6
        return result
    finally:
        await app.close()
        if kind == "postgres":
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS tf_idx_{tag} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"load average at start: {os.getloadavg()}")
    for kind in kinds:
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for with_indexes in (False, True):
                runs[with_indexes].append(asyncio.run(measure(kind, with_indexes, args.jobs)))
        print(f"\n{kind}: CPU per job [µs], median of {args.rounds} (without -> with, ratio)")
        for key in runs[True][0]:
            before = statistics.median(r[key] for r in runs[False])
            after = statistics.median(r[key] for r in runs[True])
            print(f"  {key:<22} {before:8.1f} -> {after:8.1f}  x{after / before:.3f}")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
