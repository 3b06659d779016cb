"""The PostgreSQL server's CPU per job for a job drain's own statements, replayed alone.

    python benchmarks/drain_replay.py [--jobs 20000] [--claim 100] [--group 100]
                                      [--rounds 3] [--variant NAME ...]

Migrates a fresh schema, enqueues `--jobs` no-op jobs with `enqueue_many`, then runs the
worker's statements on one connection with no worker: the claim (`claim_expected_settings`
and `message_claim_expected` in one transaction, `--claim` jobs a claim) and the settle of
completed jobs (`settle_completes` with their attempt rows, `--group` jobs a statement),
and prints the server backend's CPU per job for each (`/proc/<pid>/schedstat`, ns).
A variant changes one thing before the drain, to price it: `drop:<index>` drops an
index, `no-attempts` settles without attempt rows, `settle:<file>` settles with the
statement in a file, `unlisted-leases` and `lean` rebuild the indexes (see VARIANTS);
`base` is the schema as it is. `--analyze` runs ANALYZE before the drain, as a worker
does after a burst. Each round runs every variant in turn on a fresh schema. The client
figure is this script's own CPU: a bare psycopg loop, taskflare's worker excluded.
Nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from taskflare import App
from taskflare.backends.postgres.arrays import adapt_arrays
from taskflare.backends.postgres.backend import _statements

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# Schema variants, run after the enqueue (a few indexes rebuilt: 20 000 rows).
VARIANTS = {
    # The jobs list's, the queue counts' and the batch's indexes without leased rows: a
    # claim then adds entries to the primary key and the two leased indexes only.
    "unlisted-leases": """
        DROP INDEX {schema}.messages_jobs_created_idx;
        CREATE INDEX messages_jobs_created_idx ON {schema}.messages (created_at, id)
            WHERE type IS NOT NULL AND state <> 'leased';
        DROP INDEX {schema}.messages_jobs_state_created_idx;
        CREATE INDEX messages_jobs_state_created_idx
            ON {schema}.messages (state, created_at, id) INCLUDE (type)
            WHERE type IS NOT NULL AND state <> 'leased';
        DROP INDEX {schema}.messages_jobs_type_created_idx;
        CREATE INDEX messages_jobs_type_created_idx ON {schema}.messages (type, created_at, id)
            WHERE type IS NOT NULL AND state <> 'leased';
        DROP INDEX {schema}.messages_queue_state_idx;
        CREATE INDEX messages_queue_state_idx ON {schema}.messages (queue, state, created_at)
            WHERE state NOT IN ('ready', 'leased');
        DROP INDEX {schema}.messages_batch_state_idx;
        CREATE INDEX messages_batch_state_idx ON {schema}.messages (batch_id, state)
            WHERE batch_id IS NOT NULL AND state <> 'leased';
    """,
    # Only what a claim and a rescue need (primary key, ready and leased rows): no jobs
    # list, queue counts, batch counts or prune index, attempts without a primary key.
    "lean": """
        DROP INDEX {schema}.messages_jobs_created_idx;
        DROP INDEX {schema}.messages_jobs_state_created_idx;
        DROP INDEX {schema}.messages_jobs_type_created_idx;
        DROP INDEX {schema}.messages_queue_state_idx;
        DROP INDEX {schema}.messages_batch_state_idx;
        DROP INDEX {schema}.messages_finished_idx;
        DROP INDEX {schema}.messages_lease_id_idx;
        DROP INDEX {schema}.messages_ready_created_idx;
        ALTER TABLE {schema}.job_attempts DROP CONSTRAINT job_attempts_pkey;
    """,
}


def _statements_of(text: str, schema: str) -> str:
    from taskflare.backends.postgres import backend

    return (
        text.replace("{schema}", f'"{schema}"')
        .replace("{now}", backend._NOW)
        .replace("{stmt_now}", backend._STMT_NOW)
    )


def backend_ns(pid: int) -> int:
    """CPU time of one server process so far [ns]."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def setup(schema: str, jobs: int) -> None:
    app = App(f"{SERVER_URL}?schema={schema}")

    @app.job("noop")
    async def noop(payload: Any) -> None:
        return None

    try:
        await app.backend()
        await app.enqueue_many("noop", list(range(jobs)))
    finally:
        await app.close()


def run(
    schema: str, jobs: int, claim: int, group: int, variant: str, analyze: bool
) -> dict[str, float]:
    sql = _statements(schema)
    channel = f"taskflare_{schema}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")  # type: ignore[arg-type]
        if variant.startswith("settle:"):  # the settle statement from a file
            raw = Path(variant[7:]).read_text()
            sql["settle_completes"] = _statements_of(raw, schema)
        if analyze:  # as a worker does once a burst left the statistics behind
            conn.execute(f'ANALYZE "{schema}".messages')  # type: ignore[arg-type]
        if variant in VARIANTS:
            conn.execute(_statements_of(VARIANTS[variant], schema))  # type: ignore[arg-type]
        if variant.startswith("drop:"):
            conn.execute(f'DROP INDEX "{schema}".{variant[5:]}')  # type: ignore[arg-type]
        conn.execute("SET plan_cache_mode = force_custom_plan")
        conn.execute("SET jit = off")
        pid = conn.info.backend_pid
        claim_ns = settle_ns = 0
        done = 0
        pending: list[tuple[str, str, int]] = []
        client0 = time.process_time()

        def settle(batch: list[tuple[str, str, int]]) -> int:
            now = time.time()
            attempts = [] if variant == "no-attempts" else batch
            values = adapt_arrays(
                {
                    "complete_ids": [b[0] for b in batch],
                    "complete_leases": [b[1] for b in batch],
                    "complete_results": [b"null"] * len(batch),
                    "attempt_jobs": [a[0] for a in attempts],
                    "attempt_numbers": [a[2] for a in attempts],
                    "attempt_workers": ["w1"] * len(attempts),
                    "attempt_starts": [now] * len(attempts),
                    "attempt_ends": [now] * len(attempts),
                    "attempt_outcomes": ["completed"] * len(attempts),
                    "attempt_errors": [None] * len(attempts),
                    "attempt_tracebacks": [None] * len(attempts),
                    "channel": channel,
                }
            )
            t0 = backend_ns(pid)
            rows = conn.execute(sql["settle_completes"], values, prepare=True).fetchall()
            spent = backend_ns(pid) - t0
            assert len(rows) == len(batch) + 1, (len(rows), len(batch))
            return spent

        while done < jobs:
            lease = uuid.uuid4().hex
            values = adapt_arrays(
                {
                    "queue": "default",
                    "limit": claim,
                    "lease_id": lease,
                    "owner": "w1",
                    "visibility_timeout": 60.0,
                    "types": ["noop"],
                    "channel": channel,
                }
            )
            t0 = backend_ns(pid)
            with conn.pipeline():
                conn.execute("BEGIN", prepare=False)
                conn.execute(sql["claim_expected_settings"], prepare=True)
                cur = conn.execute(sql["message_claim_expected"], values, prepare=True)
                conn.execute("COMMIT", prepare=False)
            rows = cur.fetchall()
            claim_ns += backend_ns(pid) - t0
            if not rows:
                break
            done += len(rows)
            pending += [(r[0], r[7], r[4]) for r in rows]
            while len(pending) >= group:
                settle_ns += settle(pending[:group])
                pending = pending[group:]
        if pending:
            settle_ns += settle(pending)
        client = time.process_time() - client0
    assert done == jobs, (done, jobs)
    return {
        "claim": claim_ns / 1e3 / jobs,
        "settle": settle_ns / 1e3 / jobs,
        "total": (claim_ns + settle_ns) / 1e3 / jobs,
        "client": client * 1e6 / jobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--claim", type=int, default=100)
    parser.add_argument("--group", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--analyze", action="store_true", help="ANALYZE after the enqueue")
    args = parser.parse_args()
    variants = args.variant or ["base"]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for variant in variants:
            schema = f"replay_{uuid.uuid4().hex[:10]}"
            try:
                asyncio.run(setup(schema, args.jobs))
                res = run(schema, args.jobs, args.claim, args.group, variant, args.analyze)
            finally:
                with psycopg.connect(SERVER_URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
            results[variant].append(res)
            load = os.getloadavg()[0]
            print(
                f"round {r + 1} {variant:<36} claim {res['claim']:5.1f}"
                f"  settle {res['settle']:5.1f}  server {res['total']:5.1f} µs/job"
                f"  client {res['client']:5.1f}  (load {load:.1f})",
                file=sys.stderr,
            )
    print("\nmedians, server µs per job: variant | claim | settle | total")
    for variant, rs in results.items():
        med = {k: statistics.median(x[k] for x in rs) for k in ("claim", "settle", "total")}
        print(f"| {variant} | {med['claim']:.1f} | {med['settle']:.1f} | {med['total']:.1f} |")


if __name__ == "__main__":
    main()
