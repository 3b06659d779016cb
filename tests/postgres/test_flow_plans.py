"""The PostgreSQL claim of a queue with limits is planned once a connection (a generic
plan), possibly while the queue is empty: its plan must not depend on row estimates. The
jobs it takes are found by primary key, never by reading the whole ready index or table
(which costs every claim as much as the backlog is long)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from taskflare import App
from taskflare.backends.postgres.arrays import adapt_arrays
from taskflare.backends.postgres.backend import native
from taskflare.backends.store import CONCURRENCY_POLL, flow_scan, limit_arrays

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@on_postgres
@pytest.mark.parametrize("statement", ["message_claim_limited", "message_claim_limited_fast"])
async def test_the_generic_plan_of_the_limited_claim_finds_its_jobs_by_primary_key(
    database_url: str, statement: str
) -> None:
    app = App(database_url)
    try:
        app.job("call", rate_limit="1000000/s", max_concurrency=10_000)(lambda p: None)
        await app.enqueue("call", 0)  # the tables exist and are nearly empty
        backend = await app.backend()
        spec = app.registry.queue(app.registry.job_types["call"].queue)
        sql = backend._db.sql  # type: ignore[attr-defined]
        args = adapt_arrays(
            {
                "queue": spec.name,
                "limit": 100,
                "scan": flow_scan(100),
                "lease_id": "lease",
                "owner": "test",
                "visibility_timeout": 30.0,
                "types": ["call"],
                "concurrency_poll": CONCURRENCY_POLL,
                "channel": backend.channel,  # type: ignore[attr-defined]
                "running_cap": 10_000.0 - 100,
                "running_rows": 10_000 - 100 + 1,
                **limit_arrays(spec.flow_limits()),
            }
        )
        claim, names = native(sql[statement])
        server = database_url.split("?")[0]
        schema = parse_qs(urlsplit(database_url).query)["schema"][0]
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("BEGIN")
            conn.execute(sql["flow_lock"], {"queue": spec.name, "channel": "plan-test"})
            conn.execute(f"PREPARE limited_claim AS {claim}")  # type: ignore[arg-type]
            placeholders = ", ".join(["%s"] * len(names))
            plan = "\n".join(
                row[0]
                # Values written into the text (the server infers the EXECUTE arguments'
                # types from the prepared statement).
                for row in psycopg.ClientCursor(conn).execute(
                    f"EXPLAIN EXECUTE limited_claim({placeholders})",  # type: ignore[arg-type]
                    [args[n] for n in names],
                )
            )
            conn.execute("ROLLBACK")
        assert schema in claim
        assert "Seq Scan on messages" not in plan, plan
        # The rows the UPDATE changes (alias m_1, or m) are read through the primary key
        # (an index scan of it, or a bitmap heap scan over a bitmap of it).
        lines = plan.splitlines()
        (alias,) = [m.group(1) for m in re.finditer(r"Update on messages (\w+)", plan)]
        (at,) = [
            i
            for i, line in enumerate(lines)
            if f"Scan on messages {alias} " in line
            or f"Scan using messages_pkey on messages {alias} " in line
        ]
        assert "messages_pkey" in " ".join(lines[at : at + 4]), plan
        # Counting the queue's running jobs reads the queue's range of the leased index.
        assert "messages_lease_id_idx" not in plan, plan
    finally:
        await app.close()
