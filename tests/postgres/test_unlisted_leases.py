"""Leased rows are kept out of the indexes that serve lists and counts (PostgreSQL schema
13), so a claim writes no entry to them; every list, search, count and progress figure
still shows leased jobs (read through the leased index), exactly as before.

The first test counts index entries leaf by leaf with `pageinspect` before and after a
claim: before schema 13 the claim added one entry per claimed job to each of the five
indexes. The others check each affected read against the table's rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from taskflare import App
from taskflare.backends.base import (
    ClaimParams,
    JobBatchGetParams,
    JobBatchListParams,
    JobCountParams,
    JobEventCursor,
    JobEventsParams,
    JobFilter,
    JobSearchParams,
    MessageListParams,
    QueueCountsParams,
)

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

UNLISTED = (
    "messages_jobs_created_idx",
    "messages_jobs_type_created_idx",
    "messages_jobs_state_created_idx",
    "messages_queue_state_idx",
    "messages_batch_state_idx",
)


def _schema(database_url: str) -> str:
    return parse_qs(urlsplit(database_url).query)["schema"][0]


def _entries(conn: psycopg.Connection[Any], schema: str, index: str) -> int:
    """Heap pointers on the index's leaf pages (entries of dead row versions included)."""
    qualified = f'"{schema}".{index}'
    pages = conn.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
        [qualified],
    ).fetchone()
    assert pages is not None
    items = 0
    for blk in range(1, int(pages[0])):  # block 0 is the metapage
        row = conn.execute(
            "SELECT type, btpo_next FROM bt_page_stats(%s, %s)", [qualified, blk]
        ).fetchone()
        assert row is not None
        if row[0] != "l":
            continue
        first = 2 if row[1] != 0 else 1  # a leaf's first item is its high key, but the last's
        counted = conn.execute(
            "SELECT coalesce(sum(coalesce(cardinality(tids), 1)), 0)"
            " FROM bt_page_items(%s, %s) WHERE itemoffset >= %s",
            [qualified, blk, first],
        ).fetchone()
        assert counted is not None
        items += int(counted[0])
    return items


async def _claim(app: App, job_type: str, limit: int) -> list[str]:
    backend = await app.backend()
    queue = app.registry.job_types[job_type].queue
    claimed = await backend.message_claim_many(
        ClaimParams(queue, limit, f"lease-{job_type}", "test", 300.0, types=(job_type,))
    )
    assert len(claimed.messages) == limit
    return [m.id for m in claimed.messages]


@on_postgres
async def test_a_claim_adds_no_entry_to_the_list_and_count_indexes(database_url: str) -> None:
    app = App(database_url)
    try:
        app.job("work")(lambda p: None)
        await app.enqueue_many("work", list(range(40)))  # a batch: in the batch index too
        server = database_url.split("?")[0]
        schema = _schema(database_url)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
            before = {i: _entries(conn, schema, i) for i in (*UNLISTED, "messages_leased_idx")}
            await _claim(app, "work", 10)
            after = {i: _entries(conn, schema, i) for i in (*UNLISTED, "messages_leased_idx")}
        assert after["messages_leased_idx"] == before["messages_leased_idx"] + 10
        assert {i: after[i] - before[i] for i in UNLISTED} == {i: 0 for i in UNLISTED}
    finally:
        await app.close()


def _newest_first(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]


@on_postgres
async def test_every_list_count_and_progress_shows_leased_jobs(database_url: str) -> None:
    app = App(database_url)
    try:
        app.job("alpha", queue="qa")(lambda p: None)
        app.job("beta", queue="qb")(lambda p: None)
        app.job("gamma", queue="qc")(lambda p: None)
        for job_type in ("alpha", "beta", "alpha", "beta"):
            await app.enqueue_many(job_type, [{"n": n} for n in range(15)])
        await app.enqueue_many("gamma", [{"n": 0}, {"n": 1}])
        backend = await app.backend()
        server = database_url.split("?")[0]
        table = f'"{_schema(database_url)}".messages'
        queues = f'"{_schema(database_url)}".queues'
        with psycopg.connect(server, autocommit=True) as conn:
            # Some finished jobs of every kind, then leases taken by real claims, spread
            # over the creation order (the claim takes by priority, then availability).
            conn.execute(
                f"UPDATE {table} SET state = CASE WHEN right(id, 1) < '8' THEN 'completed'"  # type: ignore[arg-type]
                " WHEN right(id, 1) < 'c' THEN 'failed' ELSE 'cancelled' END,"
                " finished_at = created_at + 1, attempts = 1"
                " WHERE type <> 'gamma' AND right(id, 2) < '60'"
            )
            await _claim(app, "alpha", 6)
            await _claim(app, "beta", 5)
            await _claim(app, "gamma", 2)  # queue qc then holds leased jobs only
            conn.execute(f"DELETE FROM {queues} WHERE name = 'qc'")  # type: ignore[arg-type]
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            rows = cur.execute(
                f"SELECT id, created_at, state, type, queue, batch_id FROM {table}"  # type: ignore[arg-type]
            ).fetchall()
        leased = [r for r in rows if r["state"] == "leased"]
        assert len(leased) == 13
        assert {r["state"] for r in rows} >= {"ready", "completed", "failed", "leased"}

        # The jobs list, whole, by state, by type, by queue, and page by page.
        async def listed(**f: Any) -> list[str]:
            return [r.id for r in await backend.job_list(JobFilter(limit=1000, **f))]

        assert await listed() == _newest_first(rows)
        assert await listed(state="leased") == _newest_first(leased)
        assert await listed(type="beta") == _newest_first([r for r in rows if r["type"] == "beta"])
        assert await listed(queue="qa", state="leased") == _newest_first(
            [r for r in leased if r["queue"] == "qa"]
        )
        paged: list[str] = []
        before = None
        while True:
            page = await backend.job_list(JobFilter(limit=7, before=before))
            paged += [r.id for r in page]
            if len(page) < 7:
                break
            before = (page[-1].created_at, page[-1].id)
        assert paged == _newest_first(rows)

        # Search: filters, windows (which must count leased jobs as they did), keys, text.
        async def searched(**f: Any) -> list[str]:
            found = await backend.job_search(JobSearchParams(limit=1000, **f))
            return [r.id for r in found.records]

        assert await searched() == _newest_first(rows)
        assert await searched(state="leased") == _newest_first(leased)
        assert await searched(type="alpha") == _newest_first(
            [r for r in rows if r["type"] == "alpha"]
        )
        assert await searched(queue="qb") == _newest_first([r for r in rows if r["queue"] == "qb"])
        assert await searched(text='"n"') == _newest_first(rows)
        batch = leased[0]["batch_id"]
        in_batch = [r for r in rows if r["batch_id"] == batch]
        assert await searched(key=batch) == _newest_first(in_batch)
        assert await searched(key=leased[0]["id"]) == [leased[0]["id"]]
        for window in (5, 17, 40):
            newest = _newest_first(rows)[:window]
            by_id = {r["id"]: r for r in rows}
            found = await backend.job_search(
                JobSearchParams(queue="qa", limit=1000, filter_scan_limit=window, scan_limit=window)
            )
            assert [r.id for r in found.records] == [i for i in newest if by_id[i]["queue"] == "qa"]
            assert found.scanned_to == (by_id[newest[-1]]["created_at"], newest[-1])
            text = await backend.job_search(
                JobSearchParams(text='"n"', limit=1000, scan_limit=window)
            )
            assert [r.id for r in text.records] == newest
            counted = await backend.job_search_count(
                JobSearchParams(queue="qa", filter_scan_limit=window, scan_limit=window)
            )
            assert counted >= len([i for i in newest if by_id[i]["queue"] == "qa"])
        for f in ({}, {"state": "leased"}, {"type": "beta"}, {"queue": "qc"}, {"text": '"n"'}):
            expected = [r for r in rows if all(r[k] == v for k, v in f.items() if k != "text")]
            assert await backend.job_search_count(JobSearchParams(**f)) == len(expected), f

        # Counts: by queue, type and state; by queue; batch progress; the event feed.
        counts = await backend.job_counts(JobCountParams())
        assert {(c.queue, c.type, c.state): c.count for c in counts} == Counter(
            (r["queue"], r["type"], r["state"]) for r in rows
        )
        by_queue = {q.name: q for q in await backend.queue_counts(QueueCountsParams())}
        depths = {q.name: q for q in await backend.queue_depths(QueueCountsParams())}
        for name in ("qa", "qb", "qc"):
            states = Counter(r["state"] for r in rows if r["queue"] == name)
            assert {k: v for k, v in by_queue[name].by_state.items() if v} == dict(states), name
            assert depths[name].leased == states["leased"], name
            assert depths[name].failed == states["failed"], name
        for r in {r["batch_id"]: r for r in rows}.values():
            progress = await backend.job_batch_counts(JobBatchGetParams(r["batch_id"]))
            assert progress is not None
            expected_states = Counter(x["state"] for x in rows if x["batch_id"] == r["batch_id"])
            assert {k: v for k, v in progress.by_state.items() if v} == dict(expected_states)
        summaries = await backend.job_batch_list(JobBatchListParams(limit=50))
        assert len(summaries) == 5
        for s in summaries:
            expected_states = Counter(x["state"] for x in rows if x["batch_id"] == s.id)
            assert {k: v for k, v in s.by_state.items() if v} == dict(expected_states)
        events = await backend.job_events(JobEventsParams(JobEventCursor(0.0, 0.0, 0), 1000))
        assert sorted(e.job_id for e in events if e.kind == "enqueued") == sorted(
            r["id"] for r in rows
        )
        assert sorted(e.job_id for e in events if e.kind == "started") == sorted(
            r["id"] for r in leased
        )

        # A queue's messages, oldest first, every state or the leased ones.
        for name in ("qa", "qc"):
            in_queue = [r for r in rows if r["queue"] == name]
            listed_msgs = await backend.message_list(MessageListParams(name, limit=1000))
            assert [m.id for m in listed_msgs] == _newest_first(in_queue)[::-1]
            only_leased = await backend.message_list(MessageListParams(name, "leased", 1000))
            assert [m.id for m in only_leased] == _newest_first(
                [r for r in in_queue if r["state"] == "leased"]
            )[::-1]
    finally:
        await app.close()
