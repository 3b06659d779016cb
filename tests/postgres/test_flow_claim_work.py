"""What a PostgreSQL claim with limits sends, counted in statements (not timed). A claim
that expects work is first the fast claim (the flow lock and one statement, in one round
trip); the full claim follows only when a limit is near, not when the queue is simply
empty: a drain's end, or a worker woken for a job another took first, costs what the
plain claim costs there."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from taskflare import App
from taskflare.backends.base import ClaimParams, ClaimResult
from taskflare.ids import uuid7

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def claim(app: App, limit: int) -> tuple[ClaimResult, int]:
    """One claim as a draining worker makes it (work expected), and the statements it ran."""
    backend: Any = await app.backend()
    spec = app.registry.queue(app.registry.job_types["call"].queue)
    before = backend.statements_run
    result = await backend.message_claim_many(
        ClaimParams(
            queue=spec.name,
            limit=limit,
            lease_id=uuid7(),
            owner="test",
            visibility_timeout=30,
            types=("call",),
            limits=spec.flow_limits(),
            describe_empty=False,
        )
    )
    return result, backend.statements_run - before


@on_postgres
async def test_an_expected_claim_of_an_empty_limited_queue_is_the_fast_claim_alone(
    database_url: str,
) -> None:
    app = App(database_url)
    try:
        app.job("call", rate_limit="1000000/s", max_concurrency=10_000)(lambda p: None)
        await app.enqueue_many("call", list(range(3)))
        taken, sent = await claim(app, 10)
        assert len(taken.messages) == 3 and sent == 2  # the lock and the fast claim
        empty, sent = await claim(app, 10)
        # Nothing ready and no limit near: no full claim after the fast one; as for an
        # empty plain claim, the caller is left to ask what the queue holds.
        assert empty.messages == [] and empty.ready is None
        assert sent == 2
    finally:
        await app.close()


@on_postgres
async def test_an_expected_claim_that_meets_a_near_limit_runs_the_full_claim(
    database_url: str,
) -> None:
    app = App(database_url)
    try:
        app.job("call", rate_limit="150/h")(lambda p: None)  # 150 tokens, no refill to speak of
        await app.enqueue_many("call", list(range(200)))
        first, sent = await claim(app, 100)
        assert len(first.messages) == 100 and sent == 2
        # 50 tokens left, fewer than the claim asks for: the fast claim takes nothing and
        # the full claim takes what the bucket allows.
        second, sent = await claim(app, 100)
        assert len(second.messages) == 50 and sent == 4
        third, sent = await claim(app, 100)
        assert third.messages == [] and third.ready is not None and sent == 4
    finally:
        await app.close()


@on_postgres
async def test_the_limited_claim_runs_on_the_claim_connection_and_is_planned_there_once(
    database_url: str,
) -> None:
    """The lock and the claim run on the claim connection, as the plain claim of a woken
    worker does: no pooled connection prepares (and plans) the large limited claims, and
    the lock still holds for the claim (one implicit transaction, committed at its end)."""
    app = App(f"{database_url}&pool_max_size=1")
    try:
        app.job("call", rate_limit="1000000/s", max_concurrency=10_000)(lambda p: None)
        await app.enqueue_many("call", list(range(5)))
        backend: Any = await app.backend()
        taken, sent = await claim(app, 2)
        assert len(taken.messages) == 2 and sent == 2
        pid = backend._db.claim_backend_pid()
        assert pid is not None
        with psycopg.connect(database_url.split("?")[0], autocommit=True) as conn:
            query, state = conn.execute(
                "SELECT query, state FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
        assert query.lstrip().startswith("WITH running AS MATERIALIZED"), query
        assert state == "idle"  # committed: no transaction left open
        more, _ = await claim(app, 10)
        assert len(more.messages) == 3
        assert backend._db.claim_backend_pid() == pid

        async def limited_prepared(conn: Any) -> int:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ("%flow_buckets%",),
                prepare=False,
            )
            row = await cur.fetchone()
            return int(row[0])

        assert await backend._db.run(limited_prepared, "read the pool's session") == 0
    finally:
        await app.close()
