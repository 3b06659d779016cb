"""taskflare benchmark: send latency, send_batch throughput, drain, pickup, and the floor.

Every figure is measured in one run, side by side with a minimal hand-written loop doing
the same claim/ack work on the same schema (the floor), so the interesting numbers are
ratios that do not depend on how fast this machine happens to be today.

    python benchmarks/bench.py [--backend sqlite] [--quick] [--rounds 2] [--out FILE]

A backend is a `BenchBackend`: how to make a fresh database URL per measurement and
per variant (SQLite: synchronous FULL and NORMAL), and its own floor loop. Nothing here
is a test; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import taskflare
from taskflare import App, JobContext, Worker, WorkerConfig
from taskflare.backends.base import JobCountParams, QueueCountsParams

QUEUE = "bench"
JOB_QUEUE = "bench-jobs"
JOB_TYPE = "bench-noop"
BODY = {"user": 42, "action": "noop", "payload": "x" * 64}


# -- sizes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    sends: int = 5_000
    batch_messages: int = 20_000
    drain_messages: int = 20_000
    pickups: int = 200
    floor_batch100: int = 20_000
    floor_batch1: int = 5_000
    job_drain: int = 20_000
    delayed_jobs: int = 100
    waits: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        return cls(1_000, 5_000, 5_000, 50, 5_000, 1_000, 5_000, 30, 50)


# -- backends ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorResult:
    """The hand-written loop's rates, messages per second."""

    insert: float
    claim_ack: float


@dataclass(frozen=True)
class BenchBackend:
    """A database to benchmark on: fresh URLs per measurement and the floor loop."""

    name: str
    variants: dict[str, str]  # variant key -> label shown in the report
    make_url: Callable[[Path, str], str]  # (fresh temp dir, variant) -> database URL
    floor: Callable[[str, int, int], FloorResult]  # (url, messages, batch size) -> rates
    engine_version: Callable[[], str]
    # Optional: the same loop on a bare table, to show what taskflare's schema costs.
    bare_floor: Callable[[str, int, int], FloorResult] | None = None


def sqlite_url(tmp: Path, variant: str) -> str:
    url = f"sqlite:///{tmp / 'bench.db'}"
    return url if variant == "full" else f"{url}?synchronous={variant}"


def _sqlite_connect(url: str) -> sqlite3.Connection:
    from taskflare.backends import sqlite_path

    path = sqlite_path(url)
    synchronous = "NORMAL" if "synchronous=normal" in url else "FULL"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


FLOOR_CLAIM = """
UPDATE messages
SET state = 'leased', attempts = attempts + 1, lease_id = :lease, lease_expires_at = :exp
WHERE id IN (SELECT id FROM messages
             WHERE queue = :queue AND state = 'ready' AND available_at <= :now
             ORDER BY priority DESC, available_at, id LIMIT :limit)
RETURNING id, body, attempts
"""


BARE_SCHEMA = (
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY, queue TEXT NOT NULL, state TEXT NOT NULL, body BLOB NOT NULL,
        content_type TEXT NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
        created_at REAL NOT NULL, available_at REAL NOT NULL, lease_id TEXT,
        lease_expires_at REAL)""",
    """CREATE INDEX messages_ready_idx ON messages (queue, priority DESC, available_at, id)
        WHERE state = 'ready'""",
)


def sqlite_floor(url: str, n: int, batch: int) -> FloorResult:
    """The least work a SQLite queue must do: insert in batches, then claim + delete.

    Same schema as taskflare (its own migration files), WAL, same synchronous setting,
    one transaction per INSERT batch, per claim and per delete.
    """
    from taskflare.backends.sqlite.backend import MIGRATIONS, _split_statements

    schema = [s for m in MIGRATIONS for s in _split_statements(m.sql)]
    return _sqlite_loop(url, n, batch, schema, uuid_keys=True)


def sqlite_bare_floor(url: str, n: int, batch: int) -> FloorResult:
    """The same loop on a bare table (integer key, one index): what the schema itself costs."""
    return _sqlite_loop(url, n, batch, BARE_SCHEMA)


def _sqlite_loop(
    url: str, n: int, batch: int, schema: Sequence[str], *, uuid_keys: bool = False
) -> FloorResult:
    from taskflare.ids import uuid7

    conn = _sqlite_connect(url)
    for statement in schema:
        conn.execute(statement)
    body = repr(BODY).encode()
    # taskflare's keys are 36-character UUIDv7 strings; the bare table uses integers.
    keys = [uuid7() if uuid_keys else i for i in range(n)]
    start = time.perf_counter()
    for first in range(0, n, batch):
        now = time.time()
        rows = [
            (keys[i], QUEUE, body, "json", now, now) for i in range(first, min(first + batch, n))
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,"
            " created_at, available_at) VALUES (?, ?, 'ready', ?, ?, 0, 0, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    insert = n / (time.perf_counter() - start)
    done = 0
    start = time.perf_counter()
    while done < n:
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(
            FLOOR_CLAIM,
            {"lease": f"L{done}", "exp": now + 30, "queue": QUEUE, "now": now, "limit": batch},
        ).fetchall()
        conn.execute("COMMIT")
        if not claimed:
            raise RuntimeError("floor loop: nothing left to claim")
        ids = [row[0] for row in claimed]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DELETE FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids)
        conn.execute("COMMIT")
        done += len(ids)
    claim_ack = n / (time.perf_counter() - start)
    conn.close()
    return FloorResult(insert, claim_ack)


SQLITE = BenchBackend(
    name="sqlite",
    variants={"full": "synchronous=FULL (default)", "normal": "?synchronous=normal"},
    make_url=sqlite_url,
    floor=sqlite_floor,
    bare_floor=sqlite_bare_floor,
    engine_version=lambda: f"SQLite {sqlite3.sqlite_version}",
)

BACKENDS: dict[str, BenchBackend] = {"sqlite": SQLITE}

with contextlib.suppress(ImportError):  # psycopg is a dependency, but keep SQLite runnable
    import bench_postgres

    BACKENDS["postgres"] = BenchBackend(
        name="postgres",
        variants={"default": "PostgreSQL (synchronous_commit=on)"},
        make_url=bench_postgres.postgres_url,
        floor=lambda url, n, batch: FloorResult(*bench_postgres.postgres_floor(url, n, batch)),
        bare_floor=lambda url, n, batch: FloorResult(
            *bench_postgres.postgres_bare_floor(url, n, batch)
        ),
        engine_version=bench_postgres.postgres_version,
    )


# -- helpers -------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextlib.contextmanager
def fresh_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="taskflare-bench-") as tmp:
        yield Path(tmp)


def taskflare_command() -> list[str]:
    exe = Path(sys.executable).with_name("taskflare")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from taskflare.cli import main; main()"]


WORKER_APP = """
import os, socket, time
import taskflare
from taskflare import App

app = App(os.environ["BENCH_DATABASE_URL"])
queue = app.queue(
    "{queue}", max_batch_size={batch_size}, max_batch_timeout=0, visibility_timeout=60
)
_marker = os.environ.get("BENCH_MARKER")
_expect = int(os.environ.get("BENCH_EXPECT", "0"))
_udp = os.environ.get("BENCH_UDP_PORT")
_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if _udp else None
_seen = [0]


@app.job("bench-noop", queue="{job_queue}")
async def bench_noop(payload):
    started = time.time()
    if _marker:
        if _seen[0] == 0:
            with open(_marker + ".first", "w") as f:
                f.write(repr(started))
        _seen[0] += 1
        if _seen[0] >= _expect:
            open(_marker + ".handled", "w").close()
    if _sock is not None and "due" in payload:
        _sock.sendto(repr(started - payload["due"]).encode(), ("127.0.0.1", int(_udp)))


@queue.consumer
async def handle(batch):
    started = time.time()
    if _marker:
        # Two writes in the whole drain: when the first batch starts, when the last one has.
        if _seen[0] == 0:
            with open(_marker + ".first", "w") as f:
                f.write(repr(started))
        _seen[0] += len(batch.messages)
        if _seen[0] >= _expect:
            open(_marker + ".handled", "w").close()
    if _sock is not None:
        for m in batch.messages:
            _sock.sendto(repr(started - m.body["sent"]).encode(), ("127.0.0.1", int(_udp)))
"""


class WorkerProcess:
    """`taskflare worker bench_app:app` in a subprocess; always stopped on exit."""

    def __init__(self, tmp: Path, url: str, batch_size: int, env: dict[str, str]) -> None:
        (tmp / "bench_app.py").write_text(
            textwrap.dedent(
                WORKER_APP.format(queue=QUEUE, batch_size=batch_size, job_queue=JOB_QUEUE)
            )
        )
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")])),
            "BENCH_DATABASE_URL": url,
            **env,
        }
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerProcess:
        command = [*taskflare_command(), "worker", "bench_app:app", "--log-level", "WARNING"]
        extra = os.environ.get("BENCH_WORKER_WRAPPER")  # e.g. "py-spy record -o x.svg --"
        if extra:
            command = [*extra.split(), *command]
        self.proc = subprocess.Popen(command, cwd=self.tmp, env=self.env)
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(
            signal.SIGINT if os.environ.get("BENCH_WORKER_WRAPPER") else signal.SIGTERM
        )
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the worker used so far; 0 where unknown."""
        try:
            fields = Path(f"/proc/{self.proc.pid if self.proc else 0}/stat").read_text()
        except OSError:
            return 0.0
        utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited early with code {self.proc.returncode}")


# -- measurements --------------------------------------------------------------------------


async def measure_send(url: str, n: int) -> dict[str, float]:
    app = App(url)
    queue = app.queue(QUEUE)
    try:
        for _ in range(20):  # open, migrate, declare, warm caches
            await queue.send(BODY)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await queue.send(BODY)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await app.close()
    return {
        "send_p50": percentile(times, 50),
        "send_p95": percentile(times, 95),
        "send_p99": percentile(times, 99),
        "send_rate": n / (sum(times) / 1000),
    }


async def enqueue_batches(url: str, n: int, batch_size: int = 100) -> float:
    """Enqueue `n` messages with `send_batch`; return messages per second."""
    app = App(url)
    queue = app.queue(QUEUE)
    items = [{"body": BODY}] * batch_size
    try:
        await queue.send_batch(items[:1])  # open, migrate, declare
        t0 = time.perf_counter()
        for first in range(0, n, batch_size):
            await queue.send_batch(items[: min(batch_size, n - first)])
        elapsed = time.perf_counter() - t0
    finally:
        await app.close()
    return n / elapsed


async def measure_drain(tmp: Path, url: str, n: int) -> dict[str, float]:
    """Pre-enqueue n messages, start one worker process, time until all are acked."""
    await enqueue_batches(url, n - 1)
    app = App(url)
    queue = app.queue(QUEUE)
    await queue.send(BODY)  # makes the total exactly n
    backend = await app.backend()
    marker = tmp / "drain"
    handled = tmp / "drain.handled"
    deadline = time.monotonic() + max(120.0, n / 100)
    env = {"BENCH_MARKER": str(marker), "BENCH_EXPECT": str(n)}
    try:
        spawn = time.time()
        with WorkerProcess(tmp, url, 100, env) as worker:
            # Cheap wait (a stat every 10 ms) until the consumer has seen every message,
            # then poll the database closely until the last ack is committed.
            left = n
            cpu_at_first: float | None = None
            while left:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"drain: {left} of {n} messages left at the deadline")
                worker.check_alive()
                if cpu_at_first is None and (tmp / "drain.first").exists():
                    cpu_at_first = worker.cpu_seconds()
                if not handled.exists():
                    await asyncio.sleep(0.01)
                    continue
                counts = await backend.queue_counts(QueueCountsParams(QUEUE))
                left = sum(counts[0].by_state.values()) if counts else 0
                if left:
                    await asyncio.sleep(0.002)
            done = time.time()
            cpu = worker.cpu_seconds() - (cpu_at_first or 0.0)
        first = float((tmp / "drain.first").read_text())
    finally:
        await app.close()
    figures = {"drain": n / (done - first), "drain_startup": n / (done - spawn)}
    if cpu > 0:
        figures["drain_cpu_us"] = cpu / n * 1e6
    return figures


async def measure_pickup(tmp: Path, url: str, n: int) -> dict[str, float]:
    """An idle worker process; send one message at a time; time send -> handler start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    port = sock.getsockname()[1]
    app = App(url)
    queue = app.queue(QUEUE, max_batch_size=1, max_batch_timeout=0)
    await app.backend()
    rng = random.Random(7)
    latencies: list[float] = []
    try:
        with WorkerProcess(tmp, url, 1, {"BENCH_UDP_PORT": str(port)}) as worker:
            await queue.send({"sent": time.time()})  # wait until the worker is up
            sock.settimeout(60)
            sock.recv(64)
            sock.settimeout(10)
            for _ in range(n):
                await asyncio.sleep(rng.uniform(0.03, 0.08))  # let the worker go idle
                worker.check_alive()
                await queue.send({"sent": time.time()})
                latencies.append(float(await asyncio.to_thread(sock.recv, 64)) * 1000)
    finally:
        sock.close()
        await app.close()
    return {"pickup_p50": percentile(latencies, 50), "pickup_p95": percentile(latencies, 95)}


def _job_app(url: str) -> App:
    """A producer-side app that knows the benchmark's job type (for validation only)."""
    app = App(url)

    @app.job(JOB_TYPE, queue=JOB_QUEUE)
    async def bench_noop(payload: dict[str, float]) -> None:  # run by the worker process
        return None

    return app


async def measure_job_drain(tmp: Path, url: str, n: int) -> dict[str, float]:
    """Pre-enqueue n no-op jobs, start one worker process, time until all are completed."""
    app = _job_app(url)
    marker = tmp / "jobs"
    handled = tmp / "jobs.handled"
    deadline = time.monotonic() + max(120.0, n / 100)
    try:
        await app.enqueue_many(JOB_TYPE, [{}] * n, chunk_size=1000)
        backend = await app.backend()
        with WorkerProcess(
            tmp, url, 100, {"BENCH_MARKER": str(marker), "BENCH_EXPECT": str(n)}
        ) as worker:
            left = n
            while left:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job drain: {left} of {n} jobs left at the deadline")
                worker.check_alive()
                if not handled.exists():
                    await asyncio.sleep(0.01)
                    continue
                counts = await backend.job_counts(JobCountParams(JOB_QUEUE, JOB_TYPE))
                left = sum(c.count for c in counts if c.state in ("ready", "leased"))
                if left:
                    await asyncio.sleep(0.002)
            done = time.time()
        first = float((tmp / "jobs.first").read_text())
    finally:
        await app.close()
    return {"job_drain": n / (done - first)}


async def measure_delayed(tmp: Path, url: str, n: int) -> dict[str, float]:
    """n jobs due 0.5-3 s from now, an idle worker: how late each is claimed (never early).

    Lateness is the job's stored `started_at` (the claim, on the backend's clock) minus
    its stored `run_at`, so the producer's own timing does not enter the figure.
    """
    app = _job_app(url)
    rng = random.Random(11)
    try:
        with WorkerProcess(tmp, url, 10, {}) as worker:
            first = await app.enqueue(JOB_TYPE, {})  # wait until the worker is up
            await _wait_finished(app, [first.id], worker)
            jobs = [
                await app.enqueue(JOB_TYPE, {}, delay_seconds=rng.uniform(0.5, 3.0))
                for _ in range(n)
            ]
            await _wait_finished(app, [j.id for j in jobs], worker)
        lateness = []
        for job in jobs:
            stored = await app.get_job(job.id)
            assert stored is not None and stored.started_at is not None
            lateness.append((stored.started_at - stored.run_at).total_seconds() * 1000)
    finally:
        await app.close()
    return {
        "delayed_p50": percentile(lateness, 50),
        "delayed_p95": percentile(lateness, 95),
        "delayed_min": min(lateness),
    }


async def measure_wait(url: str, n: int) -> dict[str, float]:
    """`job.wait()` in the process that runs the worker: from the handler's return to the
    moment `wait()` returns (the outcome write, the change signal, one read)."""
    app = App(url)
    ended: dict[str, float] = {}

    @app.job("waited")
    async def waited(payload: int, ctx: JobContext) -> int:
        ended[ctx.job_id] = time.perf_counter()
        return payload

    latencies: list[float] = []
    worker = Worker(app, WorkerConfig(concurrency=1))
    running = asyncio.create_task(worker.run())
    try:
        for i in range(n + 5):
            job = await app.enqueue("waited", i)
            await job.wait(timeout=30)
            if i >= 5:  # warm-up: the first waits open the LISTEN connection
                latencies.append((time.perf_counter() - ended[job.id]) * 1000)
    finally:
        worker.stop()
        await running
        await app.close()
    return {
        "wait_p50_ms": percentile(latencies, 50),
        "wait_p95_ms": percentile(latencies, 95),
    }


async def _wait_finished(app: App, ids: list[str], worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 60
    for job_id in ids:
        while True:
            job = await app.get_job(job_id)
            if job is not None and job.status.finished:
                break
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("delayed jobs: not all finished within 60 s")
            await asyncio.sleep(0.02)


async def measure_all(backend: BenchBackend, variant: str, sizes: Sizes) -> dict[str, float]:
    figures: dict[str, float] = {}
    with fresh_dir() as tmp:
        figures.update(await measure_send(backend.make_url(tmp, variant), sizes.sends))
    with fresh_dir() as tmp:
        url = backend.make_url(tmp, variant)
        figures["send_batch"] = await enqueue_batches(url, sizes.batch_messages)
    if backend.bare_floor is not None:
        with fresh_dir() as tmp:
            bare = backend.bare_floor(backend.make_url(tmp, variant), sizes.floor_batch100, 100)
        figures["bare100_insert"] = bare.insert
        figures["bare100_claim_ack"] = bare.claim_ack
    # The batch-100 floor runs right before the drain it is the denominator of.
    for batch, n in ((1, sizes.floor_batch1), (100, sizes.floor_batch100)):
        with fresh_dir() as tmp:
            floor = backend.floor(backend.make_url(tmp, variant), n, batch)
        figures[f"floor{batch}_insert"] = floor.insert
        figures[f"floor{batch}_claim_ack"] = floor.claim_ack
    with fresh_dir() as tmp:
        url = backend.make_url(tmp, variant)
        figures.update(await measure_drain(tmp, url, sizes.drain_messages))
    with fresh_dir() as tmp:
        figures.update(await measure_pickup(tmp, backend.make_url(tmp, variant), sizes.pickups))
    with fresh_dir() as tmp:
        figures.update(
            await measure_job_drain(tmp, backend.make_url(tmp, variant), sizes.job_drain)
        )
    with fresh_dir() as tmp:
        figures.update(
            await measure_delayed(tmp, backend.make_url(tmp, variant), sizes.delayed_jobs)
        )
    with fresh_dir() as tmp:
        figures.update(await measure_wait(backend.make_url(tmp, variant), sizes.waits))
    figures["drain_over_floor"] = figures["drain"] / figures["floor100_claim_ack"]
    if "bare100_claim_ack" in figures:
        figures["drain_over_bare"] = figures["drain"] / figures["bare100_claim_ack"]
    figures["send_p95_over_target"] = figures["send_p95"] / 2.0
    return figures


# -- report --------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str]] = [
    # (key, label, format)
    ("send_p50", "`send` latency p50, ms", ".2f"),
    ("send_p95", "`send` latency p95, ms", ".2f"),
    ("send_p99", "`send` latency p99, ms", ".2f"),
    ("send_rate", "`send` sequential, msgs/s", ",.0f"),
    ("send_batch", "`send_batch` (100 a call), msgs/s", ",.0f"),
    ("drain", "drain, 1 worker process, msgs/s (first delivery → last ack)", ",.0f"),
    ("drain_startup", "drain incl. worker startup, msgs/s", ",.0f"),
    ("drain_cpu_us", "drain: worker CPU (all threads) per message, µs", ".1f"),
    ("job_drain", "job drain: no-op jobs, 1 worker process, jobs/s", ",.0f"),
    ("delayed_p50", "delayed job claimed after its run_at, p50, ms (idle worker)", ".1f"),
    ("delayed_p95", "delayed job claimed after its run_at, p95, ms", ".1f"),
    ("delayed_min", "delayed job claimed after its run_at, minimum, ms (never < 0)", ".1f"),
    ("wait_p50_ms", "job.wait() after the handler returns p50, ms (same process)", ".2f"),
    ("wait_p95_ms", "job.wait() after the handler returns p95, ms (same process)", ".2f"),
    ("pickup_p50", "pickup latency to an idle worker p50, ms", ".1f"),
    ("pickup_p95", "pickup latency to an idle worker p95, ms", ".1f"),
    ("floor100_insert", "floor: insert, batches of 100, msgs/s", ",.0f"),
    ("floor100_claim_ack", "floor: claim + ack, batches of 100, msgs/s", ",.0f"),
    ("floor1_insert", "floor: insert, one at a time, msgs/s", ",.0f"),
    ("floor1_claim_ack", "floor: claim + ack, one at a time, msgs/s", ",.0f"),
    ("bare100_insert", "bare-table loop: insert, batches of 100, msgs/s", ",.0f"),
    ("bare100_claim_ack", "bare-table loop: claim + ack, batches of 100, msgs/s", ",.0f"),
]

RATIOS: list[tuple[str, str, str]] = [
    ("drain_over_floor", "drain / floor claim+ack (batch 100)", "≥ 0.5"),
    ("drain_over_bare", "drain / bare-table loop claim+ack (batch 100)", "(context)"),
    ("send_p95_over_target", "`send` p95 / 2 ms", "< 1.0"),
]

PEER_HEADER = (
    "peer",
    "backend",
    "conc.",
    "enqueue p50 ms",
    "enqueue p95 ms",
    "enqueue p99 ms",
    "bulk enqueue jobs/s",
    "drain jobs/s",
    "drain incl. startup",
    "pickup p50 ms",
    "pickup p95 ms",
)
PEER_ROWS = (
    "huey_sqlite | sqlite | 8 | 0.25 | 0.44 | 0.59 | — | 2,673 | 2,594 | 18.4 | 57.2",
    "huey_redis | redis | 8 | 0.16 | 0.24 | 0.39 | — | 2,245 | 2,171 | 0.8 | 1.2",
    "dramatiq | redis | 8 | 0.20 | 0.28 | 0.34 | — | 2,038 | 2,005 | 7.6 | 18.1",
    "saq_redis | redis | 10 | 0.28 | 0.37 | 0.45 | — | 1,271 | 1,255 | 1.9 | 2.6",
    "celery | redis | 8 | 0.63 | 0.80 | 1.26 | — | 777 | 763 | 2.6 | 3.3",
    "rq | redis | 1 | 0.44 | 0.61 | 0.72 | 11,722 | 241 | 241 | 2.5 | 3.6",
    "arq | redis | 10 | 0.57 | 0.95 | 1.51 | — | 200 | 200 | 490.8 | 499.8",
    "pgqueuer | postgres | batch 10 | 0.54 | 0.70 | 0.91 | 35,199 | 4,229 | 3,837 | 3.8 | 5.0",
    "saq_pg | postgres | 10 | 1.06 | 1.58 | 2.91 | — | 529 | 525 | 5.5 | 7.5",
    "procrastinate | postgres | 10 | 1.47 | 2.55 | 3.55 | 11,099 | 399 | 396 | 5.0 | 7.1",
)
PEER_FLOORS = """\
Raw floors in that reference run (hand-written single-process loops, msgs/s, insert /
claim+ack): SQLite batch 100 FULL 166,419 / 144,300; batch 1 FULL 5,594 / 2,863;
batch 100 NORMAL 447,505 / 343,194; batch 1 NORMAL 33,485 / 16,755.
PostgreSQL batch 100 114,483 / 53,297; batch 1 2,771 / 1,160.
"""


def peers_table() -> list[str]:
    lines = ["| " + " | ".join(PEER_HEADER) + " |", "|" + "---|" * len(PEER_HEADER)]
    return [*lines, *(f"| {row} |" for row in PEER_ROWS), "", PEER_FLOORS]


def cell(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    runs = " / ".join(format(v, fmt) for v in values)
    return f"**{format(med, fmt)}** ({runs})"


def machine_info(backend: BenchBackend) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], capture_output=True, text=True, check=False
    ).stdout.strip()
    source = Path(taskflare.__file__).resolve().parent
    if not source.is_relative_to(Path("src").resolve()):
        commit, dirty = "", f" (package imported from {source}: say which commit it is)"
    elif dirty:
        dirty = " (with uncommitted changes in src/)"
    return (
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} cores "
        f"(nproc), {platform.platform()}; Python {platform.python_version()}; "
        f"{backend.engine_version()}. taskflare at {commit or '?'}"
        f"{dirty}. Load average (1 min) when the run ended: {os.getloadavg()[0]:.2f}."
    )


def render(
    backend: BenchBackend, results: dict[str, list[dict[str, float]]], sizes: Sizes, secs: float
) -> str:
    variants = list(results)
    head = " | ".join(backend.variants[v] for v in variants)
    lines = [
        f"# taskflare benchmark ({backend.name})",
        "",
        machine_info(backend),
        "",
        f"Cells: **median** (run 1 / run 2 / ...), each run on a fresh database; the whole "
        f"run took {secs:.0f} s. Sizes: {sizes.sends:,} sends, {sizes.batch_messages:,} "
        f"messages by `send_batch`, drain of {sizes.drain_messages:,} no-op messages "
        f"(batch size 100, worker `--concurrency 10`), {sizes.pickups} pickups, floor "
        f"{sizes.floor_batch100:,} (batch 100) and {sizes.floor_batch1:,} (batch 1) messages "
        "on taskflare's schema. "
        "See `benchmarks/README.md` for what each number means.",
        "",
        f"| measurement | {head} |",
        "|---|" + "---|" * len(variants),
    ]
    for key, label, fmt in ROWS:
        if any(key not in r for v in variants for r in results[v]):
            continue
        cells = " | ".join(cell([r[key] for r in results[v]], fmt) for v in variants)
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        "## Ratios against the targets (computed per run, side by side)",
        "",
        f"| ratio | {head} | target |",
        "|---|" + "---|" * (len(variants) + 1),
    ]
    for key, label, target in RATIOS:
        if any(key not in r for v in variants for r in results[v]):
            continue
        cells = " | ".join(cell([r[key] for r in results[v]], ".2f") for v in variants)
        lines.append(f"| {label} | {cells} | {target} |")
    lines += [
        "",
        "## Peers, for context",
        "",
        "From shared reference (`peer-benchmarks.md`), same kind of machine (2 cores), "
        "different run; medians only. Not comparable to the decimal: their drain counts "
        "task starts, ours counts acks committed to the database.",
        "",
        *peers_table(),
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    backend = BACKENDS[args.backend]
    sizes = Sizes.quick() if args.quick else Sizes()
    variants = args.variant or list(backend.variants)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    started = time.perf_counter()
    for round_no in range(1, args.rounds + 1):
        for variant in variants:  # interleaved, so drift hits every variant alike
            figures = await measure_all(backend, variant, sizes)
            results[variant].append(figures)
            summary = ", ".join(f"{k}={v:,.2f}" for k, v in figures.items())
            print(f"round {round_no} {variant}: {summary}", flush=True)
    return render(backend, results, sizes, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each measurement")
    parser.add_argument("--variant", action="append", help="only this variant (repeatable)")
    parser.add_argument("--out", help="write the Markdown report here")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.out:
        Path(args.out).write_text(report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
