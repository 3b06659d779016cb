"""How close a SQLite message drain can get to the floor loop, step by step, in one thread.

    python benchmarks/msg_drain_floor.py [--messages 30000] [--rounds 5]

What `compare.py`'s "message drain / floor, SQLite" ratio allows with taskflare's table,
measured without the worker (no event loop, no statement thread, no group commit): each
subject drains `--messages` messages, 100 a batch, in one Python thread on one connection
(WAL, `synchronous=FULL`), from a fresh copy of one database filled by `send_batch`:

- `floor`: the floor loop of `peers/physical.py` on its bare table (claim 100 with
  `UPDATE ... RETURNING id`, delete them; two durable commits a batch).
- `statements`: taskflare's own claim and ack statements on taskflare's migrated table,
  as the backend runs them (with its change-signal triggers): the claim's read and lease
  in one transaction that does not wait for the disk (`synchronous` toggled around it),
  the ack's primary-key delete in a durable one; no Python beyond reading the rows.
- `python`: `statements` plus the worker's per-batch Python for a no-op consumer: rows
  into `ClaimedMessage`s, `decode_batch` (bodies decoded, `Message`s built), the consumer
  reading each body, `settle_batch` (every message acked), and the ack's grouping by lease
  (`settle_acks`). The fastest a worker could be with this table and today's Python,
  had it no event loop and no thread hop.
- `lean`: the floor loop on a table shaped for plain messages only (integer key, queue,
  state, body, attempts, send time, availability, lease id and expiry; a partial index of
  ready rows in claim order and one of leased rows): what a separate message table would
  allow, with the same Python as `python`.

Printed per round: rate (wall) and CPU per message (this thread's clock), and the rate
as a share of the floor's in the same round; then medians. The subjects alternate order
every round. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from taskflare import App
from taskflare.backends.base import ClaimedMessage
from taskflare.backends.rows import Rows
from taskflare.backends.sqlite.backend import settle_acks
from taskflare.backends.sqlite.sql import SQL
from taskflare.worker.batch_runner import decode_batch, settle_batch

BATCH = 100


def fill(path: Path, n: int) -> None:
    async def run() -> None:
        app = App(f"sqlite:///{path}")
        queue = app.queue("noop", max_batch_size=BATCH, max_batch_timeout=0)

        @queue.consumer
        async def consume(batch: Any) -> None:
            pass

        await app.backend()
        for first in range(0, n, BATCH):
            await queue.send_batch([{"body": {"t": 0.0}} for _ in range(min(BATCH, n - first))])
        await app.close()

    asyncio.run(run())
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def floor(path: Path, n: int) -> int:
    conn = connect(path)
    conn.execute(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL DEFAULT 'ready', "
        "payload TEXT)"
    )
    conn.execute("CREATE INDEX jobs_ready ON jobs (id) WHERE state = 'ready'")
    for _ in range(0, n, BATCH):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO jobs (payload) VALUES (?)", [('{"t": 0.0}',)] * BATCH)
        conn.execute("COMMIT")
    claim = (
        "UPDATE jobs SET state = 'running' WHERE id IN (SELECT id FROM jobs WHERE "
        "state = 'ready' ORDER BY id LIMIT 100) RETURNING id"
    )

    def drain() -> int:
        got = 0
        while True:
            ids = [r[0] for r in conn.execute(claim).fetchall()]
            if not ids:
                return got
            conn.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids)
            got += len(ids)

    return timed(drain)


def taskflare_table(path: Path, *, python: bool) -> int:
    conn = connect(path)
    conn.create_function("tf_notify", 1, lambda topic: None, deterministic=False)
    conn.executescript(SQL["notify_triggers"])
    claim, lease, ack = (
        SQL["message_claim_many"],
        SQL["message_claim_lease"],
        SQL["settle_ack_held"],
    )
    columns = ("id", "queue", "body", "content_type", "attempts", "created_at", "priority")
    columns += ("lease_id", "type", "max_attempts", "correlation_id", "flow_keys")
    columns += ("trace_context",)
    app = App("sqlite:///:memory:")  # the queue's spec, as a worker has it
    spec_queue = app.queue("noop", max_batch_size=BATCH, max_batch_timeout=0)

    @spec_queue.consumer
    async def consume(batch: Any) -> None:
        pass

    spec = app.registry.queue("noop")

    class Tx:  # what settle_acks needs of a transaction
        def fetch(self, name: str, params: dict[str, Any]) -> Rows:
            args = {
                k: orjson.dumps(v).decode() if isinstance(v, list) else v for k, v in params.items()
            }
            cursor = conn.execute(SQL[name], args)
            return Rows((), cursor.fetchall(), cursor.rowcount)

        def savepoint(self) -> None:
            conn.execute("SAVEPOINT tf_step")

        def release(self) -> None:
            conn.execute("RELEASE tf_step")

        def rollback_to(self) -> None:
            conn.execute("ROLLBACK TO tf_step")
            conn.execute("RELEASE tf_step")

    tx = Tx()

    def drain() -> int:
        got, seq = 0, 0
        while True:
            seq += 1
            lease_id, now = f"lease-{seq}", time.time()
            args = {"queue": "noop", "limit": BATCH, "types": None, "now": now}
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(claim, {**args, "lease_id": lease_id}).fetchall()
            ids = [r[0] for r in rows]
            if ids:
                conn.execute(
                    lease,
                    {
                        "ids": orjson.dumps(ids).decode(),
                        "lease_id": lease_id,
                        "owner": "worker",
                        "visibility_timeout": 30.0,
                        "now": now,
                    },
                )
            conn.execute("COMMIT")
            conn.execute("PRAGMA synchronous = FULL")
            if not ids:
                return got
            conn.execute("BEGIN IMMEDIATE")
            if python:
                claimed = Rows(columns, rows).into(ClaimedMessage)
                batch, undecodable = decode_batch("noop", claimed)
                for message in batch.messages:
                    message.body["t"]
                settlement = settle_batch(spec, batch, claimed, None, undecodable)
                settle_acks(tx, settlement.acks)
            else:
                conn.execute("SAVEPOINT tf_step")
                conn.execute(ack, {"ids": orjson.dumps(ids).decode(), "lease_id": lease_id})
                conn.execute("RELEASE tf_step")
            conn.execute("COMMIT")
            got += len(ids)

    return timed(drain)


LEAN = """
CREATE TABLE queue_messages (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'ready',
    body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    available_at REAL NOT NULL, lease_id TEXT, lease_expires_at REAL);
CREATE INDEX queue_messages_ready ON queue_messages (queue, available_at, id)
    WHERE state = 'ready';
CREATE INDEX queue_messages_leased ON queue_messages (lease_expires_at) WHERE state = 'leased';
"""


LEAN_COLUMNS = tuple(f.name for f in dataclasses.fields(ClaimedMessage))[:8]


def lean(path: Path, n: int) -> int:
    conn = connect(path)
    conn.executescript(LEAN)
    now = time.time()
    for _ in range(0, n, BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO queue_messages (queue, body, created_at, available_at) "
            "VALUES ('noop', ?, ?, ?)",
            [(b'{"t":0.0}', now, now)] * BATCH,
        )
        conn.execute("COMMIT")
    claim = (
        "UPDATE queue_messages SET state = 'leased', attempts = attempts + 1, lease_id = :lease,"
        " lease_expires_at = :now + 30 WHERE id IN (SELECT id FROM queue_messages"
        " WHERE queue = 'noop' AND state = 'ready' AND available_at <= :now"
        " ORDER BY available_at, id LIMIT 100)"
        " RETURNING id, queue, body, 'json', attempts, created_at, 0, lease_id"
    )

    def drain() -> int:
        got, seq = 0, 0
        while True:
            seq += 1
            rows = conn.execute(claim, {"lease": f"lease-{seq}", "now": time.time()}).fetchall()
            if not rows:
                return got
            claimed = Rows(LEAN_COLUMNS, rows).into(ClaimedMessage)
            batch, _ = decode_batch("noop", claimed)
            for message in batch.messages:
                message.body["t"]
            assert not _, "undecodable"
            ids = [m.id for m in batch.messages]
            conn.execute(
                "DELETE FROM queue_messages WHERE id IN (SELECT value FROM json_each(?))"
                " AND lease_id = ? AND state = 'leased'",
                (orjson.dumps(ids).decode(), f"lease-{seq}"),
            )
            got += len(ids)

    return timed(drain)


_last: dict[str, float] = {}


def timed(drain: Callable[[], int]) -> int:
    wall, cpu = time.perf_counter(), time.thread_time()
    got = drain()
    _last.update(wall=time.perf_counter() - wall, cpu=time.thread_time() - cpu)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(prefix="msgfloor-") as tmp:
        template = Path(tmp, "template.db")
        fill(template, n)
        subjects: dict[str, Callable[[Path], int]] = {
            "floor": lambda p: floor(p, n),
            "statements": lambda p: taskflare_table(p, python=False),
            "python": lambda p: taskflare_table(p, python=True),
            "lean": lambda p: lean(p, n),
        }
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in subjects}
        for r in range(args.rounds):
            order = list(subjects) if r % 2 == 0 else list(reversed(subjects))
            rates: dict[str, float] = {}
            for key in order:
                path = Path(tmp, f"{key}.db")
                if key in ("statements", "python"):
                    shutil.copy(template, path)
                got = subjects[key](path)
                assert got == n, (key, got)
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
                rates[key] = n / _last["wall"]
                results[key].append((rates[key], _last["cpu"] / n * 1e6, 0.0))
            load = os.getloadavg()[0]
            for key in subjects:
                rate, cpu, _ = results[key][-1]
                share = rate / rates["floor"]
                results[key][-1] = (rate, cpu, share)
                print(
                    f"round {r} {key:10s} {rate:9,.0f} msgs/s  cpu {cpu:5.2f} µs/msg"
                    f"  x{share:.2f} of floor  load {load:.1f}",
                    flush=True,
                )
        print("\nmedians:")
        for key, runs in results.items():
            rate = statistics.median(x[0] for x in runs)
            cpu = statistics.median(x[1] for x in runs)
            share = statistics.median(x[2] for x in runs)
            print(f"  {key:10s} {rate:9,.0f} msgs/s  cpu {cpu:5.2f} µs/msg  x{share:.2f} of floor")


if __name__ == "__main__":
    main()
