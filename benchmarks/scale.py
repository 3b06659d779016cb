"""What more worker processes, slow handlers and a big table cost: taskflare's scale figures.

    python benchmarks/scale.py [--jobs 20000] [--retained 1000000] [--memory-jobs 1000000]
                               [--only processes,naps,retained,memory,enqueue]
                               [--out benchmarks/RESULTS-scale.md]

- processes: the same jobs drained by 1, 2 and 4 `taskflare worker` processes on
  PostgreSQL (each its own pool, as on separate machines). Figures: jobs per second of
  worker CPU (all processes' user+system time from /proc), the database's CPU per job
  (its backend processes for this run, found by `application_name`), and a check that
  every job completed on its first delivery (nothing lost, nothing run twice);
  `--rounds` rounds of the three, medians.
- naps: 20 000 jobs whose handler sleeps 10 ms, enqueued first, then one worker with
  `--concurrency 50`: the ideal is 5 000 jobs/s; the figure is the share of it reached,
  from the first claim to the last finish on the database's clock.
- retained: the drain of `--jobs` jobs on an empty table and on one holding
  `--retained` completed jobs (inserted with one SQL statement, all finished within the
  default 7-day retention, so the worker's pruner has nothing to delete), both backends;
  `--rounds` alternating pairs, medians.
- memory: one worker's resident memory, sampled every second while it drains
  `--memory-jobs` jobs (first sample after 10 % of them; min, max and last).
- enqueue: `--memory-jobs` jobs enqueued with `enqueue_many`, the rate of each tenth.

Nothing asserts on time; the report keeps the machine's load beside each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

import psycopg

from taskflare import App

BENCH_DIR = Path(__file__).resolve().parent
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
TICK = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_of(pid: int) -> int:
    """Resident memory of one process [bytes]."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def database(backend: str) -> Iterator[tuple[str, str]]:
    """A fresh database URL (PostgreSQL: a new schema tagged with an application_name)
    and that tag; removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskflare-scale-") as tmp:
            yield f"sqlite:///{tmp}/scale.db", ""
        return
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    tag = f"tfscale_{schema}"
    try:
        yield f"{SERVER_URL}?schema={schema}&application_name={tag}", tag
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def server_cpu(tag: str) -> float:
    """CPU seconds of the PostgreSQL backends serving connections tagged `tag`."""
    if not tag:
        return 0.0
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [tag]
            )
        ]
    return sum(cpu_of(pid) for pid in pids)


def tagged(url: str, tag: str, suffix: str) -> str:
    """The same PostgreSQL URL with another application_name (the producer's backends
    are not counted as the workers')."""
    return url.replace(f"application_name={tag}", f"application_name={tag}{suffix}") if tag else url


class Table:
    """Direct reads of the message table (not through taskflare), for progress checks."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            import sqlite3

            self._sqlite = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
            self._name = "messages"
        else:
            schema = url.split("schema=")[1].split("&")[0]
            self._pg = psycopg.connect(url.split("?")[0], autocommit=True)
            self._name = f'"{schema}".messages'

    def one(self, sql: str) -> tuple[Any, ...]:
        sql = sql.replace("{t}", self._name)
        if self.url.startswith("sqlite"):
            return tuple(self._sqlite.execute(sql).fetchone())
        row = self._pg.execute(sql).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return tuple(row)

    def busy(self, queue: str) -> bool:
        """Whether `queue` has a message ready or leased (read from the two partial
        indexes: a count of completed jobs read every finished job's index entry, a
        million of them beside retained jobs, twenty times a second)."""
        return bool(
            self.one(
                f"SELECT EXISTS (SELECT 1 FROM {{t}} WHERE queue = '{queue}' AND state = 'ready')"
                f" OR EXISTS (SELECT 1 FROM {{t}} WHERE queue = '{queue}' AND state = 'leased')"
            )[0]
        )

    def completed(self, type: str) -> int:
        return int(
            self.one(f"SELECT count(*) FROM {{t}} WHERE type = '{type}' AND state = 'completed'")[0]
        )

    def close(self) -> None:
        if self.url.startswith("sqlite"):
            self._sqlite.close()
        else:
            self._pg.close()


def start_workers(
    url: str, n: int, queue: str, concurrency: int, app: str = "scale_app:app"
) -> list[subprocess.Popen[bytes]]:
    # The caller's PYTHONPATH is kept behind this folder: an A/B run with
    # `PYTHONPATH=<baseline worktree>/src` runs the baseline's workers, not the taskflare
    # installed in the environment.
    path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "SCALE_DATABASE_URL": url, "PYTHONPATH": path}
    procs = [
        subprocess.Popen(
            [
                TASKFLARE,
                "worker",
                app,
                "--queue",
                queue,
                "--concurrency",
                str(concurrency),
                "--log-level",
                "WARNING",
            ],
            cwd=BENCH_DIR,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    RUNNING.extend(procs)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc in RUNNING:
            RUNNING.remove(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# The worker processes started and not stopped yet: a wait fails as soon as one dies.
RUNNING: list[subprocess.Popen[bytes]] = []


def check_workers(what: str) -> None:
    for proc in RUNNING:
        if proc.poll() is not None:
            raise SystemExit(f"a worker exited (code {proc.returncode}) during {what}")


def wait_for(check: Any, what: str, timeout: float = 1800.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        check_workers(what)
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(every)


def ready_workers(table: Table, n: int) -> None:
    """Wait until `n` workers have written their row (they are up and idle)."""
    name = table._name.replace("messages", "workers")

    def up() -> bool:
        return int(table.one(f"SELECT count(*) FROM {name}")[0]) >= n

    wait_for(up, f"{n} workers to start", timeout=120)


def enqueue(url: str, type: str, count: int) -> None:
    import asyncio

    async def run() -> None:
        app = App(url)
        app.job(type, queue="naps" if type == "nap" else "default")(lambda payload: None)
        await app.enqueue_many(type, [{"i": i} for i in range(count)])
        await app.close()

    asyncio.run(run())


def drain_run(
    backend: str,
    workers: int,
    jobs: int,
    *,
    type: str = "noop",
    concurrency: int = 100,
    retained: int = 0,
) -> dict[str, Any]:
    """Start `workers` processes, wait until they are up, enqueue `jobs`, wait until all
    completed; CPU of the workers (after start-up) and of the database per job."""
    queue = "naps" if type == "nap" else "default"
    with database(backend) as (url, tag):
        enqueue(tagged(url, tag, "_p"), type, 1)  # migrate and declare
        table = Table(url)
        if retained:
            fill(table, retained)
        procs = start_workers(url, workers, queue, concurrency)
        try:
            ready_workers(table, workers)
            wait_for(lambda: not table.busy(queue), "the first job")
            cpu0 = sum(cpu_of(p.pid) for p in procs)
            db0 = server_cpu(tag)
            t0 = time.perf_counter()
            enqueue(tagged(url, tag, "_p"), type, jobs)  # returns once every job is stored
            wait_for(lambda: not table.busy(queue), "the drain", every=0.05)
            seconds = time.perf_counter() - t0
            cpu = sum(cpu_of(p.pid) for p in procs) - cpu0
            db = server_cpu(tag) - db0
            count, attempts = table.one(
                f"SELECT count(*), sum(attempts) FROM {{t}} WHERE type = '{type}'"
            )
        finally:
            stop(procs)
            table.close()
    return {
        "workers": workers,
        "jobs": jobs,
        "seconds": seconds,
        "rate": jobs / seconds,
        "jobs_per_worker_cpu_s": jobs / cpu if cpu else float("nan"),
        "worker_cpu_us_per_job": 1e6 * cpu / jobs,
        "db_cpu_us_per_job": 1e6 * db / jobs,
        "exactly_once": int(count) == jobs + 1 and int(attempts) == jobs + 1,
        "load": load(),
    }


def naps_run(backend: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """`jobs` 10 ms jobs enqueued first, then one worker at `concurrency` drains them; the
    rate is counted on the database's own clock, from the first claim to the last finish
    (neither the enqueue nor the worker's start-up is in it)."""
    with database(backend) as (url, tag):
        enqueue(tagged(url, tag, "_p"), "nap", jobs)
        table = Table(url)
        [proc] = start_workers(url, 1, "naps", concurrency)
        try:
            wait_for(lambda: table.completed("nap") >= 1, "the first job")
            wait_for(lambda: table.completed("nap") >= jobs, "the drain", every=0.05)
            cpu = cpu_of(proc.pid)
            first, last = table.one(
                "SELECT min(started_at), max(finished_at) FROM {t} WHERE type = 'nap'"
            )
        finally:
            stop([proc])
            table.close()
    rate = jobs / (float(last) - float(first))
    return {"rate": rate, "worker_cpu_us_per_job": 1e6 * cpu / jobs, "load": load()}


# The retained jobs finished over this many seconds before now: inside the default
# retention of completed jobs (7 days), so the pruner a worker starts has nothing to
# delete. (Finish times one second apart, as before, put 40 % of a million past it: the
# pruner deleted 20 000 of them while the drain was measured.)
RETAINED_SPAN = 6 * 86_400.0


def fill(table: Table, rows: int) -> None:
    """Insert `rows` completed jobs (as a retention window would keep them: all finished
    within `RETAINED_SPAN`)."""
    now = time.time()
    step = RETAINED_SPAN / rows
    if table.url.startswith("sqlite"):
        table._sqlite.execute(
            f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
            INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                created_at, available_at, type, max_attempts, finished_at)
            SELECT 'old-' || i, 'default', 'completed', X'7b7d', 'json', 0, 1,
                {now} - i * {step}, {now} - i * {step}, 'noop-old', 3, {now} - i * {step}
            FROM n"""
        )
        table._sqlite.commit()
        table._sqlite.execute("ANALYZE")
        return
    table._pg.execute(
        f"""INSERT INTO {table._name} (id, queue, state, body, content_type, priority, attempts,
            created_at, available_at, type, max_attempts, finished_at)
        SELECT 'old-' || i, 'default', 'completed', '\\x7b7d'::bytea, 'json', 0, 1,
            {now} - i * {step}, {now} - i * {step}, 'noop-old', 3, {now} - i * {step}
        FROM generate_series(1, {rows}) AS i"""  # type: ignore[arg-type]
    )
    table._pg.execute(f"ANALYZE {table._name}")  # type: ignore[arg-type]


def memory_run(backend: str, jobs: int) -> dict[str, Any]:
    """One worker's resident memory while it drains `jobs` jobs."""
    with database(backend) as (url, tag):
        enqueue(tagged(url, tag, "_p"), "noop", jobs)
        table = Table(url)
        [proc] = start_workers(url, 1, "default", 100)
        samples: list[int] = []
        try:
            while True:
                done = table.completed("noop")
                if done >= jobs // 10:
                    samples.append(rss_of(proc.pid))
                if done >= jobs:
                    break
                check_workers("the memory drain")
                time.sleep(1.0)
        finally:
            stop([proc])
            table.close()
    return {
        "jobs": jobs,
        "rss_first_mb": samples[0] / 2**20,
        "rss_min_mb": min(samples) / 2**20,
        "rss_max_mb": max(samples) / 2**20,
        "rss_last_mb": samples[-1] / 2**20,
        "load": load(),
    }


def enqueue_run(backend: str, jobs: int) -> dict[str, Any]:
    """`enqueue_many` of `jobs` jobs in tenths: the rate of each tenth, and the CPU per
    job it cost this process (SQLite's statements included) and the PostgreSQL server's
    backend [µs]."""
    import asyncio

    rates: list[float] = []
    cpu: list[float] = []
    with database(backend) as (url, tag):

        async def run() -> None:
            app = App(url)
            app.job("noop")(lambda payload: None)
            tenth = jobs // 10
            for part in range(10):
                payloads = [{"i": part * tenth + i} for i in range(tenth)]
                server0, cpu0, t0 = server_cpu(tag), time.process_time(), time.perf_counter()
                await app.enqueue_many("noop", payloads)
                rates.append(tenth / (time.perf_counter() - t0))
                spent = time.process_time() - cpu0 + server_cpu(tag) - server0
                cpu.append(1e6 * spent / tenth)
            await app.close()

        asyncio.run(run())
    return {"jobs": jobs, "rates": rates, "cpu_us": cpu, "load": load()}


def processes_section(args: argparse.Namespace, say: Any) -> None:
    """1, 2 and 4 worker processes on PostgreSQL, `--rounds` rounds."""
    say("## More worker processes (PostgreSQL)")
    say("")
    say(
        f"{args.rounds} round(s); each round drains {args.jobs:,} jobs with 1, 2 and 4"
        " processes, the order turned by one each round so the machine's drift hits"
        " every count alike. A round's ratio is over that round's 1-process figure."
    )
    say("")
    say(
        "| round | worker processes | jobs/s | jobs per worker CPU-second | vs 1 process | "
        "database CPU per job | every job once | load |"
    )
    say("|---|---|---|---|---|---|---|---|")
    counts = (1, 2, 4)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    ratios: dict[int, list[float]] = {n: [] for n in counts}
    for i in range(args.rounds):
        order = counts[i % 3 :] + counts[: i % 3]
        got = {n: drain_run("postgres", n, args.jobs) for n in order}
        base = got[1]["jobs_per_worker_cpu_s"]
        for n in counts:
            r = got[n]
            runs[n].append(r)
            ratios[n].append(r["jobs_per_worker_cpu_s"] / base)
            say(
                f"| {i + 1} | {n} | {r['rate']:,.0f} | {r['jobs_per_worker_cpu_s']:,.0f} | "
                f"{ratios[n][-1]:.2f}x | {r['db_cpu_us_per_job']:.0f} µs | "
                f"{'yes' if r['exactly_once'] else '**no**'} | {r['load']} |"
            )
    say("")
    if args.rounds > 1:
        med = statistics.median
        first = med(r["jobs_per_worker_cpu_s"] for r in runs[1])
        say(
            "| worker processes | jobs per worker CPU-second, median | vs 1 process "
            "(of the medians / median of the rounds' ratios) | database CPU per job, "
            "median |"
        )
        say("|---|---|---|---|")
        for n in counts:
            mine = med(r["jobs_per_worker_cpu_s"] for r in runs[n])
            db = med(r["db_cpu_us_per_job"] for r in runs[n])
            say(
                f"| {n} | {mine:,.0f} | {mine / first:.2f}x / {med(ratios[n]):.2f}x | {db:.0f} µs |"
            )
        say("")


def retained_section(args: argparse.Namespace, backends: list[str], say: Any) -> None:
    """The drain on an empty table against one beside `--retained` completed jobs."""
    say(f"## Drain beside {args.retained:,} retained completed jobs")
    say("")
    say(
        f"{args.rounds} round(s) of an empty-table drain then a retained-table drain of "
        f"{args.jobs:,} jobs; medians. Worker CPU per job: the worker process's user + "
        "system time (SQLite runs its statements there) over the drain, divided by the "
        "jobs; PostgreSQL's statements run in its server: database CPU per job beside it."
    )
    say("")
    say(
        "| backend | empty table jobs/s | with retained jobs/s | rate ratio | "
        "worker CPU per job, empty → retained | CPU ratio | database CPU per job | "
        "load (last pair) |"
    )
    say("|---|---|---|---|---|---|---|---|")
    for backend in backends:
        empties, fulls = [], []
        for _ in range(args.rounds):
            empties.append(drain_run(backend, 1, args.jobs))
            fulls.append(drain_run(backend, 1, args.jobs, retained=args.retained))
        rate_e = median(r["rate"] for r in empties)
        rate_f = median(r["rate"] for r in fulls)
        cpu_e = median(r["worker_cpu_us_per_job"] for r in empties)
        cpu_f = median(r["worker_cpu_us_per_job"] for r in fulls)
        db_e = median(r["db_cpu_us_per_job"] for r in empties)
        db_f = median(r["db_cpu_us_per_job"] for r in fulls)
        db = f"{db_e:.0f} → {db_f:.0f} µs" if backend == "postgres" else "—"
        say(
            f"| {backend} | {rate_e:,.0f} | {rate_f:,.0f} | {rate_f / rate_e:.2f}x | "
            f"{cpu_e:.0f} → {cpu_f:.0f} µs | {cpu_f / cpu_e:.2f}x | {db} | "
            f"{empties[-1]['load']} / {fulls[-1]['load']} |"
        )
    say("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--retained", type=int, default=1_000_000)
    parser.add_argument("--memory-jobs", type=int, default=1_000_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="processes: rounds of 1, 2, 4; retained: pairs"
    )
    parser.add_argument("--only", default="processes,naps,retained,memory,enqueue")
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--out", default=str(BENCH_DIR / "RESULTS-scale.md"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    backends = [b for b in args.backends.split(",") if b]
    started = time.time()
    lines = [
        "# taskflare at scale",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/scale.py "
        f"{' '.join(sys.argv[1:])}`; {os.cpu_count()} CPUs. The load average is printed "
        "beside each figure: on a loaded machine rates fall, CPU per job moves less.",
        "",
    ]

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    if "processes" in only:
        processes_section(args, say)
    if "naps" in only:
        say("## Concurrency is real: 20 000 jobs sleeping 10 ms, `--concurrency 50`")
        say("")
        say(
            "Enqueued first; the rate runs from the first claim to the last finish on the"
            " database's clock. Worker CPU includes its start-up."
        )
        say("")
        for backend in backends:
            r = naps_run(backend, 20_000, 50)
            say(
                f"- {backend}: {r['rate']:,.0f} jobs/s = {r['rate'] / 5000:.0%} of the ideal "
                f"5 000/s; worker CPU {r['worker_cpu_us_per_job']:.0f} µs per job "
                f"(load {r['load']})"
            )
        say("")
    if "retained" in only:
        retained_section(args, backends, say)
    if "memory" in only:
        say(f"## One worker's memory while it drains {args.memory_jobs:,} jobs")
        say("")
        for backend in backends:
            r = memory_run(backend, args.memory_jobs)
            say(
                f"- {backend}: RSS first {r['rss_first_mb']:.1f} MB, min {r['rss_min_mb']:.1f}, "
                f"max {r['rss_max_mb']:.1f}, last {r['rss_last_mb']:.1f} "
                f"(max/first {r['rss_max_mb'] / r['rss_first_mb']:.2f}; load {r['load']})"
            )
        say("")
    if "enqueue" in only:
        say(f"## Enqueueing {args.memory_jobs:,} jobs with `enqueue_many`, each tenth's rate")
        say("")
        for backend in backends:
            r = enqueue_run(backend, args.memory_jobs)
            rates = ", ".join(f"{x:,.0f}" for x in r["rates"])
            cpu = ", ".join(f"{x:.1f}" for x in r["cpu_us"])
            say(
                f"- {backend}: {rates} jobs/s (last/first {r['rates'][-1] / r['rates'][0]:.2f}); "
                f"CPU per job (this process + database server) {cpu} µs (last/first "
                f"{r['cpu_us'][-1] / r['cpu_us'][0]:.2f}); load {r['load']}"
            )
        say("")
    lines.append(f"The run took {(time.time() - started) / 60:.1f} min.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
