"""Jobs (issue 4, points 8 and 9): stats in seed 002's shape, and batches of jobs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from taskflare import App, InvalidPayload, InvalidQueueConfig, JobStatus, PermanentError
from taskflare.backends.base import EnqueueParams
from taskflare.ids import uuid7
from taskflare.testing import drain


class Item(BaseModel):
    sku: str


async def test_stats_totals_by_status_with_seed_rates_per_queue_and_type(app: App) -> None:
    app.job("email")(lambda payload: None)

    @app.job("crawl", queue="crawls")
    def crawl(payload: bool) -> None:
        if payload:
            raise PermanentError("blocked")

    for _ in range(3):
        await app.enqueue("email")
    await app.enqueue("crawl", False)
    await app.enqueue("crawl", True)
    await drain(app)
    cancelled = await app.enqueue("email")
    await app.cancel(cancelled.id)
    await app.enqueue("email")
    await app.enqueue("crawl", False)

    stats = await app.stats()
    assert {k: stats[k] for k in ("total", "pending", "processing", "completed", "failed")} == {
        "total": 8,
        "pending": 2,
        "processing": 0,
        "completed": 4,
        "failed": 1,
    }
    assert stats["cancelled"] == 1
    assert stats["completionRate"] == "50.00%"
    assert stats["failureRate"] == "12.50%"
    assert stats["byQueue"]["crawls"] == {
        "total": 3,
        "pending": 1,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "completionRate": "33.33%",
        "failureRate": "33.33%",
    }
    assert stats["byQueue"]["default"]["total"] == 5
    assert stats["byQueue"]["default"]["completionRate"] == "60.00%"
    assert stats["byType"]["email"]["cancelled"] == 1
    assert stats["byType"]["crawl"]["failureRate"] == "33.33%"

    only_crawls = await app.stats(queue="crawls")
    assert only_crawls["total"] == 3 and set(only_crawls["byQueue"]) == {"crawls"}
    only_email = await app.stats(type="email")
    assert only_email["total"] == 5 and set(only_email["byType"]) == {"email"}
    assert only_email["completionRate"] == "60.00%" and only_email["failureRate"] == "0.00%"


async def test_stats_of_an_empty_database(app: App) -> None:
    app.job("email")(lambda payload: None)
    stats = await app.stats()
    assert stats["total"] == 0
    assert stats["completionRate"] == "0.00%" and stats["failureRate"] == "0.00%"
    assert stats["byQueue"] == {} and stats["byType"] == {}


async def test_stats_count_jobs_but_not_plain_queue_messages(app: App) -> None:
    app.job("email")(lambda payload: None)
    q = app.queue("plain", max_batch_timeout=0)
    await q.send(1)
    await app.enqueue("email")
    assert (await app.stats())["total"] == 1


async def test_enqueue_many_makes_a_batch_with_counts_and_progress(app: App) -> None:
    @app.job("import-row")
    def import_row(payload: int) -> int:
        if payload % 5 == 0:
            raise PermanentError("bad row")
        return payload

    batch_id = await app.enqueue_many("import-row", range(25), chunk_size=10)
    batch = await app.get_batch(batch_id)
    assert batch is not None
    assert (batch.id, batch.type, batch.total, batch.pending) == (batch_id, "import-row", 25, 25)
    assert (batch.completed, batch.failed, batch.progress) == (0, 0, 0.0)
    jobs = (await app.list_jobs(type="import-row", limit=100)).jobs
    assert len(jobs) == 25 and {j.batch_id for j in jobs} == {batch_id}
    assert sorted(j.payload for j in jobs) == list(range(25))

    await drain(app)
    done = await app.get_batch(batch_id)
    assert done is not None
    assert (done.total, done.pending, done.completed, done.failed) == (25, 0, 20, 5)
    assert done.progress == 1.0
    assert done.to_dict()["progress"] == 1.0


async def test_batch_progress_counts_finished_jobs(app: App) -> None:
    app.job("row")(lambda payload: None)
    batch_id = await app.enqueue_many("row", range(4))
    first = (await app.list_jobs(type="row", limit=10)).jobs
    await app.cancel(first[0].id)
    batch = await app.get_batch(batch_id)
    assert batch is not None
    assert (batch.cancelled, batch.pending, batch.progress) == (1, 3, 0.25)
    assert batch.to_dict()["progress"] == 0.25


async def test_the_batches_list_caps_each_count_and_says_which(app: App) -> None:
    app.job("row")(lambda payload: None)
    batch_id = await app.enqueue_many("row", range(5))
    for job in (await app.list_jobs(type="row", limit=10)).jobs[:3]:
        await app.cancel(job.id)
    (listed,) = await app.read.batches(count_limit=2)
    # 3 cancelled counted up to 2 ("2+"); progress from the 2 still pending: 3 of 5 done.
    assert (listed["id"], listed["cancelled"], listed["pending"]) == (batch_id, 2, 2)
    assert listed["capped"] == ["cancelled"] and listed["progress"] == 0.6
    (pending,) = await app.read.batches(count_limit=1)
    assert pending["capped"] == ["pending", "cancelled"] and pending["progress"] is None
    (exact,) = await app.read.batches()
    assert (exact["cancelled"], exact["capped"], exact["progress"]) == (3, [], 0.6)


async def test_enqueue_many_with_an_invalid_payload_stores_nothing(app: App) -> None:
    @app.job("import-item")
    async def import_item(payload: Item) -> None:
        return None

    payloads: list[Any] = [{"sku": f"s{i}"} for i in range(10)]
    payloads[6] = {"sku": None}
    with pytest.raises(InvalidPayload, match="sku"):
        await app.enqueue_many("import-item", payloads, chunk_size=3)
    assert (await app.list_jobs()).jobs == []
    assert (await app.stats())["total"] == 0


async def test_enqueue_many_rejects_bad_chunk_sizes(app: App) -> None:
    app.job("row")(lambda payload: None)
    for bad in (0, -1, 10_001, 2.5, True):
        with pytest.raises(InvalidQueueConfig, match="chunk_size"):
            await app.enqueue_many("row", [1], chunk_size=bad)  # type: ignore[arg-type]


async def test_enqueue_many_jobs_run_and_keep_the_options(app: App) -> None:
    app.job("row", max_attempts=2)(lambda payload: payload * 10)
    batch_id = await app.enqueue_many(
        "row", [1, 2], priority=4, max_attempts=7, correlation_id="imp"
    )
    jobs = (await app.list_jobs(limit=10)).jobs
    assert {(j.priority, j.max_attempts, j.correlation_id) for j in jobs} == {(4, 7, "imp")}
    await drain(app)
    assert sorted(j.result for j in (await app.list_jobs(limit=10)).jobs) == [10, 20]
    assert all(j.status is JobStatus.COMPLETED for j in (await app.list_jobs()).jobs)
    assert (await app.get_batch(batch_id)).progress == 1.0  # type: ignore[union-attr]


async def test_unknown_batch_is_none(app: App) -> None:
    app.job("row")(lambda payload: None)
    assert await app.get_batch(uuid7()) is None


async def test_enqueue_many_stores_the_storages_default_chunk_a_transaction(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `chunk_size`, a chunk (one transaction) is the storage's `enqueue_chunk`:
    5 000 jobs on PostgreSQL, whose inserts keep no one waiting; 1 000 on SQLite, whose
    transaction holds the database's only write lock. A given `chunk_size` wins."""
    app.job("row")(lambda payload: None)
    backend = await app.backend()
    expected = 5000 if app.database_url.startswith("postgres") else 1000
    assert backend.enqueue_chunk == expected
    chunks: list[int] = []
    store = backend.message_enqueue_many

    async def counting(params: EnqueueParams) -> None:
        chunks.append(len(params.messages))
        await store(params)

    monkeypatch.setattr(backend, "message_enqueue_many", counting)
    batch_id = await app.enqueue_many("row", range(1500))
    assert chunks == ([1500] if expected == 5000 else [1000, 500])
    batch = await app.get_batch(batch_id)
    assert batch is not None and (batch.total, batch.pending) == (1500, 1500)
    chunks.clear()
    await app.enqueue_many("row", range(5), chunk_size=2)
    assert chunks == [2, 2, 1]
    assert (await app.stats())["total"] == 1505


async def test_enqueue_many_stores_untyped_payloads_as_enqueue_does(app: App) -> None:
    """A type without a payload model: payloads holding null, text, numbers and nesting
    are stored as the JSON `enqueue` stores for them."""
    app.job("plain")(lambda payload: None)
    payloads: list[Any] = [None, {"x": None}, [1, "null", 2.5], "text", {"a": {"b": [None]}}]
    await app.enqueue_many("plain", payloads)
    for payload in payloads:
        await app.enqueue("plain", payload)
    jobs = (await app.list_jobs(type="plain", limit=20)).jobs
    stored = [j.payload for j in sorted(jobs, key=lambda j: j.id)]
    assert stored == payloads + payloads
