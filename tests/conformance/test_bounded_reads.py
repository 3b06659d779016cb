"""The reads that stay bounded with a million stored jobs, on both backends: per-queue
counts that stop at a limit (and say which did), queues found without a queue row, and
the message listing that merges every state's index oldest first, paged by cursor."""

from __future__ import annotations

from dataclasses import replace

import pytest

from taskflare.backends import Backend
from taskflare.backends.base import (
    EXACT_COUNT,
    JobAheadParams,
    JobSearchParams,
    MessageListParams,
    QueueCountsParams,
    QueueDeclareParams,
    QueueSettings,
)

from .conftest import claim, enqueue, job, message, record
from .test_jobs import finish

pytestmark = pytest.mark.asyncio


async def stock(backend: Backend) -> None:
    """Queue "jobs": 2 ready now, 1 delayed, 3 leased, 3 failed (no queue row)."""
    for _ in range(8):
        await enqueue(backend, job())
    await enqueue(backend, job(delay=3600))
    for _ in range(3):
        await finish(backend, "jobs", "failed")
    await claim(backend, "jobs", 3)


async def test_depths_stop_at_the_count_limit_and_say_so(backend: Backend) -> None:
    await stock(backend)
    (exact,) = await backend.queue_depths(QueueCountsParams(count_limit=3))
    assert (exact.name, exact.ready, exact.delayed, exact.leased, exact.failed) == (
        "jobs",
        2,
        1,
        3,
        3,
    )
    assert exact.capped == frozenset()
    (capped,) = await backend.queue_depths(QueueCountsParams(count_limit=2))
    assert (capped.leased, capped.failed) == (2, 2)
    assert capped.capped == {"ready", "delayed", "leased", "failed"}
    assert capped.ready + capped.delayed == 3  # the window counted one past the limit


async def test_counts_by_state_stop_at_the_count_limit_and_say_so(backend: Backend) -> None:
    await stock(backend)
    (exact,) = await backend.queue_counts(QueueCountsParams(count_limit=EXACT_COUNT))
    assert exact.by_state == {"ready": 3, "leased": 3, "failed": 3}
    assert exact.capped == frozenset()
    (capped,) = await backend.queue_counts(QueueCountsParams(count_limit=2))
    assert capped.by_state == {"ready": 2, "leased": 2, "failed": 2}
    assert capped.capped == {"ready", "leased", "failed"}
    first = await record(backend, (await backend.message_list(MessageListParams("jobs"))).pop(0).id)
    assert capped.oldest_ready_at is not None and capped.oldest_ready_at >= first.created_at


async def test_queues_are_found_with_or_without_a_queue_row(backend: Backend) -> None:
    await backend.queue_declare_many(QueueDeclareParams([QueueSettings("declared", "{}")]))
    await enqueue(backend, message("loose-a"), message("loose-b", delay=3600))
    await finish_plain_queue_free(backend)
    depths = {d.name: d for d in await backend.queue_depths(QueueCountsParams())}
    assert set(depths) == {"declared", "loose-a", "loose-b", "leased-only"}
    assert (depths["loose-b"].ready, depths["loose-b"].delayed) == (0, 1)
    assert depths["leased-only"].leased == 1
    counts = {c.name for c in await backend.queue_counts(QueueCountsParams())}
    assert counts == set(depths)
    (one,) = await backend.queue_depths(QueueCountsParams("loose-a"))
    assert (one.name, one.ready) == ("loose-a", 1)
    assert await backend.queue_depths(QueueCountsParams("nowhere")) == []


async def finish_plain_queue_free(backend: Backend) -> None:
    """A queue whose only message is leased (found through the by-state index)."""
    await enqueue(backend, message("leased-only"))
    await claim(backend, "leased-only", 1)


async def test_message_list_merges_every_state_oldest_first_by_cursor(backend: Backend) -> None:
    await enqueue(backend, job(), job(), job(), job(), job(), job(delay=3600))
    for state in ("completed", "failed", "cancelled"):
        await finish(backend, "jobs", state)
    await claim(backend, "jobs", 1)
    everything = await backend.message_list(MessageListParams("jobs", limit=100))
    assert len(everything) == 6
    assert [(m.created_at, m.id) for m in everything] == sorted(
        (m.created_at, m.id) for m in everything
    )
    assert {m.state for m in everything} == {"ready", "leased", "completed", "failed", "cancelled"}
    paged, after = [], None
    while True:
        page = await backend.message_list(MessageListParams("jobs", limit=2, after=after))
        paged += page
        if len(page) < 2:
            break
        after = (page[-1].created_at, page[-1].id)
    assert [m.id for m in paged] == [m.id for m in everything]
    ready = await backend.message_list(MessageListParams("jobs", "ready", limit=100))
    assert [m.id for m in ready] == [m.id for m in everything if m.state == "ready"]
    failed = await backend.message_list(MessageListParams("jobs", "failed", limit=100))
    assert [m.state for m in failed] == ["failed"]


async def test_ahead_count_stops_at_its_limit(backend: Backend) -> None:
    await enqueue(backend, *(job(priority=5) for _ in range(4)))
    (last,) = await enqueue(backend, job())
    target = await record(backend, last)
    params = JobAheadParams("jobs", target.priority, target.available_at, target.id)
    assert await backend.job_ahead_count(params) == 4
    limited = JobAheadParams("jobs", target.priority, target.available_at, target.id, 2)
    assert await backend.job_ahead_count(limited) == 3  # one past the limit: "more than 2"


async def follow(backend: Backend, params: JobSearchParams) -> tuple[list[list[str]], int]:
    """Every page of a search, cursor by cursor: the ids per page, and how many pages
    said they stopped at their window."""
    pages: list[list[str]] = []
    stopped = 0
    while True:
        found = await backend.job_search(params)
        pages.append([r.id for r in found.records])
        if found.records and len(found.records) == params.limit:
            last = found.records[-1]
            params = replace(params, before=(last.created_at, last.id))
        elif found.scanned_to is not None:
            stopped += 1
            params = replace(params, before=found.scanned_to)
        else:
            return pages, stopped


@pytest.mark.parametrize(
    "filters",
    [
        {"type": "render", "queue": "emails"},  # driven by the type index
        {"state": "ready", "queue": "emails"},  # by the status index
        {"state": "ready", "type": "render", "queue": "emails"},
        {"queue": "emails"},  # by the creation index
    ],
    ids=["type+queue", "status+queue", "status+type+queue", "queue"],
)
async def test_a_filter_examines_a_bounded_window_and_a_cursor_goes_on(
    backend: Backend, filters: dict[str, str]
) -> None:
    # The one match is the oldest job; seven newer ones of its type live on another queue.
    needle = await enqueue(backend, job("render", "emails"))
    others = await enqueue(backend, *(job("render", "reports") for _ in range(7)))
    params = JobSearchParams(**filters, limit=10, filter_scan_limit=3)  # type: ignore[arg-type]
    first = await backend.job_search(params)
    # Nothing among the newest 3: an empty page that says where it stopped (the 3rd).
    assert first.records == []
    assert first.scanned_to is not None
    third_newest = await record(backend, others[-3])
    assert first.scanned_to == (third_newest.created_at, third_newest.id)
    pages, stopped = await follow(backend, params)
    assert pages == [[], [], needle]  # windows of 3, 3, then 2 jobs (the last not full)
    assert stopped == 2
    # Without a budget in the way, the same filter finds it at once.
    unbounded = replace(params, filter_scan_limit=100)
    found = await backend.job_search(unbounded)
    assert [r.id for r in found.records] == needle and found.scanned_to is None


async def test_a_common_filter_fills_its_page_within_the_window(backend: Backend) -> None:
    ids = await enqueue(backend, *(job("render", "reports") for _ in range(6)))
    params = JobSearchParams(type="render", limit=2, filter_scan_limit=3)
    pages, stopped = await follow(backend, params)
    # Full pages go on from their last job; the window restarts after each cursor.
    assert [i for page in pages for i in page] == list(reversed(ids))
    assert stopped == 0
