"""The PostgreSQL side of `bench.py --backend postgres`: fresh schemas and the floor loop.

The floor is the least work a PostgreSQL queue must do, hand-written with plain psycopg
(sync, autocommit, one connection): insert in batches with one `unnest` INSERT, then
repeatedly claim with one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
LIMIT n) RETURNING` and ack with one `DELETE ... WHERE id = ANY(...)`. It runs on
taskflare's own schema (its migration files, all indexes, UUIDv7 text keys), and on a
bare table (bigint key, one partial index) for context.

The server is $BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test; every
measurement gets a new schema, dropped when the script exits.
"""

from __future__ import annotations

import atexit
import os
import time
import uuid
from pathlib import Path

import psycopg

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
QUEUE = "bench"
BODY = b'{"user": 42, "action": "noop", "payload": "' + b"x" * 64 + b'"}'
_created: list[str] = []


def _drop_created() -> None:
    if not _created:
        return
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for schema in _created:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


atexit.register(_drop_created)


def postgres_url(tmp: Path, variant: str) -> str:
    """A URL on a schema of its own (created by taskflare on first use, dropped at exit)."""
    del tmp, variant
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    _created.append(schema)
    sep = "&" if "?" in SERVER_URL else "?"
    return f"{SERVER_URL}{sep}schema={schema}"


def postgres_version() -> str:
    """The server's version string, for the report header."""
    with psycopg.connect(SERVER_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def _schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


CLAIM = """
UPDATE messages
SET state = 'leased', attempts = attempts + 1, lease_id = %(lease)s,
    lease_expires_at = extract(epoch FROM now()) + 30
WHERE id IN (SELECT id FROM messages
             WHERE queue = %(queue)s AND state = 'ready'
               AND available_at <= extract(epoch FROM now())
             ORDER BY priority DESC, available_at, id
             LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED)
RETURNING id, body, attempts
"""

INSERT = """
INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                      created_at, available_at)
SELECT k, %(queue)s, 'ready', %(body)s, 'json', 0, 0,
       extract(epoch FROM now()), extract(epoch FROM now())
FROM unnest(%(keys)s) AS k
"""

BARE_SCHEMA = (
    """CREATE TABLE messages (
        id bigint PRIMARY KEY, queue text NOT NULL, state text NOT NULL, body bytea NOT NULL,
        content_type text NOT NULL, priority integer NOT NULL, attempts integer NOT NULL,
        created_at float8 NOT NULL, available_at float8 NOT NULL, lease_id text,
        lease_expires_at float8)""",
    """CREATE INDEX messages_ready_idx ON messages (queue, priority DESC, available_at, id)
        WHERE state = 'ready'""",
)


def postgres_floor(url: str, n: int, batch: int) -> tuple[float, float]:
    """(insert, claim + ack) msgs/s of the hand-written loop on taskflare's schema."""
    from taskflare.backends.postgres.backend import MIGRATIONS

    return _loop(url, n, batch, [m.sql for m in MIGRATIONS], uuid_keys=True)


def postgres_bare_floor(url: str, n: int, batch: int) -> tuple[float, float]:
    """The same loop on a bare table: what taskflare's schema itself costs."""
    return _loop(url, n, batch, list(BARE_SCHEMA), uuid_keys=False)


def _loop(
    url: str, n: int, batch: int, schema: list[str], *, uuid_keys: bool
) -> tuple[float, float]:
    from taskflare.ids import uuid7

    name = _schema_of(url)
    keys: list[object] = [uuid7() if uuid_keys else i for i in range(n)]
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')  # type: ignore[arg-type]
        conn.execute(f'SET search_path TO "{name}"')  # type: ignore[arg-type]
        for statement in schema:
            conn.execute(statement)  # type: ignore[arg-type]
        key_type = "text[]" if uuid_keys else "bigint[]"
        insert = INSERT.replace("%(keys)s", f"%(keys)s::{key_type}")
        start = time.perf_counter()
        for first in range(0, n, batch):
            conn.execute(
                insert,  # type: ignore[arg-type]
                {"queue": QUEUE, "body": BODY, "keys": keys[first : first + batch]},
            )
        insert_rate = n / (time.perf_counter() - start)
        done = 0
        start = time.perf_counter()
        while done < n:
            claimed = conn.execute(
                CLAIM, {"lease": f"L{done}", "queue": QUEUE, "limit": batch}
            ).fetchall()
            if not claimed:
                raise RuntimeError("floor loop: nothing left to claim")
            conn.execute("DELETE FROM messages WHERE id = ANY(%s)", [[r[0] for r in claimed]])
            done += len(claimed)
        claim_ack_rate = n / (time.perf_counter() - start)
    return insert_rate, claim_ack_rate
