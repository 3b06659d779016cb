"""What flow control costs: job drain with limits beside the same drain without, in one run.

    python benchmarks/flow.py [--jobs 3000] [--rounds 2] [--out benchmarks/RESULTS-flow.md]

Scenarios, each on a fresh database (a new SQLite file; a new PostgreSQL schema on
$BENCH_POSTGRES_URL's server), one `taskflare worker` process with default settings:

- `none`: a no-op job type without limits (the plain claim);
- `unreached`: the same type with a rate limit and a max_concurrency it never reaches
  (`rate_limit="1000000/s"`, `max_concurrency=10000`): every claim takes the limited
  path but no job ever waits;
- `keys-none`: 1 000 distinct tenant keys in the payload, no limit;
- `keys-limited`: the same with a per-key rate limit and a per-key concurrency limit
  (`RateLimit("100/s", key=tenant)`, `Concurrency(2, key=tenant)`): 1 000 token buckets
  and per-key slots, all in play.

The jobs are enqueued while the queue is paused; the worker starts, and once it is up
the queue is resumed, so the CPU it spends is the drain's alone. Two measures:

- rate: jobs / (last finish - first start), from the jobs' own timestamps;
- CPU per job: the worker process's CPU time (user + system, from /proc) over the drain,
  plus, on PostgreSQL, that of the server processes serving its connections (found by
  the application name the worker connects with). Unlike the rate, CPU time hardly
  depends on what else the machine is doing, so it is the figure to trust on a shared
  machine.

Rounds interleave the scenarios so a busy machine slows them alike; the report gives
medians, the ratios of each limited drain to its unlimited twin, every run, and the
load average at each run's start. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
SCENARIOS = ("none", "unreached", "keys-none", "keys-limited")
KEYS = 1000
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One drain: its rate [jobs/s], CPU per job [µs] of the worker and of the database
    server processes serving it, and the load average when it started."""

    rate: float
    worker_us: float
    db_us: float
    load: str

    @property
    def cpu_us(self) -> float:
        """Worker and database CPU per job [µs]."""
        return self.worker_us + self.db_us


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far [s] (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_pids(application_name: str) -> list[int]:
    """The PostgreSQL server processes of connections made with this application name."""
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return [int(r[0]) for r in rows]


APP = """
import os
from taskflare import App, Concurrency, RateLimit

app = App(os.environ["BENCH_URL"])
scenario = os.environ["BENCH_SCENARIO"]
options = {}
if scenario == "unreached":
    options = {"rate_limit": "1000000/s", "max_concurrency": 10000}
elif scenario == "keys-limited":
    options = {
        "rate_limit": RateLimit("100/s", key=lambda p: p["tenant"]),
        "concurrency": Concurrency(2, key=lambda p: p["tenant"]),
    }


@app.job("noop", **options)
async def noop(payload):
    return None
"""


@contextlib.contextmanager
def fresh_url(backend: str, folder: Path) -> Iterator[str]:
    """A fresh database URL for one drain (dropped afterwards on PostgreSQL)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}"
        return
    import psycopg

    schema = f"tf_flow_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{SERVER_URL}?schema={schema}"
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def drain(backend: str, scenario: str, jobs: int, folder: Path) -> Run:
    """Enqueue `jobs` on a paused queue, start one worker, resume, wait until all are
    completed; the drain's rate and CPU per job."""
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    sys.path.insert(0, str(folder))
    tag = f"taskflare-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_SCENARIO": scenario, "PGAPPNAME": tag}
    with fresh_url(backend, folder) as url:
        env["BENCH_URL"] = url
        os.environ.update({"BENCH_URL": url, "BENCH_SCENARIO": scenario})
        from taskflare import App, Concurrency, RateLimit

        app = App(url)
        options: dict[str, object] = {}
        if scenario == "unreached":
            options = {"rate_limit": "1000000/s", "max_concurrency": 10000}
        elif scenario == "keys-limited":
            options = {
                "rate_limit": RateLimit("100/s", key=lambda p: p["tenant"]),
                "concurrency": Concurrency(2, key=lambda p: p["tenant"]),
            }
        app.job("noop", **options)(lambda p: None)  # type: ignore[arg-type]
        queue = app.get_queue(app.registry.job_types["noop"].queue)
        keyed = scenario.startswith("keys")
        payloads = [{"tenant": f"t{i % KEYS}"} if keyed else {"n": i} for i in range(jobs)]
        app.run_sync(queue.pause())
        app.enqueue_many_sync("noop", payloads)
        # Gather the planner statistics now, as the worker's start-up check would: done
        # there, the ANALYZE sometimes fell inside the measured window and sometimes not.
        app.run_sync(refresh_statistics(app))
        worker = subprocess.Popen(
            [TASKFLARE, "worker", f"{folder / 'flow_app.py'}:app", "--log-level", "info"],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_started(worker)
            pids = server_pids(tag) if backend == "postgres" else []
            before = cpu_seconds(worker.pid), sum(cpu_seconds(p) for p in pids)
            app.run_sync(queue.resume())
            deadline = time.monotonic() + 600
            while app.run_sync(app.read.job_stats())["completed"] < jobs:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"{backend} {scenario}: the drain did not finish")
                time.sleep(0.05)
            pids = server_pids(tag) if backend == "postgres" else []
            after = cpu_seconds(worker.pid), sum(cpu_seconds(p) for p in pids)
        finally:
            worker.terminate()
            worker.wait(30)
        starts, ends = [], []
        cursor = None
        while True:
            page = app.list_jobs_sync(limit=1000, cursor=cursor)
            for job in page.jobs:
                assert job.started_at is not None and job.completed_at is not None
                starts.append(job.started_at.timestamp())
                ends.append(job.completed_at.timestamp())
            cursor = page.next_cursor
            if cursor is None:
                break
        app.close_sync()
        return Run(
            rate=jobs / (max(ends) - min(starts)),
            worker_us=1e6 * (after[0] - before[0]) / jobs,
            db_us=1e6 * (after[1] - before[1]) / jobs,
            load=load,
        )


async def refresh_statistics(app: object) -> None:
    """The backend's own statistics refresh (an ANALYZE of a fresh, filled table)."""
    backend = await app.backend()  # type: ignore[attr-defined]
    await backend.refresh_statistics()


def wait_started(worker: subprocess.Popen[str]) -> None:
    """Block until the worker logs that it started (its connections are then open);
    the rest of its log is read and dropped in a thread so the pipe never fills."""
    assert worker.stderr is not None
    for line in worker.stderr:
        if " started on " in line:
            break
    else:
        raise RuntimeError("the worker stopped before it started")
    threading.Thread(target=worker.stderr.read, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--out", default=str(BENCH_DIR / "RESULTS-flow.md"))
    args = parser.parse_args()
    backends = args.backends.split(",")
    results: dict[tuple[str, str], list[Run]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "flow_app.py").write_text(APP)
        for n in range(args.rounds):
            order = SCENARIOS if n % 2 == 0 else tuple(reversed(SCENARIOS))
            for backend in backends:
                for scenario in order:
                    run = drain(backend, scenario, args.jobs, folder)
                    results.setdefault((backend, scenario), []).append(run)
                    print(
                        f"round {n + 1} {backend} {scenario}: {run.rate:,.0f} jobs/s,"
                        f" CPU/job {run.worker_us:.0f} µs worker + {run.db_us:.0f} µs database"
                        f" (load {run.load})",
                        flush=True,
                    )
    took = time.monotonic() - started
    write_report(Path(args.out), results, args, took)


PAIRS = (("none", "unreached"), ("keys-none", "keys-limited"))


def write_report(
    out: Path,
    results: dict[tuple[str, str], list[Run]],
    args: argparse.Namespace,
    took: float,
) -> None:
    """The Markdown report: medians, ratios, every run, the machine's load."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = [r.load for runs in results.values() for r in runs]
    median = statistics.median
    lines = [
        "# Flow control: what limits cost",
        "",
        f"Measured {now} by `benchmarks/flow.py --jobs {args.jobs} --rounds {args.rounds}"
        + ("" if args.backends == "postgres,sqlite" else f" --backends {args.backends}")
        + "`"
        f" ({took / 60:.1f} min). Machine: {os.cpu_count()} CPUs, {platform.platform()},"
        f" Python {platform.python_version()}. Load averages from {min(loads)} to"
        f" {max(loads)} at the runs' starts (every run below). A drain lasts about a"
        " second, so absolute rates are noisy: read the ratios, taken side by side in the"
        " same rounds, and above all CPU per job, which hardly depends on the load.",
        "",
        "Goals: a limit never reached costs at most 10 % (ratio ≥ 0.90); with 1 000 keys"
        " and a per-key limit the drain keeps at least half the unlimited rate"
        " (ratio ≥ 0.50). The CPU ratio is the unlimited drain's CPU per job over the"
        " limited one's (so, like the rate ratio, 1.00 means no cost). Ratios: of the"
        " medians; paired: the median of each round's own ratio (the two drains of a pair"
        " run back to back, so a change in the machine's load mostly hits both).",
        "",
        "| backend | scenario | jobs/s | ratio | paired ratio |"
        " CPU µs/job (worker + database) | CPU ratio | paired CPU ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend in sorted({b for b, _ in results}):
        for base, limited in PAIRS:
            if (backend, base) not in results or (backend, limited) not in results:
                continue
            b_runs, l_runs = results[(backend, base)], results[(backend, limited)]
            b_rate, l_rate = median(r.rate for r in b_runs), median(r.rate for r in l_runs)
            b_cpu, l_cpu = median(r.cpu_us for r in b_runs), median(r.cpu_us for r in l_runs)
            # Each round ran the pair back to back: the median of the rounds' own ratios
            # cancels what the machine's load did to both.
            pairs = list(zip(b_runs, l_runs, strict=True))
            paired = median(lr.rate / br.rate for br, lr in pairs)
            paired_cpu = median(br.cpu_us / lr.cpu_us for br, lr in pairs)
            for name, runs, rate, cpu in (
                (base, b_runs, b_rate, b_cpu),
                (limited, l_runs, l_rate, l_cpu),
            ):
                w, d = median(r.worker_us for r in runs), median(r.db_us for r in runs)
                last = name == limited
                ratio = f"{l_rate / b_rate:.2f}" if last else ""
                cpu_ratio = f"{b_cpu / l_cpu:.2f}" if last else ""
                pair = f"**{paired:.2f}**" if last else ""
                pair_cpu = f"**{paired_cpu:.2f}**" if last else ""
                lines.append(
                    f"| {backend} | {name} | {rate:,.0f} | {ratio} | {pair} |"
                    f" {cpu:,.0f} ({w:,.0f} + {d:,.0f}) | {cpu_ratio} | {pair_cpu} |"
                )
    lines += [
        "",
        "Rates are medians over rounds, from the first start to the last finish; CPU per"
        " job is the median of each run's CPU time over the drain divided by the jobs"
        " (on SQLite the database works inside the worker process: all of it is the"
        " worker's).",
        "",
        "## Every run",
        "",
        "| backend | scenario | round | jobs/s | CPU µs/job worker | database | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    for (backend, scenario), runs in sorted(results.items()):
        for i, r in enumerate(runs):
            lines.append(
                f"| {backend} | {scenario} | {i + 1} | {r.rate:,.0f} | {r.worker_us:,.0f} |"
                f" {r.db_us:,.0f} | {r.load} |"
            )
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
