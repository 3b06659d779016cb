"""The storage floor: peerbench's hand-written single-process queue loops ("physical limits").

    python -m peers.physical <out.json>    (engine from `$PB_DATABASE_URL`)

A bare table (integer key, state, JSON payload, a partial index on ready rows). Insert in
batches of 100, one commit each; then claim 100 (`UPDATE ... WHERE id IN (SELECT ... LIMIT
100 [FOR UPDATE SKIP LOCKED]) RETURNING id`) and delete them, one commit each, until empty.
SQLite: WAL, synchronous FULL (taskflare's default). Each loop stops after CAP seconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time

SCALE = float(os.environ.get("PB_SCALE", "1"))
N = max(1_000, round(20_000 * SCALE))
BATCH = 100
CAP = 30.0

CREATE = (
    "CREATE TABLE jobs (id {key} PRIMARY KEY, state text NOT NULL DEFAULT 'ready', payload {json})"
)
INDEX = "CREATE INDEX jobs_ready ON jobs (id) WHERE state = 'ready'"
CLAIM = (
    "UPDATE jobs SET state = 'running' WHERE id IN (SELECT id FROM jobs WHERE state = 'ready'"
    " ORDER BY id LIMIT {limit}{lock}) RETURNING id"
)


def rate(n: int, t0: float) -> float:
    return n / (time.perf_counter() - t0)


def postgres(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(CREATE.format(key="bigserial", json="jsonb"))  # type: ignore[arg-type]
        c.execute(INDEX)
        t0, done = time.perf_counter(), 0
        while done < N and time.perf_counter() - t0 < CAP:  # one INSERT (one commit) a batch
            c.execute(
                "INSERT INTO jobs (payload) SELECT jsonb_build_object('i', x)"
                " FROM unnest(%s::int[]) x",
                (list(range(done, done + BATCH)),),
            )
            done += BATCH
        inserted = rate(done, t0)
        claim = CLAIM.format(limit="%s", lock=" FOR UPDATE SKIP LOCKED")
        t0, got = time.perf_counter(), 0
        while time.perf_counter() - t0 < CAP:
            ids = [r[0] for r in c.execute(claim, (BATCH,))]  # type: ignore[arg-type]
            if not ids:
                break
            c.execute("DELETE FROM jobs WHERE id = ANY(%s)", (ids,))
            got += len(ids)
        return {"insert_jobs_s": inserted, "claim_ack_jobs_s": rate(got, t0), "n": done}


def sqlite(path: str) -> dict[str, float]:
    c = sqlite3.connect(path, isolation_level=None)  # autocommit: a statement is a transaction
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute(CREATE.format(key="INTEGER", json="TEXT"))
    c.execute(INDEX)
    t0, done = time.perf_counter(), 0
    while done < N and time.perf_counter() - t0 < CAP:
        c.execute("BEGIN")
        c.executemany(
            "INSERT INTO jobs (payload) VALUES (?)",
            [(f'{{"i": {i}}}',) for i in range(done, done + BATCH)],
        )
        c.execute("COMMIT")
        done += BATCH
    inserted = rate(done, t0)
    claim = CLAIM.format(limit="?", lock="")
    t0, got = time.perf_counter(), 0
    while time.perf_counter() - t0 < CAP:
        ids = [r[0] for r in c.execute(claim, (BATCH,)).fetchall()]
        if not ids:
            break
        c.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids)
        got += len(ids)
    c.close()
    return {"insert_jobs_s": inserted, "claim_ack_jobs_s": rate(got, t0), "n": done}


def main() -> None:
    url = os.environ["PB_DATABASE_URL"]
    result = sqlite(url.removeprefix("sqlite:///")) if url.startswith("sqlite") else postgres(url)
    with open(sys.argv[1], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
