"""What SQLite runs for each row a claim leases and an outcome settles: no temporary
table per row. SQLite checks the condition of every partial index of a row it updates
or deletes, and for an IN list in that condition it builds a temporary table of the
list's values each time (`OpenEphemeral`, not guarded by `Once`): with the finished
index's `state IN ('completed', 'failed', 'cancelled')` that was about a third of the
SQLite work of each message's claim and ack (schema 13). Read from the statements'
bytecode (`EXPLAIN`) and the schema, not timed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from taskflare import App
from taskflare.backends.sqlite.sql import SQL

# The statements that visit each message of a batch.
PER_ROW = [
    "message_claim_lease",
    "settle_ack_held",
    "settle_ack",
    "settle_retry",
    "settle_fail",
    "settle_complete",
    "settle_cancel",
    "message_release_many",
]


async def migrated(tmp_path: Path, messages: int = 0) -> Path:
    path = tmp_path / "taskflare.db"
    app = App(f"sqlite:///{path}")
    try:
        queue = app.queue("noop", max_batch_size=100)
        await app.backend()
        for first in range(0, messages, 100):
            await queue.send_batch([{"body": {"n": i}} for i in range(first, first + 100)])
        if not messages:
            await queue.send({"n": 0})  # the schema is created by the first write
    finally:
        await app.close()
    return path


def temporary_tables_per_row(conn: sqlite3.Connection, name: str) -> list[int]:
    """Addresses of the `OpenEphemeral` ops of statement `name` that run for every row:
    inside a loop (from a loop's `Next` back to where it jumps) and not the first op of
    a `Once` block (a subquery's list, built once)."""
    params = {p: None for p in ("ids", "lease_id", "owner", "now", "visibility_timeout")}
    params.update(acks="[]", retries="[]", fails="[]", completes="[]", cancels="[]", leases="[]")
    ops = [(row[0], row[1], row[2]) for row in conn.execute("EXPLAIN " + SQL[name], params)]
    loops = [(jump, addr) for addr, op, jump in ops if op in ("Next", "Prev", "VNext")]
    once = {addr + 1 for addr, op, _ in ops if op == "Once"}
    return [
        addr
        for addr, op, _ in ops
        if op == "OpenEphemeral"
        and addr not in once
        and any(start <= addr <= end for start, end in loops)
    ]


@pytest.mark.parametrize("name", PER_ROW)
async def test_message_path_statements_build_no_temporary_table_per_row(
    tmp_path: Path, name: str
) -> None:
    conn = sqlite3.connect(await migrated(tmp_path))
    try:
        assert temporary_tables_per_row(conn, name) == []
    finally:
        conn.close()


async def test_no_per_row_condition_holds_an_in_list(tmp_path: Path) -> None:
    """Partial index conditions and the change-signal triggers' WHEN clauses (both run
    for each row written) name their values as equalities joined by OR: an IN list there
    builds a temporary table for every row (the triggers' programs do not show in
    `EXPLAIN`)."""
    conn = sqlite3.connect(await migrated(tmp_path))
    try:
        conn.create_function("tf_notify", 1, lambda topic: None)
        conn.executescript(SQL["notify_triggers"])
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%'"
            " UNION ALL SELECT name, sql FROM sqlite_temp_master WHERE type = 'trigger'"
        ).fetchall()
        conditions = {
            name: sql.upper().split(" WHERE ", 1)[-1].split("\nWHEN ", 1)[-1].split(" BEGIN")[0]
            for name, sql in rows
        }
        assert "messages_finished_idx" in conditions and "tf_done" in conditions
        assert [name for name, cond in conditions.items() if " IN (" in cond] == []
    finally:
        conn.close()
