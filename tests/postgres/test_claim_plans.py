"""The PostgreSQL claims (plain and limited) read their candidates in the ready index's
order and stop at the claim's limit, whatever the planner statistics say.

Statistics that say ready rows are rare are the common case, not a corner: a fresh table
never analyzed, or a table of finished jobs analyzed before a burst of enqueues (an
ANALYZE comes only after the next check or autovacuum round). Planned from them, a claim
could read every ready row through a smaller index and sort them all, on every claim
until the next ANALYZE: a 20 000-job drain ran at half the rate.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from taskflare import App
from taskflare.backends.postgres.arrays import adapt_arrays
from taskflare.backends.postgres.backend import native
from taskflare.backends.store import CONCURRENCY_POLL, flow_scan, limit_arrays

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

FINISHED = 20_000
READY = 5_000
LIMIT = 50


def _plan(
    conn: psycopg.Connection[Any],
    sql: dict[str, str],
    name: str,
    args: dict[str, Any],
    settings: str = "claim_expected_settings",
) -> str:
    """EXPLAIN ANALYZE of claim `name` run as the backend runs it (after its settings, in
    a transaction), rolled back. `message_claim_expected` runs on its generic plan: it is
    prepared (once a session) and executed; the first execution makes the plan. Its
    `settings`: those of its transaction on a pooled connection, or `claim_session`, the
    session's on the claim connection (undone here by the rollback)."""
    conn.execute("BEGIN")
    try:
        if name != "message_claim_expected":
            conn.execute(sql["claim_settings"])  # type: ignore[arg-type]
            rows = psycopg.ClientCursor(conn).execute(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql[name]}",  # type: ignore[arg-type]
                args,
            )
            return "\n".join(row[0] for row in rows)
        conn.execute(sql[settings])  # type: ignore[arg-type]
        claim, names = native(sql[name])
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = 'expected_claim'"
        ).fetchone()
        if prepared == (0,):
            conn.execute(f"PREPARE expected_claim AS {claim}")  # type: ignore[arg-type]
        placeholders = ", ".join(["%s"] * len(names))
        rows = psycopg.ClientCursor(conn).execute(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)"  # type: ignore[arg-type]
            f" EXECUTE expected_claim({placeholders})",
            [args[n] for n in names],
        )
        plan = "\n".join(row[0] for row in rows)
        assert "$1" in plan, plan  # the generic plan (a custom one shows the values)
        return plan
    finally:
        conn.execute("ROLLBACK")


def _candidate_scan(plan: str) -> str:
    """The plan line of the scan that finds the candidates (the CTE's scan of messages)."""
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if "CTE candidates" in line)
    return next(line for line in lines[start:] if "Scan" in line and "on messages" in line)


@on_postgres
@pytest.mark.parametrize("statement", ["message_claim_expected", "message_claim_many"])
async def test_a_claim_reads_no_more_ready_rows_than_it_takes_under_stale_statistics(
    database_url: str, statement: str
) -> None:
    app = App(database_url)
    try:
        app.job("work")(lambda p: None)
        await app.enqueue_many("work", list(range(FINISHED)))
        backend = await app.backend()
        sql: dict[str, str] = backend._db.sql  # type: ignore[attr-defined]
        server = database_url.split("?")[0]
        schema = parse_qs(urlsplit(database_url).query)["schema"][0]
        table = f'"{schema}".messages'
        with psycopg.connect(server, autocommit=True) as conn:
            # The statistics say: every job finished, none ready. Then a burst arrives.
            conn.execute(f"UPDATE {table} SET state = 'completed', finished_at = 1")  # type: ignore[arg-type]
            conn.execute(f"ANALYZE {table}")  # type: ignore[arg-type]
            await app.enqueue_many("work", list(range(READY)))
            queue = app.registry.job_types["work"].queue
            args = adapt_arrays(
                {
                    "queue": queue,
                    "limit": LIMIT,
                    "lease_id": "lease",
                    "owner": "test",
                    "visibility_timeout": 30.0,
                    "min_count": 1,
                    "max_wait": 0.0,
                    "types": None,
                    "channel": "plan-test",
                }
            )
            plan = _plan(conn, sql, statement, args)
        assert "Sort" not in plan, plan
        scan = _candidate_scan(plan)
        assert "messages_ready_idx" in scan, plan
        # Read in index order, stopped at the limit: not the whole burst.
        rows_read = int(scan.split("rows=")[1].split()[0].rstrip(")"))
        assert rows_read <= LIMIT, plan
    finally:
        await app.close()


@on_postgres
async def test_the_limited_claim_reads_no_more_ready_rows_than_it_takes_under_stale_statistics(
    database_url: str,
) -> None:
    app = App(database_url)
    try:
        # Limits never reached: the claim reads the head of the ready jobs only.
        app.job("call", rate_limit="1000000/s", max_concurrency=10_000)(lambda p: None)
        await app.enqueue_many("call", list(range(FINISHED)))
        backend = await app.backend()
        sql: dict[str, str] = backend._db.sql  # type: ignore[attr-defined]
        spec = app.registry.queue(app.registry.job_types["call"].queue)
        server = database_url.split("?")[0]
        schema = parse_qs(urlsplit(database_url).query)["schema"][0]
        table = f'"{schema}".messages'
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"UPDATE {table} SET state = 'completed', finished_at = 1")  # type: ignore[arg-type]
            conn.execute(f"ANALYZE {table}")  # type: ignore[arg-type]
            await app.enqueue_many("call", list(range(READY)))
            args = adapt_arrays(
                {
                    "queue": spec.name,
                    "limit": LIMIT,
                    "scan": flow_scan(LIMIT),
                    "lease_id": "lease",
                    "owner": "test",
                    "visibility_timeout": 30.0,
                    "types": ["call"],
                    "concurrency_poll": CONCURRENCY_POLL,
                    "channel": backend.channel,  # type: ignore[attr-defined]
                    **limit_arrays(spec.flow_limits()),
                }
            )
            claim, names = native(sql["message_claim_limited"])
            conn.execute("BEGIN")
            try:
                conn.execute(sql["flow_lock"], {"queue": spec.name, "channel": "plan-test"})  # type: ignore[arg-type]
                conn.execute(f"PREPARE limited_claim AS {claim}")  # type: ignore[arg-type]
                placeholders = ", ".join(["%s"] * len(names))
                plan = "\n".join(
                    row[0]
                    for row in psycopg.ClientCursor(conn).execute(
                        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)"  # type: ignore[arg-type]
                        f" EXECUTE limited_claim({placeholders})",
                        [args[n] for n in names],
                    )
                )
            finally:
                conn.execute("ROLLBACK")
        lines = plan.splitlines()
        start = next(i for i, line in enumerate(lines) if "CTE head" in line)
        scan = next(line for line in lines[start:] if "Scan" in line and "on messages" in line)
        assert "messages_ready_idx" in scan, plan
        rows_read = int(scan.split("rows=")[1].split()[0].rstrip(")"))
        assert rows_read <= LIMIT, plan
    finally:
        await app.close()


@on_postgres
@pytest.mark.parametrize("settings", ["claim_expected_settings", "claim_session"])
async def test_the_expected_claims_plan_made_on_a_nearly_empty_table_stays_right_after_a_burst(
    database_url: str, settings: str
) -> None:
    """`message_claim_expected` runs on a generic plan, made once a session and made
    again only when the table's statistics change: one made while the table was nearly
    empty must not read the rows to update (or the candidates) with a sequential scan
    once a burst has arrived."""
    app = App(database_url)
    try:
        app.job("work")(lambda p: None)
        await app.enqueue("work", 0)  # the tables exist and are nearly empty
        backend = await app.backend()
        sql: dict[str, str] = backend._db.sql  # type: ignore[attr-defined]
        server = database_url.split("?")[0]
        args = adapt_arrays(
            {
                "queue": app.registry.job_types["work"].queue,
                "limit": LIMIT,
                "lease_id": "lease",
                "owner": "test",
                "visibility_timeout": 30.0,
                "types": None,
                "channel": "plan-test",
            }
        )
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("SET plan_cache_mode = force_custom_plan")  # as the pool's sessions
            made = _plan(conn, sql, "message_claim_expected", args, settings)
            await app.enqueue_many("work", list(range(FINISHED + READY)))
            plan = _plan(conn, sql, "message_claim_expected", args, settings)
        for shown in (made, plan):
            assert "Seq Scan" not in shown and "Sort" not in shown, shown
            assert "messages_ready_idx" in _candidate_scan(shown), shown
        rows_read = int(_candidate_scan(plan).split("rows=")[1].split()[0].rstrip(")"))
        assert rows_read <= LIMIT, plan
        # The rows the UPDATE changes (alias m) are read through the primary key (an
        # index scan of it, or a bitmap heap scan over a bitmap of it).
        lines = plan.splitlines()
        (at,) = [
            i
            for i, line in enumerate(lines)
            if "Scan on messages m " in line or "Scan using messages_pkey on messages m " in line
        ]
        assert "messages_pkey" in " ".join(lines[at : at + 4]), plan
    finally:
        await app.close()


@on_postgres
async def test_the_look_at_a_queue_on_the_claim_connection_reads_ready_rows_through_an_index(
    database_url: str,
) -> None:
    """`queue_ready_info` on the claim connection runs on a generic plan made once a
    session (under `claim_session`): one made while the table was nearly empty still
    reads only the queue's ready rows, through a ready index, once a burst has arrived
    beside many finished jobs."""
    app = App(database_url)
    try:
        app.job("work")(lambda p: None)
        await app.enqueue("work", 0)  # the tables exist and are nearly empty
        backend = await app.backend()
        sql: dict[str, str] = backend._db.sql  # type: ignore[attr-defined]
        server = database_url.split("?")[0]
        schema = parse_qs(urlsplit(database_url).query)["schema"][0]
        args = adapt_arrays(
            {"queue": app.registry.job_types["work"].queue, "limit": LIMIT, "types": ["work"]}
        )
        look, names = native(sql["queue_ready_info"])
        placeholders = ", ".join(["%s"] * len(names))

        def plan(conn: psycopg.Connection[Any]) -> str:
            rows = psycopg.ClientCursor(conn).execute(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)"  # type: ignore[arg-type]
                f" EXECUTE ready_info({placeholders})",
                [args[n] for n in names],
            )
            return "\n".join(row[0] for row in rows)

        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql["claim_session"])  # type: ignore[arg-type]
            conn.execute(f"PREPARE ready_info AS {look}")  # type: ignore[arg-type]
            made = plan(conn)
            await app.enqueue_many("work", list(range(FINISHED)))
            conn.execute(f"UPDATE \"{schema}\".messages SET state = 'completed', finished_at = 1")  # type: ignore[arg-type]
            await app.enqueue_many("work", list(range(READY)))
            burst = plan(conn)
        for shown in (made, burst):
            assert "$1" in shown, shown  # the generic plan
            assert "Seq Scan" not in shown and "Sort" not in shown, shown
            scans = [line for line in shown.splitlines() if "Scan" in line and "messages" in line]
            assert scans and all("messages_ready" in line for line in scans), shown
    finally:
        await app.close()
