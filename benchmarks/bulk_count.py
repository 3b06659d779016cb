"""The dashboard's bulk-action count ("apply to all that match"), before and after it was
bounded, side by side on the same database in one run.

    python benchmarks/bulk_count.py [--jobs 200000] [--rounds 7] [--out FILE]

Before, the count read matching jobs up to its cap through whatever index the planner
picked, so a filter that matches (almost) nothing walked its whole index range: a queue
with no jobs, every job. Now it reads at most the newest 1 001 entries of the index
that drives the filter (the status's, else the type's, else creation time) and says
"at least" when the range holds more. Both statements run alternately (old, new, old,
new...) on the same filled database (`dashboard_pages.fill`): SQLite in this process
(CPU time of this process, `time.process_time`), PostgreSQL as the server's own
`Execution Time` from EXPLAIN ANALYZE. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from dashboard_pages import PG_URL, build_app, fill

from taskflare.backends.sqlfile import load_queries

# The count statements as they were (SQLite: one per driving index; PostgreSQL: one).
OLD_SQLITE = {
    "": """SELECT count(*) FROM (SELECT 1 FROM messages WHERE type IS NOT NULL
  AND (:state IS NULL OR state = :state) AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue) AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id)
  AND (:needle IS NULL OR instr(body, :needle) > 0) LIMIT :count_limit) AS matching""",
    "_state": """SELECT count(*) FROM (SELECT 1 FROM messages WHERE type IS NOT NULL
  AND state = :state AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue) AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id) LIMIT :count_limit) AS matching""",
    "_type": """SELECT count(*) FROM (SELECT 1 FROM messages WHERE type IS NOT NULL
  AND type = :type AND (:state IS NULL OR state = :state)
  AND (:queue IS NULL OR queue = :queue) AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id) LIMIT :count_limit) AS matching""",
}
OLD_POSTGRES = """SELECT count(*) FROM (SELECT 1 FROM {schema}.messages WHERE type IS NOT NULL
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND created_at >= %(created_from)s::float8
  AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
  AND (%(needle)s::bytea IS NULL OR position(%(needle)s::bytea IN body) > 0)
  LIMIT %(count_limit)s) AS matching"""

CASES: list[tuple[str, dict[str, Any]]] = [
    ("all", {}),
    ("status failed", {"state": "failed"}),
    ("status failed + type", {"state": "failed", "type": "sync-crm"}),
    ("queue (none)", {"queue": "no-such-queue"}),
    ("status + other type (none)", {"state": "ready", "type": "no-such-type"}),
    ("type + other queue (none)", {"type": "render-report", "queue": "emails"}),
]
BASE = {
    "state": None,
    "type": None,
    "queue": None,
    "created_from": float("-inf"),
    "before_created": float("inf"),
    "before_id": "",
    "needle": None,
    "count_limit": 1_001,  # the same cap for both: the count shows "1 000+"
    "scan_limit": 1_001,
}


def lead(params: dict[str, Any]) -> str:
    return "_state" if params.get("state") else "_type" if params.get("type") else ""


def run_sqlite(path: str, rounds: int) -> list[tuple[str, float, float, int, int]]:
    new = load_queries("taskflare.backends.sqlite")
    out = []
    with sqlite3.connect(path) as conn:
        for label, given in CASES:
            args = {**BASE, **given}
            old_sql, new_sql = OLD_SQLITE[lead(given)], new[f"job_search_count{lead(given)}"]
            times: dict[str, list[float]] = {"old": [], "new": []}
            counts = {}
            for _ in range(rounds):
                for which, sql in (("old", old_sql), ("new", new_sql)):
                    started = time.process_time()
                    counts[which] = conn.execute(sql, args).fetchone()[0]
                    times[which].append((time.process_time() - started) * 1000)
            out.append(
                (
                    label,
                    statistics.median(times["old"]),
                    statistics.median(times["new"]),
                    counts["old"],
                    counts["new"],
                )
            )
    return out


def run_postgres(schema: str, rounds: int) -> list[tuple[str, float, float, int, int]]:
    import psycopg

    new = load_queries("taskflare.backends.postgres")
    out = []
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SET jit = off")  # as the backend's connections
        for label, given in CASES:
            args = {**BASE, **given}
            old_sql = OLD_POSTGRES.replace("{schema}", schema)
            new_sql = new[f"job_search_count{lead(given)}"].replace("{schema}", schema)
            times: dict[str, list[float]] = {"old": [], "new": []}
            counts = {}
            for _ in range(rounds):
                for which, sql in (("old", old_sql), ("new", new_sql)):
                    plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args)
                    document = plan.fetchone()[0][0]  # type: ignore[index]
                    times[which].append(float(document["Execution Time"]))
                    counts[which] = conn.execute(sql, args).fetchone()[0]  # type: ignore[index]
            out.append(
                (
                    label,
                    statistics.median(times["old"]),
                    statistics.median(times["new"]),
                    counts["old"],
                    counts["new"],
                )
            )
    return out


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def table(rows: list[tuple[str, float, float, int, int]]) -> list[str]:
    lines = [
        "| filter | before [ms] | after [ms] | after / before | count before | count after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, old, new, old_count, new_count in rows:
        lines.append(
            f"| {label} | {old:.1f} | {new:.1f} | {new / old if old else 0:.2f} | "
            f"{old_count} | {new_count} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()
    lines = [
        f"`python benchmarks/bulk_count.py --jobs {options.jobs} --rounds {options.rounds}` "
        f"on {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}.",
        "",
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/bulk.db"
        app = build_app(f"sqlite:///{path}")
        asyncio.run(fill(app, options.jobs))
        app.close_sync()
        before = load()
        rows = run_sqlite(path, options.rounds)
        lines += [
            f"SQLite, CPU time of the counting process, median of {options.rounds} "
            f"alternated rounds (load average before {before}, after {load()}):",
            "",
            *table(rows),
            "",
        ]
    schema = "tf_bulk_count_" + uuid.uuid4().hex[:8]
    app = build_app(f"{PG_URL}?schema={schema}")
    try:
        asyncio.run(fill(app, options.jobs))
        app.close_sync()
        before = load()
        rows = run_postgres(f'"{schema}"', options.rounds)
        lines += [
            f"PostgreSQL, the server's Execution Time (EXPLAIN ANALYZE), analyzed, not "
            f"vacuumed; median of {options.rounds} alternated rounds (load average before "
            f"{before}, after {load()}):",
            "",
            *table(rows),
        ]
    finally:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    text = "\n".join(lines) + "\n"
    print(text)
    if options.out:
        options.out.write_text(text)


if __name__ == "__main__":
    main()
