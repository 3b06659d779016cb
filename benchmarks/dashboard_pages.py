"""How long each dashboard page takes on the server with 1 000 000 jobs, on both backends,
and the query plans of the jobs list, search and count statements.

    python benchmarks/dashboard_pages.py [--jobs 1000000] [--backend sqlite|postgres|both]
                                         [--rounds 5] [--out benchmarks/RESULTS-dashboard.md]

Fills a fresh database with jobs of three types on three queues (75% completed, 6% failed,
6% cancelled, 6% running, 6% pending; every tenth with an idempotency key and a
correlation id), a day of per-minute history and a few batches and dead letters; then
serves the dashboard in this process (its ASGI app, so the figure is server time without
a network) signed in, and times every page `--rounds` times (median and max). Nothing
here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from taskflare import App
from taskflare.backends.base import StatsAddParams, StatsMinute
from taskflare.backends.sqlfile import load_queries
from taskflare.web import Tokens, create_dashboard

PG_URL = (
    os.environ.get("TASKFLARE_TEST_DATABASE_URL")
    or os.environ.get("TASKFLARE_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
TOKEN = "bench-token"
TYPES = (("send-email", "emails"), ("render-report", "reports"), ("sync-crm", "crm"))
CHUNK = 5000


def build_app(url: str) -> App:
    app = App(url)
    app.queue("emails", dead_letter_queue="emails-dlq")
    app.queue("emails-dlq")
    for job_type, queue in TYPES:
        app.job(job_type, queue=queue)(lambda payload: None)
    return app


async def fill(app: App, total: int) -> None:
    """`total` jobs through enqueue_many, then states set in bulk (as if workers ran)."""
    started = time.perf_counter()
    customers = ["Globex", "Initech", "ACME", "Umbrella", "Hooli", "Stark", "Wayne"]
    made = 0
    while made < total:
        size = min(CHUNK, total - made)
        job_type, _ = TYPES[(made // CHUNK) % len(TYPES)]
        payloads = [
            {"n": made + i, "customer": customers[(made + i) % 7], "email": f"u{made + i}@x.io"}
            for i in range(size)
        ]
        await app.enqueue_many(job_type, payloads)
        made += size
        if made % 100_000 == 0:
            print(f"  {made:>9,} jobs stored ({time.perf_counter() - started:.0f} s)", flush=True)
    await settle_in_bulk(app)
    backend = await app.backend()
    now = time.time()
    minutes = [
        StatsMinute(
            int(now // 60 * 60) - 60 * m, queue, 600 + m % 50, 3, 2, 12.5, (100, 200, 300, 2)
        )
        for m in range(1440)
        for _, queue in TYPES
    ]
    await backend.stats_add(StatsAddParams(minutes))
    dead = app.queues["emails-dlq"]
    await dead.send_batch([{"body": {"to": f"bounce{i}@x.io"}} for i in range(50)])
    print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)


async def settle_in_bulk(app: App) -> None:
    """States by the last hex digit of the (random) id: a realistic mix without a worker."""
    statements = [
        "UPDATE {t} SET state = 'completed', attempts = 1, started_at = created_at, "
        "finished_at = created_at + 0.05, result = '{{\"ok\": true}}' "
        "WHERE right_digit IN ('0','1','2','3','4','5','6','7','8','9','a','b')",
        "UPDATE {t} SET state = 'failed', attempts = 3, finished_at = created_at + 1, "
        "last_error = 'RuntimeError: SMTP 451 try again later' WHERE right_digit = 'c'",
        "UPDATE {t} SET state = 'cancelled', finished_at = created_at + 1, "
        "last_error = 'cancelled before it ran' WHERE right_digit = 'd'",
        "UPDATE {t} SET state = 'leased', attempts = 1, started_at = created_at, "
        "lease_expires_at = created_at + 3600 WHERE right_digit = 'e'",
        "UPDATE {t} SET idempotency_key = 'key-' || id, correlation_id = 'corr-' || id "
        "WHERE right(id, 2) = '7f'",
    ]
    url = app.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for statement in statements:
                conn.execute(
                    statement.format(t="messages")
                    .replace("right_digit", "substr(id, -1)")
                    .replace("right(id, 2)", "substr(id, -2)")
                )
        return
    import psycopg

    schema = re.search(r"schema=(\w+)", url)
    assert schema is not None
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for statement in statements:
            conn.execute(
                statement.format(t=f"{schema.group(1)}.messages").replace(
                    "right_digit", "right(id, 1)"
                )
            )
        conn.execute(f"ANALYZE {schema.group(1)}.messages")  # the timings before VACUUM


async def signed_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = await client.post("/login", data={"csrf": csrf.group(1), "token": TOKEN})
    assert answer.status_code == 303, answer.text


async def sample_ids(app: App) -> dict[str, str]:
    """A job of each kind to open, and a cursor deep in the list."""
    read = app.read
    failed = (await read.job_search(_query(status="failed"), 1)).jobs[0]
    pending = (await read.job_search(_query(status="pending"), 1)).jobs[0]
    keyed = (await read.job_search(_query(status="completed"), 200)).jobs
    key = next((j.idempotency_key for j in keyed if j.idempotency_key), None) or "key-none"
    corr = next((j.correlation_id for j in keyed if j.correlation_id), None) or "corr-none"
    backend = await app.backend()
    from taskflare.backends.base import JobSearchParams

    middle = await backend.job_search_count(JobSearchParams(filter_scan_limit=10**9))
    deep = (await read.job_search(_query(), 1, None)).next_cursor
    page = await read.job_search(_query(type="sync-crm"), 1000)
    for _ in range(20):  # ~20 000 rows back in one type
        if page.next_cursor is None:
            break
        deep = page.next_cursor
        page = await read.job_search(_query(type="sync-crm"), 1000, deep)
    return {
        "failed": failed.id,
        "pending": pending.id,
        "key": key,
        "corr": corr,
        "deep": deep or "",
        "total": str(middle),
    }


def _query(**fields: Any) -> Any:
    from taskflare.readmodel import JobQuery

    return JobQuery(**fields)


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("overview (last hour)", "/"),
        ("overview (24 h)", "/?window=24h"),
        ("queue", "/queues/emails"),
        ("messages", "/queues/emails/messages"),
        ("dead letters", "/queues/emails/dlq"),
        ("jobs: newest", "/jobs"),
        ("jobs: status failed", "/jobs?status=failed"),
        ("jobs: status pending", "/jobs?status=pending"),
        ("jobs: type", "/jobs?type=render-report"),
        ("jobs: queue", "/jobs?queue=crm"),
        ("jobs: status + type", "/jobs?status=failed&type=sync-crm"),
        ("jobs: time range", "/jobs?from=2000-01-01T00:00&to=2100-01-01T00:00"),
        ("jobs: a page ~20 000 back", f"/jobs?type=sync-crm&cursor={ids['deep']}"),
        # Combinations that match nothing: each stops after its window of examined jobs.
        ("jobs: type + other queue (none)", "/jobs?type=render-report&queue=emails"),
        ("jobs: status + other type (none)", "/jobs?status=pending&type=no-such-type"),
        ("jobs: status + other queue (none)", "/jobs?status=completed&queue=no-such-queue"),
        ("jobs: queue (none)", "/jobs?queue=no-such-queue"),
        (
            "jobs: time range + other queue (none)",
            "/jobs?from=2000-01-01T00:00&to=2100-01-01T00:00&queue=no-such-queue",
        ),
        ("jobs: by id", f"/jobs?key={ids['failed']}"),
        ("jobs: by idempotency key", f"/jobs?key={ids['key']}"),
        ("jobs: by correlation id", f"/jobs?key={ids['corr']}"),
        ("jobs: payload text, common", "/jobs?text=Globex"),
        ("jobs: payload text, absent", "/jobs?text=no-such-customer"),
        ("bulk count: all", "/jobs/count"),
        ("bulk count: failed", "/jobs/count?status=failed"),
        ("bulk count: failed of a type", "/jobs/count?status=failed&type=sync-crm"),
        ("bulk count: queue (none)", "/jobs/count?queue=no-such-queue"),
        ("bulk count: status + other type (none)", "/jobs/count?status=pending&type=no-such-type"),
        ("bulk count: type + other queue (none)", "/jobs/count?type=render-report&queue=emails"),
        ("job (failed)", f"/jobs/{ids['failed']}"),
        ("job (pending: why not running)", f"/jobs/{ids['pending']}"),
        ("cron", "/cron"),
        ("workers", "/workers"),
        ("batches", "/batches"),
    ]


async def time_pages(app: App, rounds: int) -> list[tuple[str, float, float, int]]:
    dashboard = create_dashboard(app, Tokens(write=TOKEN, read=None))
    transport = httpx.ASGITransport(app=dashboard, client=("127.0.0.1", 5000))
    results = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        await signed_in(client)
        ids = await sample_ids(app)
        for name, path in pages(ids):
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                answer = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            results.append((name, statistics.median(times), max(times), len(answer.content)))
            print(f"  {name:<34} {statistics.median(times):8.1f} ms", flush=True)
    return results


def explain(url: str) -> list[tuple[str, str]]:
    """The plans of each page's statements with typical parameters: SQLite's query plan
    with the statement's time, PostgreSQL's EXPLAIN (ANALYZE, BUFFERS)."""
    now = time.time()
    window = {"count_limit": 10_001, "queue": None}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("queue_depths (overview, queue page)", "queue_depths", window),
        ("queue_counts (GET /queues)", "queue_counts", window),
        ("message_list, every state (messages page)", "message_list", {"queue": "emails"}),
        (
            "message_list, ready (dead letters page)",
            "message_list",
            {"queue": "emails-dlq", "state": "ready"},
        ),
        ("job_search_scan (no filter)", "job_search_scan", {}),
        ("job_search_scan_state", "job_search_scan_state", {"state": "failed"}),
        ("job_search_scan_type", "job_search_scan_type", {"type": "render-report"}),
        ("job_search_scan (queue)", "job_search_scan", {"queue": "crm"}),
        (
            "job_search_scan_type, a queue it is not on (window of 10 000)",
            "job_search_scan_type",
            {"type": "render-report", "queue": "emails", "scan_limit": 10_000},
        ),
        (
            "job_search_scan_end_type (where that window ended)",
            "job_search_scan_end_type",
            {"type": "render-report", "scan_limit": 10_000},
        ),
        (
            "job_search_count_state (failed of a type)",
            "job_search_count_state",
            {"state": "failed", "type": "sync-crm", "scan_limit": 1_001},
        ),
        (
            "job_search_count (a queue with no jobs: a window of 1 001)",
            "job_search_count",
            {"queue": "no-such-queue", "scan_limit": 1_001},
        ),
        ("job_find (key)", "job_find", {"key": "key-x"}),
        ("job_search_text", "job_search_text", {"needle": b"Globex"}),
        (
            "job_ahead_count",
            "job_ahead_count",
            {"queue": "crm", "priority": 0, "available_at": now, "id": "x"},
        ),
        ("job_batch_list (batches page)", "job_batch_list", {"limit": 10, "count_limit": 501}),
        ("stats_history (charts)", "stats_history", {"since": now - 3600, "step": 60}),
    ]
    base = {
        "state": None,
        "type": None,
        "queue": None,
        "created_from": float("-inf"),
        "before_created": float("inf"),
        "before_id": "",
        "after_created": float("-inf"),
        "after_id": "",
        "needle": None,
        "limit": 51,
        "scan_limit": 5000,
        "key": None,
        "now": now,
        "step": 60,
        "count_limit": 10_001,
    }
    plans = []
    if url.startswith("sqlite"):
        queries = load_queries("taskflare.backends.sqlite")
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for label, name, params in cases:
                sql = queries.get(name)
                if sql is None:
                    continue
                args = {**base, **params}
                rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
                started = time.perf_counter()
                conn.execute(sql, args).fetchall()
                took = (time.perf_counter() - started) * 1000
                plan = "\n".join(str(r[-1]) for r in rows)
                plans.append((label, f"{plan}\n-- ran in {took:.1f} ms"))
        return plans
    import psycopg

    schema = re.search(r"schema=(\w+)", url)
    assert schema is not None
    queries = load_queries("taskflare.backends.postgres")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SET jit = off")  # as the backend's connections
        for label, name, params in cases:
            if name not in queries:
                continue
            sql = queries[name].replace("{schema}", f'"{schema.group(1)}"')
            sql = sql.replace("{now}", "extract(epoch FROM now())::float8")
            args = {**base, **params}
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, args).fetchall()
            plans.append((label, "\n".join(r[0] for r in rows)))
    return plans


Timing = list[tuple[str, float, float, int]]


async def run_backend(
    kind: str,
    jobs: int,
    rounds: int,
    keep: Path | None = None,
    reuse: bool = False,
    pg_schema: str | None = None,
) -> tuple[dict[str, Timing], list[Any], list[str]]:
    """Timings (by the table's state: "as filled", and on PostgreSQL also "after VACUUM"),
    the plans, and notes (load averages)."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="tf-dash-bench-")
        url = f"sqlite:///{keep or Path(folder) / 'bench.db'}"
    else:
        url = f"{PG_URL}?schema={pg_schema or 'tf_dash_bench_' + uuid.uuid4().hex[:8]}"
        reuse = pg_schema is not None and pg_schema_filled(pg_schema)
    app = build_app(url)
    timings: dict[str, Timing] = {}
    notes: list[str] = []
    try:
        await app.declare_queues()
        if not reuse:
            print(f"{kind}: filling {jobs:,} jobs", flush=True)
            await fill(app, jobs)
            await app.enqueue_many("sync-crm", [{"batch": i} for i in range(20)])
        state = "as filled" if not reuse else "reused"
        notes.append(f"{kind} {state}: load average before {load()}")
        timings[state] = await time_pages(app, rounds)
        notes[-1] += f", after {load()}"
        if kind == "postgres" and not reuse:
            vacuum(url)
            notes.append(f"{kind} after VACUUM: load average before {load()}")
            timings["after VACUUM"] = await time_pages(app, rounds)
            notes[-1] += f", after {load()}"
        plans = explain(url)
    finally:
        await app.close()
        if kind == "postgres" and pg_schema is None:
            import psycopg

            schema = url.rsplit("=", 1)[1]
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        elif keep is None:
            remove_sqlite(url)
    return timings, plans, notes


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def vacuum(url: str) -> None:
    """VACUUM (ANALYZE) the message table, as autovacuum would after the bulk updates."""
    import psycopg

    schema = url.rsplit("=", 1)[1]
    print(f"  VACUUM (ANALYZE) {schema}.messages", flush=True)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'VACUUM (ANALYZE) "{schema}".messages')


def pg_schema_filled(schema: str) -> bool:
    """Whether a kept PostgreSQL schema already holds the jobs (then it is reused)."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = 'job_batches'",
            (schema,),
        ).fetchone()
        if found is None:
            return False
        row = conn.execute(f'SELECT count(*) FROM "{schema}".job_batches').fetchone()
        return bool(row and row[0] > 0)


def remove_sqlite(url: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


def report(
    jobs: int, rounds: int, runs: dict[str, tuple[dict[str, Timing], list[Any], list[str]]]
) -> str:
    lines = [
        "# Dashboard pages with many jobs",
        "",
        f"`python benchmarks/dashboard_pages.py --jobs {jobs} --rounds {rounds}`, "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}.",
        "",
        f"Server time per page (in-process ASGI, signed in) with {jobs:,} jobs: median and "
        f"max of {rounds} requests [ms]. The goal is under 200 ms (⚠ marks a median over).",
        "",
    ]
    columns = [(kind, state) for kind, run in runs.items() for state in run[0]]
    lines.append("| page | " + " | ".join(f"{k} {s} median / max" for k, s in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    first_kind, first_state = columns[0]
    for index, (page, *_rest) in enumerate(runs[first_kind][0][first_state]):
        cells = []
        for kind, state in columns:
            _, median, worst, _size = runs[kind][0][state][index]
            mark = " ⚠" if median > 200 else ""
            cells.append(f"{median:.1f}{mark} / {worst:.1f}")
        lines.append(f"| {page} | " + " | ".join(cells) + " |")
    lines += ["", "Load average (1/5/15 min) around each timing:", ""]
    for _kind, run in runs.items():
        lines += [f"- {note}" for note in run[2]]
    for kind, run in runs.items():
        lines += ["", f"## Query plans: {kind}", ""]
        for label, plan in run[1]:
            lines += [f"**{label}**", "", "```text", plan, "```", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--sqlite-file",
        type=Path,
        default=None,
        help="keep the SQLite database here, and reuse it (no fill) if it exists",
    )
    parser.add_argument(
        "--pg-schema",
        default=None,
        help="keep the PostgreSQL jobs in this schema, and reuse them (no fill) if it holds some",
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    runs = {
        kind: asyncio.run(
            run_backend(
                kind,
                args.jobs,
                args.rounds,
                args.sqlite_file,
                kind == "sqlite" and args.sqlite_file is not None and args.sqlite_file.exists(),
                args.pg_schema,
            )
        )
        for kind in kinds
    }
    text = report(args.jobs, args.rounds, runs)
    if args.out:
        args.out.write_text(text)
        print(f"written to {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
