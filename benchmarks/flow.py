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

The rate is jobs / (last finish - first start), from the jobs' own timestamps. Rounds
interleave the scenarios so a busy machine slows them alike; the report gives medians
and the ratios of each limited drain to its unlimited twin. Nothing asserts on time.
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
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
SCENARIOS = ("none", "unreached", "keys-none", "keys-limited")
KEYS = 1000

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


def drain(backend: str, scenario: str, jobs: int, folder: Path) -> float:
    """Enqueue `jobs`, run one worker until all are completed; jobs per second."""
    sys.path.insert(0, str(folder))
    env = {**os.environ, "BENCH_SCENARIO": scenario}
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
        keyed = scenario.startswith("keys")
        payloads = [{"tenant": f"t{i % KEYS}"} if keyed else {"n": i} for i in range(jobs)]
        app.enqueue_many_sync("noop", payloads)
        worker = subprocess.Popen(
            [TASKFLARE, "worker", f"{folder / 'flow_app.py'}:app", "--log-level", "warning"],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 600
            while app.run_sync(app.read.job_stats())["completed"] < jobs:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"{backend} {scenario}: the drain did not finish")
                time.sleep(0.05)
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
        return jobs / (max(ends) - min(starts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--out", default=str(BENCH_DIR / "RESULTS-flow.md"))
    args = parser.parse_args()
    backends = args.backends.split(",")
    results: dict[tuple[str, str], list[float]] = {}
    loads = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "flow_app.py").write_text(APP)
        for n in range(args.rounds):
            loads.append(Path("/proc/loadavg").read_text().split()[:3])
            order = SCENARIOS if n % 2 == 0 else tuple(reversed(SCENARIOS))
            for backend in backends:
                for scenario in order:
                    rate = drain(backend, scenario, args.jobs, folder)
                    results.setdefault((backend, scenario), []).append(rate)
                    print(f"round {n + 1} {backend} {scenario}: {rate:,.0f} jobs/s", flush=True)
    took = time.monotonic() - started
    write_report(Path(args.out), results, args, loads, took)


def write_report(
    out: Path,
    results: dict[tuple[str, str], list[float]],
    args: argparse.Namespace,
    loads: list[list[str]],
    took: float,
) -> None:
    """The Markdown report: medians, ratios, every round, the machine's load."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Flow control: what limits cost",
        "",
        f"Measured {now} by `benchmarks/flow.py --jobs {args.jobs} --rounds {args.rounds}`"
        f" ({took / 60:.1f} min). Machine: {os.cpu_count()} CPUs, {platform.platform()},"
        f" Python {platform.python_version()}. **The machine was shared and loaded** (load"
        f" averages at each round's start: {'; '.join(' '.join(x) for x in loads)}), so"
        " absolute rates are noisy; read the ratios, taken side by side in the same rounds.",
        "",
        "| backend | no limit | limit never reached | ratio | 1 000 keys, no limit |"
        " 1 000 keys, per-key limits | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend in sorted({b for b, _ in results}):
        med = {s: statistics.median(results[(backend, s)]) for s in SCENARIOS}
        lines.append(
            f"| {backend} | {med['none']:,.0f} | {med['unreached']:,.0f} |"
            f" **{med['unreached'] / med['none']:.2f}** | {med['keys-none']:,.0f} |"
            f" {med['keys-limited']:,.0f} | **{med['keys-limited'] / med['keys-none']:.2f}** |"
        )
    lines += [
        "",
        "Rates in jobs/s (medians over rounds), from the first start to the last finish.",
        "Goals: a limit never reached costs at most 10 % (ratio ≥ 0.90); with 1 000 keys",
        "and a per-key limit the drain keeps at least half the unlimited rate (ratio ≥ 0.50).",
        "",
        "## Every round",
        "",
        "| backend | scenario | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " |",
        "|---|---|" + "---|" * args.rounds,
    ]
    for (backend, scenario), rates in sorted(results.items()):
        lines.append(f"| {backend} | {scenario} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
