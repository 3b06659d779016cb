"""A statement that disables a plan node type for its transaction (`enable_sort`,
`enable_seqscan` off) also turns JIT off for it. A node the planner cannot avoid while
its type is disabled adds 1e10 to the estimate, far above `jit_above_cost`: behind
PgBouncer, where the session-wide `jit = off` is not set, every claim of a queue with
flow limits was JIT-compiled (2-3 s of server CPU each, with the queue's flow lock held,
so a pool of two server connections stopped answering)."""

from __future__ import annotations

import re

import psycopg
import pytest

from taskflare import App
from taskflare.backends.postgres.backend import _RAW_SQL

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

DISABLES = re.compile(r"set_config\('enable_\w+',\s*'off',\s*true\)")
NO_JIT = re.compile(r"set_config\('jit',\s*'off',\s*true\)")


def test_every_statement_that_disables_a_plan_node_also_turns_jit_off() -> None:
    disabling = {name for name, sql in _RAW_SQL.items() if DISABLES.search(sql)}
    assert {"claim_settings", "claim_expected_settings", "flow_lock"} <= disabling
    assert sorted(name for name in disabling if not NO_JIT.search(_RAW_SQL[name])) == []


@on_postgres
@pytest.mark.parametrize("statement", ["claim_settings", "claim_expected_settings", "flow_lock"])
async def test_jit_is_off_for_the_claims_transaction_without_session_settings(
    database_url: str, statement: str
) -> None:
    """On a connection as PgBouncer hands out (no `_configure` session settings)."""
    app = App(database_url)
    try:
        app.job("call", rate_limit="1000/s")(lambda p: None)
        await app.enqueue("call", 0)
        backend = await app.backend()
        sql = backend._db.sql[statement]  # type: ignore[attr-defined]
        conninfo = backend._db._settings.conninfo  # type: ignore[attr-defined]
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            assert (await (await conn.execute("SHOW jit")).fetchone()) == ("on",)
            await conn.execute(sql, {"channel": "c", "queue": "default"})
            assert (await (await conn.execute("SHOW jit")).fetchone()) == ("off",)
            await conn.rollback()
            assert (await (await conn.execute("SHOW jit")).fetchone()) == ("on",)
    finally:
        await app.close()
