"""The storage methods behind the dashboard, called directly on both backends: the jobs
search (filters, key, payload text in a bounded window, cursor), its count, deleting jobs
and messages, the ahead count, delayed counts, batches, and the per-minute history."""

from __future__ import annotations

from dataclasses import replace

import pytest

from taskflare.backends import Backend
from taskflare.backends.base import (
    JobAheadParams,
    JobBatchCreateParams,
    JobBatchListParams,
    JobDeleteParams,
    JobEnqueueParams,
    JobSearchParams,
    MessageDeleteParams,
    QueueCountsParams,
    QueuePauseParams,
    StatsAddParams,
    StatsHistoryParams,
    StatsMinute,
    StatsPruneParams,
)

from .conftest import claim, enqueue, job, message, record

pytestmark = pytest.mark.asyncio


async def test_search_filters_by_status_type_queue_and_pages_by_cursor(backend: Backend) -> None:
    ids = await enqueue(
        backend,
        *(job("charge", "billing", body=b'{"n": %d}' % n) for n in range(5)),
        *(job("mail", "emails") for _ in range(3)),
    )
    await claim(backend, "emails", 1, types=("mail",))
    everything = (await backend.job_search(JobSearchParams(limit=100))).records
    assert [r.id for r in everything] == list(reversed(ids))  # newest first
    by_type = (await backend.job_search(JobSearchParams(type="charge", limit=100))).records
    assert {r.id for r in by_type} == set(ids[:5])
    leased = (await backend.job_search(JobSearchParams(state="leased", limit=100))).records
    assert [r.queue for r in leased] == ["emails"]
    mixed = JobSearchParams(state="ready", queue="emails", limit=100)
    assert len((await backend.job_search(mixed)).records) == 2
    first = (await backend.job_search(JobSearchParams(type="charge", limit=2))).records
    after = (first[-1].created_at, first[-1].id)
    onward = JobSearchParams(type="charge", limit=10, before=after)
    rest = (await backend.job_search(onward)).records
    assert [r.id for r in first + rest] == list(reversed(ids[:5]))
    assert await backend.job_search_count(JobSearchParams()) == 8
    assert await backend.job_search_count(JobSearchParams(state="ready", type="mail")) == 2


async def test_a_filtered_count_looks_into_a_bounded_window_of_its_index(
    backend: Backend,
) -> None:
    """A filter that matches (almost) nothing must not walk its whole index: the count
    looks at the newest `filter_scan_limit` entries of the index that drives it."""
    await enqueue(backend, *(job("charge", "billing") for _ in range(6)))
    await enqueue(backend, *(job("mail", "emails") for _ in range(6)))

    async def count(window: int, **filters: str) -> int:
        return await backend.job_search_count(JobSearchParams(**filters, filter_scan_limit=window))

    assert await count(5, queue="billing") == 0  # the newest 5 are all mail
    assert await count(100, queue="billing") == 6
    assert await count(5, queue="emails") == 5
    assert await count(5, state="ready", queue="billing") == 0  # driven by the status index
    assert await count(100, state="ready", queue="billing") == 6
    assert await count(5, type="charge", queue="billing") == 5  # driven by the type index
    assert await count(5, type="mail", queue="billing") == 0
    assert await count(100, type="charge", state="ready") == 6


async def test_search_by_time_range_is_inclusive(backend: Backend) -> None:
    ids = await enqueue(backend, job(), job(), job())
    stored = [await record(backend, i) for i in ids]
    middle = stored[1].created_at
    found = await backend.job_search(JobSearchParams(created_from=middle, created_to=middle))
    assert ids[1] in [r.id for r in found.records]
    later = await backend.job_search_count(JobSearchParams(created_from=stored[2].created_at))
    assert later == sum(1 for r in stored if r.created_at >= stored[2].created_at)


async def test_search_by_key_finds_id_idempotency_key_correlation_and_batch(
    backend: Backend,
) -> None:
    await backend.job_batch_create(JobBatchCreateParams("batch-1", "charge", 2))
    ids = await enqueue(
        backend, job(key="order-7"), job(batch_id="batch-1"), job(batch_id="batch-1"), job()
    )
    by_id = await backend.job_search(JobSearchParams(key=ids[3]))
    assert [r.id for r in by_id.records] == [ids[3]]
    by_key = await backend.job_search(JobSearchParams(key="order-7"))
    assert [r.id for r in by_key.records] == [ids[0]]
    by_batch = await backend.job_search(JobSearchParams(key="batch-1"))
    assert {r.id for r in by_batch.records} == set(ids[1:3])
    assert await backend.job_search_count(JobSearchParams(key="batch-1", state="failed")) == 0


async def test_payload_search_examines_a_bounded_window_and_says_where_it_stopped(
    backend: Backend,
) -> None:
    needle_ids = await enqueue(backend, job(body=b'{"email": "x<script>@example.com"}'))
    await enqueue(backend, *(job(body=b'{"email": "other@example.com"}') for _ in range(6)))
    found = await backend.job_search(JobSearchParams(text="<script>", limit=10, scan_limit=3))
    assert found.records == [] and found.scanned_to is not None  # only the newest 3 looked at
    onward = JobSearchParams(text="<script>", limit=10, scan_limit=3, before=found.scanned_to)
    second = await backend.job_search(onward)
    assert second.records == [] and second.scanned_to is not None
    third = await backend.job_search(
        JobSearchParams(text="<script>", limit=10, scan_limit=3, before=second.scanned_to)
    )
    assert [r.id for r in third.records] == needle_ids and third.scanned_to is None
    assert await backend.job_search_count(JobSearchParams(text="<script>")) == 1
    # A count with a text looks into the newest `scan_limit` jobs only: bounded work.
    assert await backend.job_search_count(JobSearchParams(text="<script>", scan_limit=6)) == 0
    assert await backend.job_search_count(JobSearchParams(text="other", scan_limit=4)) == 4
    typed = JobSearchParams(text="<script>", type="charge", state="ready", scan_limit=7)
    assert await backend.job_search_count(typed) == 1


async def test_payload_search_matches_json_strings_as_they_read_unescaped(
    backend: Backend,
) -> None:
    bodies = {
        "newline": b'{"address": "1 Main St\\nSpringfield\\tUSA"}',
        "quote": b'{"note": "Ann said \\"hi\\""}',
        "escaped": b'{"city": "Z\\u00fcrich", "deep": [{"k\\\\ey": 1}]}',
        "nul": b'{"raw": "a\\u0000b caf\\u00e9"}',
        "wildcards": b'{"promo": "50%_off"}',
    }
    stored = await enqueue(backend, *(job(body=body) for body in bodies.values()))
    ids = dict(zip(bodies, stored, strict=True))
    # A text body (not JSON): its bytes only.
    text = replace(message("jobs", b'Bob said "hi" \\u00fc', content_type="text"), type="charge")
    (text_id,) = await enqueue(backend, text)

    async def found(needle: str, **filters: object) -> set[str]:
        params = JobSearchParams(text=needle, limit=50, **filters)  # type: ignore[arg-type]
        page = {r.id for r in (await backend.job_search(params)).records}
        assert await backend.job_search_count(params) == len(page)
        return page

    assert await found("St\nSpringfield\tUSA") == {ids["newline"]}
    assert await found('Ann said "hi"') == {ids["quote"]}
    assert await found('said "hi"') == {ids["quote"], text_id}
    assert await found("Zürich") == {ids["escaped"]}
    assert await found("k\\ey") == {ids["escaped"]}  # a key, unescaped
    assert await found("café") == {ids["nul"]}  # a body with an escaped NUL still parses
    assert await found("%") == {ids["wildcards"]}  # LIKE wildcards are themselves
    assert await found("0_o") == set()
    assert await found("\\u00fc") == {ids["escaped"], text_id}  # the stored text too
    assert await found('Bob said "hi"') == {text_id}
    assert await found("1") == {ids["newline"], ids["escaped"]}
    # A key search filtered by text decides the same way.
    assert await found('said "hi"', key=ids["quote"]) == {ids["quote"]}
    assert await found('said "hi"', key=ids["newline"]) == set()


async def test_delete_jobs_removes_them_and_only_jobs(backend: Backend) -> None:
    ids = await enqueue(backend, job(key="k1"), job())
    plain = await enqueue(backend, message("q"))
    deleted = await backend.job_delete_many(JobDeleteParams([*ids, *plain, "missing"]))
    assert deleted == 2
    assert await backend.job_search_count(JobSearchParams()) == 0
    assert (await record(backend, plain[0])).state == "ready"  # a plain message is no job
    # The idempotency key no longer points at the deleted job.
    again = await backend.job_enqueue(JobEnqueueParams(job(key="k1"), 3600.0))
    assert again.duplicate is False


async def test_delete_messages_spares_leased_ones_and_other_queues(backend: Backend) -> None:
    ids = await enqueue(backend, message("q"), message("q"), message("q"))
    other = await enqueue(backend, message("r"))
    claimed = await claim(backend, "q", 1)
    held = claimed.messages[0].id
    deleted = await backend.message_delete_many(MessageDeleteParams("q", [*ids, *other]))
    assert deleted == 2
    assert (await record(backend, held)).state == "leased"
    assert (await record(backend, other[0])).state == "ready"


async def test_ahead_count_and_delayed_counts(backend: Backend) -> None:
    first, urgent = await enqueue(backend, job(), job(priority=5))
    later, delayed = await enqueue(backend, job(), job(delay=3600))
    target = await record(backend, later)
    ahead = await backend.job_ahead_count(
        JobAheadParams("jobs", target.priority, target.available_at, target.id)
    )
    assert ahead == 2  # `first` (ready earlier) and `urgent` (higher priority)
    (depth,) = await backend.queue_depths(QueueCountsParams())
    assert (depth.name, depth.ready, depth.delayed, depth.leased) == ("jobs", 3, 1, 0)
    assert depth.oldest_ready_at == (await record(backend, first)).available_at
    assert delayed and urgent


async def test_queue_depths_count_unfinished_and_failed_rows_and_stored_queues(
    backend: Backend,
) -> None:
    await backend.queue_pause(QueuePauseParams("idle", True))
    await enqueue(backend, message("q"), message("q"), message("q", delay=3600))
    await claim(backend, "q", 1)
    depths = {d.name: d for d in await backend.queue_depths(QueueCountsParams())}
    assert depths["idle"].paused is True and depths["idle"].ready == 0
    q = depths["q"]
    assert (q.ready, q.delayed, q.leased, q.failed, q.paused) == (1, 1, 1, 0, False)
    only = await backend.queue_depths(QueueCountsParams("q"))
    assert [d.name for d in only] == ["q"]


async def test_batch_list_counts_each_batch_by_state(backend: Backend) -> None:
    await backend.job_batch_create(JobBatchCreateParams("b-1", "charge", 3))
    await enqueue(backend, *(job(batch_id="b-1") for _ in range(3)))
    await claim(backend, "jobs", 1)
    (summary,) = await backend.job_batch_list(JobBatchListParams(10))
    assert (summary.id, summary.type, summary.total) == ("b-1", "charge", 3)
    assert summary.by_state == {"ready": 2, "leased": 1}


async def test_batch_list_counts_stop_at_the_count_limit(backend: Backend) -> None:
    await backend.job_batch_create(JobBatchCreateParams("b-1", "charge", 6))
    await enqueue(backend, *(job(batch_id="b-1") for _ in range(6)))
    await claim(backend, "jobs", 1)
    (summary,) = await backend.job_batch_list(JobBatchListParams(10, count_limit=3))
    # Five ready jobs counted up to 3 (each count reads at most 3 index entries).
    assert summary.total == 6 and summary.by_state == {"ready": 3, "leased": 1}


async def test_history_minutes_are_summed_listed_and_pruned(backend: Backend) -> None:
    await backend.stats_add(
        StatsAddParams([StatsMinute(600, "q", 3, 1, 0, 0.5, (2, 1)), StatsMinute(660, "q", 1)])
    )
    await backend.stats_add(StatsAddParams([StatsMinute(600, "q", 2, 0, 1, 0.25, (0, 0, 4))]))
    rows = await backend.stats_history(StatsHistoryParams(0))
    assert rows[0] == StatsMinute(600, "q", 5, 1, 1, 0.75, (2, 1, 4) + (0,) * 11)
    assert [r.minute for r in rows] == [600, 660]
    assert await backend.stats_history(StatsHistoryParams(0, queue="other")) == []
    assert await backend.stats_prune(StatsPruneParams(660)) == 1
    assert [r.minute for r in await backend.stats_history(StatsHistoryParams(0))] == [660]
