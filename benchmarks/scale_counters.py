"""Per-process counters of `scale.py`'s processes drain: what each of N worker processes
does per job, and what their server processes wait for.

    python benchmarks/scale_counters.py [--processes 1,4] [--jobs 20000]

Each worker process (`scale_counters_app`) counts its claims (rows, empty and short
ones), settle statements (rows), the notifications it hears (new work, job ends,
cancels) and the wake-ups of its event loop (those by a notification alone apart); the
driver samples `pg_stat_activity` of their server processes every 10 ms (what they
wait for, by statement) and reads the ready index's counters (entries read and rows
fetched per claim: what SKIP LOCKED passes). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import scale

SAMPLE = """SELECT coalesce(wait_event_type || ':' || wait_event, 'running'),
    CASE WHEN query LIKE '%%candidates%%' THEN 'claim' WHEN query LIKE '%%complete%%'
         THEN 'settle' ELSE 'other' END
FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"""


def sample(tag: str, stop: threading.Event, waits: Counter[str]) -> None:
    with psycopg.connect(scale.SERVER_URL, autocommit=True) as conn:
        while not stop.is_set():
            waits["samples"] += 1
            for wait, statement in conn.execute(SAMPLE, [tag]):  # type: ignore[arg-type]
                waits[f"{statement} {wait}"] += 1
            time.sleep(0.01)


def run(n: int, jobs: int, out_dir: str) -> None:
    out = f"{out_dir}/run{n}"
    with scale.database("postgres") as (url, tag):
        scale.enqueue(scale.tagged(url, tag, "_p"), "noop", 1)
        table = scale.Table(url)
        schema = url.split("schema=")[1].split("&")[0]
        os.environ["SCALE_COUNTERS_OUT"] = out
        procs = scale.start_workers(url, n, "default", 100, app="scale_counters_app:app")
        waits: Counter[str] = Counter()
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(tag, stop, waits))
        try:
            scale.ready_workers(table, n)
            scale.wait_for(lambda: not table.busy("default"), "the first job")
            for proc in procs:
                os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.2)
            cpu0, db0 = sum(scale.cpu_of(p.pid) for p in procs), scale.server_cpu(tag)
            sampler.start()
            scale.enqueue(scale.tagged(url, tag, "_p"), "noop", jobs)
            scale.wait_for(lambda: not table.busy("default"), "the drain", every=0.05)
            stop.set()
            sampler.join()
            cpu = sum(scale.cpu_of(p.pid) for p in procs) - cpu0
            db = scale.server_cpu(tag) - db0
            for proc in procs:
                os.kill(proc.pid, signal.SIGUSR2)
            time.sleep(2.0)  # the counters written, the server's index counters flushed
            read, fetched = table._pg.execute(
                "SELECT idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes"
                " WHERE schemaname = %s AND indexrelname = 'messages_ready_idx'",
                [schema],
            ).fetchone() or (0, 0)
        finally:
            scale.stop(procs)
            table.close()
    print(
        f"## {n} processes, {jobs:,} jobs: worker CPU {1e6 * cpu / jobs:.1f} µs/job, "
        f"database {1e6 * db / jobs:.1f} µs/job; load {scale.load()}"
    )
    counts = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob(f"run{n}.*.json"))]
    claims = sum(c.get("claims", 0) for c in counts) or 1
    print(f"ready index per claim: {read / claims:.0f} entries read, {fetched / claims:.0f} rows")
    for c in counts:
        done = max(c.get("claim_rows", 0), 1)
        claims_n, settles_n = max(c.get("claims", 0), 1), max(c.get("settles", 0), 1)
        print(
            f"- claims {c.get('claims', 0)} of {c.get('claim_rows', 0) / claims_n:.1f}"
            f" (limit {c.get('claim_limit', 0) / claims_n:.0f}), empty"
            f" {c.get('claims_empty', 0)}, short {c.get('claims_short', 0)}; settles"
            f" {c.get('settles', 0)} of {c.get('settle_rows', 0) / settles_n:.0f};"
            f" heard ready {c.get('heard_ready', 0)}, done {c.get('heard_done', 0)}, cancel"
            f" {c.get('heard_cancel', 0)}; blocking waits {c.get('blocking_waits', 0) / done:.3f}"
            f" a job ({c.get('woken_by_notification_alone', 0) / done:.3f} woken by a"
            f" notification alone); CPU {1000 * c.get('cpu_ms', 0) / done:.0f} µs/job"
        )
    every = waits.pop("samples", 1)
    print("server processes, average number per sample:")
    for what, count in waits.most_common():
        if count / every >= 0.005:
            print(f"  {what}: {count / every:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,4")
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskflare-counters-") as out_dir:
        for n in map(int, args.processes.split(",")):
            run(n, args.jobs, out_dir)


if __name__ == "__main__":
    main()
