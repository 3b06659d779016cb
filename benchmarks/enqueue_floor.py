"""The enqueue floors: the fastest durable enqueue Python can do on each engine, beside
taskflare, pgqueuer and huey, in one run (issue #13).

    python benchmarks/enqueue_floor.py [--rounds 3] [--count 2000] [--bulk 5000]
           [--only SUBJECT,...] [--out benchmarks/RESULTS-enqueue-floor.md]

Every subject runs in a fresh process on a fresh database (a new PostgreSQL database on
$BENCH_POSTGRES_URL's server, or a new SQLite file in a temporary directory on the local
disk), subjects in alternating order round after round. Durability is the same for all:
SQLite in WAL with synchronous=FULL (each commit fsyncs), PostgreSQL with
synchronous_commit on (each commit waits for its WAL flush), autocommit.

Single enqueue (`--count` sequential calls after a warm-up): rate, p50/p95 latency, client
CPU per call (`time.process_time`, every thread of the process) and, on PostgreSQL, server
CPU per call (`/proc/<pid>/schedstat` of every backend connected to the database).

- `fdatasync 4k`: write 4 KiB to a file and `os.fdatasync` it: the disk's own floor.
- `sqlite3 bare`: one `INSERT` into a table (integer key, state, payload), autocommit.
- `sqlite3 taskflare table`: taskflare's `message_insert` (its columns, `ON CONFLICT (id)
  DO NOTHING`) into a database taskflare migrated: every index of its messages table.
- `asyncpg|psycopg bare`: one `INSERT` into a table (bigserial key, state, jsonb).
- `asyncpg|psycopg taskflare table`: one `INSERT` of taskflare's columns (fresh UUIDv7 id,
  no `ON CONFLICT`, no NOTIFY) into a schema taskflare migrated.
- `huey`, `pgqueuer`, `taskflare`: as in benchmarks/compare.py (`noop(t)`,
  `Queries.enqueue`, `app.enqueue`).

Bulk (`--bulk` rows, three calls per run, PostgreSQL; the single enqueue's durability):
- `asyncpg unnest bare`: all rows in one `INSERT ... SELECT FROM unnest(...)`, one commit.
- `asyncpg unnest taskflare jobs`: the same into taskflare's table, the rows as
  `enqueue_many` stores them (a type: the jobs-list indexes take an entry; a batch id:
  the batch index does).
- `asyncpg unnest x100 taskflare messages`: statements of 100 rows, one commit
  each (`send_batch` takes at most 100), the rows as `send_batch` stores them (no type).
- pgqueuer's `Queries.enqueue(lists)` (one statement); taskflare's `enqueue_many`
  (default chunk) and `send_batch` (100 a call).
Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WARM_UP = 200
TF_SCHEMA = "tf"

SINGLE = {
    "sqlite": [
        "fdatasync 4k",
        "sqlite3 bare",
        "sqlite3 taskflare table",
        "huey",
        "taskflare",
    ],
    "postgres": [
        "asyncpg bare",
        "psycopg bare",
        "asyncpg taskflare table",
        "psycopg taskflare table",
        "pgqueuer",
        "taskflare",
    ],
}
BULK = [
    "asyncpg unnest bare",
    "asyncpg unnest taskflare jobs",
    "asyncpg unnest x100 taskflare messages",
    "pgqueuer",
    "taskflare enqueue_many",
    "taskflare send_batch",
]

BARE_SQLITE = (
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL DEFAULT 'ready', payload TEXT)"
)
BARE_PG = (
    "CREATE TABLE jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'ready',"
    " payload jsonb)"
)
TF_COLUMNS = (
    "id, queue, state, body, content_type, priority, attempts, created_at, available_at,"
    " type, max_attempts"
)
TF_INSERT_PG = (
    f"INSERT INTO \"{TF_SCHEMA}\".messages ({TF_COLUMNS}) VALUES ($1, 'default', 'ready',"
    " $2, 'json', 0, 0, extract(epoch from clock_timestamp()),"
    " extract(epoch from clock_timestamp()), 'noop', 3)"
)
# Jobs as enqueue_many stores them (a type, so the three jobs-list indexes take an entry;
# a batch id, so the batch index does), or messages as send_batch does (no type, no batch).
TF_UNNEST_PG = (
    f"INSERT INTO \"{TF_SCHEMA}\".messages ({TF_COLUMNS}, batch_id) SELECT m.id, 'default',"
    " 'ready', m.body, 'json', 0, 0, extract(epoch from clock_timestamp()),"
    " extract(epoch from clock_timestamp()), $3::text, $4::integer, $5::text"
    " FROM unnest($1::text[], $2::bytea[]) AS m(id, body)"
)


# -- measuring ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_ns(pid: int) -> int:
    """CPU time a process (all its threads) has run, in ns (`/proc/<pid>/schedstat`)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError):
        return 0


class ServerCpu:
    """CPU of every PostgreSQL backend connected to one database (but the watcher's own)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.start: dict[int, int] = {}

    def pids(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
        return [r[0] for r in rows]

    def begin(self) -> None:
        self.start = {pid: cpu_ns(pid) for pid in self.pids()}

    def spent_ns(self) -> int:
        now = {pid: cpu_ns(pid) for pid in self.pids()}
        # A backend that appeared after begin() counts from zero.
        return sum(now[p] - self.start.get(p, 0) for p in now)

    def close(self) -> None:
        self.conn.close()


async def timed_single(
    call: Callable[[int], Awaitable[None]], count: int, server: ServerCpu | None
) -> dict[str, float]:
    for i in range(WARM_UP):
        await call(i)
    lat = []
    if server is not None:
        server.begin()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        await call(i)
        lat.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {
        "per_s": count / wall,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p95_ms": percentile(lat, 0.95) * 1e3,
        "client_us": cpu / count * 1e6,
    }
    if server is not None:
        out["server_us"] = server.spent_ns() / count / 1e3
    return out


async def timed_bulk(
    call: Callable[[int], Awaitable[None]], rows: int, server: ServerCpu | None, calls: int = 3
) -> dict[str, float]:
    await call(-1)  # warm-up call
    if server is not None:
        server.begin()
    walls = []
    cpu0 = time.process_time()
    for i in range(calls):
        t = time.perf_counter()
        await call(i)
        walls.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    out = {
        "per_s": rows / statistics.median(walls),
        "call_ms": statistics.median(walls) * 1e3,
        "client_us": cpu / (rows * calls) * 1e6,
    }
    if server is not None:
        out["server_us"] = server.spent_ns() / (rows * calls) / 1e3
    return out


# -- subjects (run in a child process) ------------------------------------------------------


def ids(n: int) -> list[str]:
    from taskflare.ids import uuid7_many

    return uuid7_many(n)


async def migrate_taskflare(url: str) -> None:
    from taskflare import App

    app = App(url)
    await (await app.backend()).migrate()
    await app.close()


async def sqlite_single(name: str, path: str, count: int) -> dict[str, float]:
    if name == "fdatasync 4k":
        # Overwrites within a file already written and flushed, as a WAL's frames do once
        # the log has wrapped: a flush of data only, no size change to journal.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        block = b"x" * 4096
        os.write(fd, block * 256)
        os.fsync(fd)

        async def write(i: int) -> None:
            os.pwrite(fd, block, (i % 256) * 4096)
            os.fdatasync(fd)

        try:
            return await timed_single(write, count, None)
        finally:
            os.close(fd)
    if name == "huey":
        sys.path.insert(0, str(BENCH_DIR))
        os.environ["PB_DATABASE_URL"] = f"sqlite:///{path}"
        from peers import huey_sqlite_peer as huey_peer

        async def huey_call(i: int) -> None:
            await huey_peer.enqueue(float(i))

        result = await timed_single(huey_call, count, None)
        conn = huey_peer.huey.storage.conn
        result["synchronous"] = conn.execute("PRAGMA synchronous").fetchone()[0]
        result["wal"] = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        return result
    if name == "taskflare":
        return await taskflare_single(f"sqlite:///{path}", count)
    if name == "sqlite3 taskflare table":
        await migrate_taskflare(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    if name == "sqlite3 bare":
        conn.execute(BARE_SQLITE)

        async def insert(i: int) -> None:
            conn.execute("INSERT INTO jobs (payload) VALUES (?)", (f'{{"t":{i}.0}}',))
    else:
        from taskflare.backends.sqlite.sql import SQL

        sql = SQL["message_insert"]
        pool = iter(ids(count + WARM_UP))

        async def insert(i: int) -> None:
            now = time.time()
            conn.execute(
                sql,
                {
                    "id": next(pool),
                    "queue": "default",
                    "body": f'{{"t":{i}.0}}'.encode(),
                    "content_type": "json",
                    "priority": 0,
                    "now": now,
                    "delay": 0.0,
                    "type": "noop",
                    "max_attempts": 3,
                    "idempotency_key": None,
                    "correlation_id": None,
                    "batch_id": None,
                    "flow_keys": None,
                },
            )

    result = await timed_single(insert, count, None)
    result["synchronous"] = conn.execute("PRAGMA synchronous").fetchone()[0]
    conn.close()
    return result


async def taskflare_single(url: str, count: int) -> dict[str, float]:
    from taskflare import App

    app = App(url)

    @app.job("noop")
    async def noop(payload: object, ctx: object) -> None:
        pass

    await app.backend()
    server = None if url.startswith("sqlite") else ServerCpu(url)

    async def enqueue(i: int) -> None:
        await app.enqueue("noop", {"t": float(i)})

    try:
        return await timed_single(enqueue, count, server)
    finally:
        await app.close()
        if server is not None:
            server.close()


async def pg_single(name: str, url: str, count: int) -> dict[str, float]:
    if name == "taskflare":
        return await taskflare_single(url, count)
    if name == "pgqueuer":
        return await pgqueuer_run(url, lambda q: single_pgqueuer(q, count))
    tf_table = name.endswith("taskflare table")
    if tf_table:
        await migrate_taskflare(f"{url}?schema={TF_SCHEMA}")
    pool = iter(ids(count + WARM_UP))
    server = ServerCpu(url)
    if name.startswith("asyncpg"):
        import asyncpg

        conn = await asyncpg.connect(url)
        if not tf_table:
            await conn.execute(BARE_PG)

            async def call(i: int) -> None:
                await conn.execute("INSERT INTO jobs (payload) VALUES ($1)", f'{{"t":{i}.0}}')
        else:

            async def call(i: int) -> None:
                await conn.execute(TF_INSERT_PG, next(pool), f'{{"t":{i}.0}}'.encode())

        try:
            return await timed_single(call, count, server)
        finally:
            await conn.close()
            server.close()
    import psycopg

    aconn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    if not tf_table:
        await aconn.execute(BARE_PG)  # type: ignore[arg-type]

        async def pcall(i: int) -> None:
            await aconn.execute(
                "INSERT INTO jobs (payload) VALUES (%s::jsonb)", (f'{{"t":{i}.0}}',)
            )
    else:
        sql = TF_INSERT_PG.replace("$1", "%s").replace("$2", "%s")

        async def pcall(i: int) -> None:
            await aconn.execute(sql, (next(pool), f'{{"t":{i}.0}}'.encode()))  # type: ignore[arg-type]

    try:
        return await timed_single(pcall, count, server)
    finally:
        await aconn.close()
        server.close()


async def pgqueuer_run(
    url: str, body: Callable[[Any], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        return await body(queries)
    finally:
        await conn.close()


async def single_pgqueuer(queries: Any, count: int) -> dict[str, float]:
    server = ServerCpu(os.environ["EF_URL"])

    async def call(i: int) -> None:
        await queries.enqueue("noop", repr(float(i)).encode(), 0)

    try:
        return await timed_single(call, count, server)
    finally:
        server.close()


async def pg_bulk(name: str, url: str, rows: int) -> dict[str, float]:
    if name == "pgqueuer":
        return await pgqueuer_run(url, lambda q: bulk_pgqueuer(q, url, rows))
    if name.startswith("taskflare"):
        return await bulk_taskflare(name, url, rows)
    return await bulk_floor(name, url, rows)


async def bulk_pgqueuer(queries: Any, url: str, rows: int) -> dict[str, float]:
    server = ServerCpu(url)

    async def call(i: int) -> None:
        await queries.enqueue(
            ["noop"] * rows, [repr(float(t)).encode() for t in range(rows)], [0] * rows
        )

    try:
        return await timed_bulk(call, rows, server)
    finally:
        server.close()


async def bulk_taskflare(name: str, url: str, rows: int) -> dict[str, float]:
    from taskflare import App

    app = App(url)
    queue = app.queue("noop", max_batch_size=100, max_batch_timeout=0)

    @app.job("noopjob")
    async def noop(payload: object, ctx: object) -> None:
        pass

    await app.backend()
    server = ServerCpu(url)

    async def call(i: int) -> None:
        if name == "taskflare enqueue_many":
            await app.enqueue_many("noopjob", [{"t": float(t)} for t in range(rows)])
            return
        for first in range(0, rows, 100):
            await queue.send_batch([{"body": {"t": float(t)}} for t in range(first, first + 100)])

    try:
        return await timed_bulk(call, rows, server)
    finally:
        await app.close()
        server.close()


async def bulk_floor(name: str, url: str, rows: int) -> dict[str, float]:
    import asyncpg

    bare = name.endswith("bare")
    if not bare:
        await migrate_taskflare(f"{url}?schema={TF_SCHEMA}")
    conn = await asyncpg.connect(url)
    if bare:
        await conn.execute(BARE_PG)
    server = ServerCpu(url)
    messages = "messages" in name
    step = 100 if "x100" in name else rows

    async def call(i: int) -> None:
        if bare:
            await conn.execute(
                "INSERT INTO jobs (payload) SELECT jsonb_build_object('t', x)"
                " FROM unnest($1::float8[]) x",
                [float(t) for t in range(rows)],
            )
            return
        all_ids = ids(rows)
        bodies = [f'{{"t":{t}.0}}'.encode() for t in range(rows)]
        kind = (None, None, None) if messages else ("noop", 3, str(uuid.uuid4()))
        for first in range(0, rows, step):
            chunk = slice(first, first + step)
            await conn.execute(TF_UNNEST_PG, all_ids[chunk], bodies[chunk], *kind)

    try:
        return await timed_bulk(call, rows, server)
    finally:
        await conn.close()
        server.close()


def child(kind: str, backend: str, name: str, url: str, count: int, rows: int) -> None:
    os.environ["EF_URL"] = url
    if kind == "bulk":
        result = asyncio.run(pg_bulk(name, url, rows))
    elif backend == "sqlite":
        result = asyncio.run(sqlite_single(name, url, count))
    else:
        result = asyncio.run(pg_single(name, url, count))
    print(json.dumps(result))


# -- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskflare-floor-", dir=BENCH_DIR) as tmp:
            yield f"{tmp}/bench.db"
        return
    import psycopg

    name = f"tffloor_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}", query=""))
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def run_one(kind: str, backend: str, name: str, count: int, rows: int) -> dict[str, Any]:
    with fresh_database(backend) as url:
        args = [
            sys.executable,
            __file__,
            "--child",
            kind,
            backend,
            name,
            url,
            str(count),
            str(rows),
        ]
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(BENCH_DIR)},
        )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


FIELDS = {
    "single": (
        ("per_s", "/s", 0),
        ("p50_ms", "p50 ms", 2),
        ("p95_ms", "p95 ms", 2),
        ("client_us", "client CPU µs", 1),
        ("server_us", "server CPU µs", 1),
    ),
    "bulk": (
        ("per_s", "rows/s", 0),
        ("call_ms", "ms a call", 1),
        ("client_us", "client CPU µs/row", 2),
        ("server_us", "server CPU µs/row", 2),
    ),
}


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render(
    plan: list[tuple[str, str, str]],
    rounds: list[dict[tuple[str, str, str], dict[str, Any]]],
    load_lines: list[str],
    args: argparse.Namespace,
    minutes: float,
) -> str:
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in ("taskflare", "pgqueuer", "huey", "asyncpg", "psycopg")
    )
    import psycopg

    with psycopg.connect(SERVER_URL) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sc = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
        fs = conn.execute("SHOW fsync").fetchone()[0]  # type: ignore[index]
    lines = [
        "# Enqueue floors beside taskflare, pgqueuer and huey",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, taskflare at {sha}. "
        f"{len(rounds)} round(s) of {args.count} single enqueues (after {WARM_UP} warm-up) and "
        f"3 bulk calls of {args.bulk} rows (after one warm-up call) per subject; the run took "
        f"{minutes:.1f} min. Written by `benchmarks/enqueue_floor.py` (its docstring says what "
        "each subject does).",
        "",
        f"Machine: 2 CPUs, {platform.platform()}; Python {platform.python_version()}, "
        f"PostgreSQL {pg} (127.0.0.1, synchronous_commit {sc}, fsync {fs}), SQLite "
        f"{sqlite3.sqlite_version} (WAL, synchronous FULL, files on the local ext4 disk). "
        f"Packages: {versions}.",
        "",
        "Cells are medians over the rounds; `best` is the highest rate (lowest p95) of any "
        "round: other work on the machine only slows a subject, so the best round is the "
        "nearest to an idle machine. `ratio` is the subject's rate over the first row's of its "
        "group (its floor): the median of the per-round ratios / best over best. Rates are "
        "wall clock on a shared 2-CPU machine: CPU per call is the steadier figure. Server CPU "
        "is the sum over the PostgreSQL backends connected to the run's database "
        "(`/proc/<pid>/schedstat`).",
        "",
    ]
    groups = [
        ("single", "sqlite", "Single durable enqueue, SQLite"),
        ("single", "postgres", "Single durable enqueue, PostgreSQL"),
        ("bulk", "postgres", f"Bulk enqueue of {args.bulk} rows, PostgreSQL"),
    ]
    for kind, backend, title in groups:
        names = [n for k, b, n in plan if k == kind and b == backend]
        if not names:
            continue
        fields = FIELDS[kind]
        lines += [f"## {title}", ""]
        best_cols = ("best " + fields[0][1],) + (("best p95 ms",) if kind == "single" else ())
        lines.append(
            "| subject | "
            + " | ".join(f[1] for f in fields)
            + " | "
            + " | ".join(best_cols)
            + " | ratio to floor (median / best) | best over the peer's best |"
        )
        lines.append("|---" * (len(fields) + len(best_cols) + 3) + "|")
        peer = "huey" if backend == "sqlite" else "pgqueuer"
        peer_rates = [v for v in (r[(kind, backend, peer)].get("per_s") for r in rounds) if v]
        first = names[0]
        for name in names:
            cells = []
            for key, _, digits in fields:
                vals = [r[(kind, backend, name)].get(key) for r in rounds]
                vals = [v for v in vals if v is not None]
                cells.append(fmt(statistics.median(vals) if vals else None, digits))
            ratios = [
                r[(kind, backend, name)]["per_s"] / r[(kind, backend, first)]["per_s"]
                for r in rounds
                if "per_s" in r[(kind, backend, name)] and "per_s" in r[(kind, backend, first)]
            ]
            own = [v for v in (r[(kind, backend, name)].get("per_s") for r in rounds) if v]
            floor = [v for v in (r[(kind, backend, first)].get("per_s") for r in rounds) if v]
            cells.append(fmt(max(own) if own else None, 0))
            if kind == "single":
                p95s = [v for v in (r[(kind, backend, name)].get("p95_ms") for r in rounds) if v]
                cells.append(fmt(min(p95s) if p95s else None, 2))
            ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
            if own and floor:
                ratio += f" / {max(own) / max(floor):.2f}x"
            errors = {r[(kind, backend, name)].get("error") for r in rounds} - {None}
            note = f" ERROR {'; '.join(map(str, errors))}" if errors else ""
            over = f"{max(own) / max(peer_rates):.2f}x" if own and peer_rates else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio}{note} | {over} |")
        lines.append("")
        if backend == "sqlite":
            syncs = {
                n: {r[(kind, backend, n)].get("synchronous") for r in rounds}
                for n in names
                if any("synchronous" in r[(kind, backend, n)] for r in rounds)
            }
            if syncs:
                lines.append(
                    "`PRAGMA synchronous` read back on the connection that enqueued (2 = FULL): "
                    + ", ".join(f"{n} {sorted(v)}" for n, v in syncs.items())
                    + "."
                )
                lines.append("")
    lines += [
        "## Every figure, per round",
        "",
        "| subject | figure | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " |",
        "|---|---|" + "---|" * len(rounds),
    ]
    for kind, backend, name in plan:
        for key, label, digits in FIELDS[kind]:
            vals = [r[(kind, backend, name)].get(key) for r in rounds]
            if all(v is None for v in vals):
                continue
            lines.append(
                f"| {kind} {backend} {name} | {label} | "
                + " | ".join(fmt(v, digits) for v in vals)
                + " |"
            )
    lines += [
        "",
        "## Load",
        "",
        "| round | started (UTC) | seconds | load before | load after |",
        "|---|---|---|---|---|",
        *load_lines,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=5000)
    parser.add_argument("--only", default="", help="comma-separated subject names")
    parser.add_argument("--out", default=str(BENCH_DIR / "RESULTS-enqueue-floor.md"))
    parser.add_argument("--raw", help="also write every round's figures here (JSON)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, backend, name, url, count, rows = args.child
        child(kind, backend, name, url, int(count), int(rows))
        return
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    plan = [("single", b, n) for b, names in SINGLE.items() for n in names]
    plan += [("bulk", "postgres", n) for n in BULK]
    if only:
        plan = [p for p in plan if p[2] in only]
    rounds = []
    load_lines = []
    t_all = time.monotonic()
    for number in range(1, args.rounds + 1):
        before, started, t0 = loadavg(), dt.datetime.now(dt.UTC), time.monotonic()
        results: dict[tuple[str, str, str], dict[str, Any]] = {}
        for item in plan if number % 2 else list(reversed(plan)):
            results[item] = r = run_one(*item, args.count, args.bulk)
            shown = ", ".join(
                f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
            )
            print(
                f"round {number} {item[0]} {item[1]} {item[2]}: {shown} (load {loadavg()})",
                flush=True,
            )
        rounds.append(results)
        load_lines.append(
            f"| {number} | {started:%H:%M:%S} | {time.monotonic() - t0:.0f} | {before} "
            f"| {loadavg()} |"
        )
    if args.raw:
        raw = [{" | ".join(k): v for k, v in r.items()} for r in rounds]
        Path(args.raw).write_text(json.dumps({"rounds": raw, "load": load_lines}, indent=1))
    text = render(plan, rounds, load_lines, args, (time.monotonic() - t_all) / 60)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
