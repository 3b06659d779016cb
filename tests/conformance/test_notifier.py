"""Notifier: every write that can wake a waiter raises its topic when it commits, and
`wait_for_change` returns as soon as it does; claims and plain acks raise nothing.

On PostgreSQL the signal arrives through LISTEN, so each test first makes sure the
backend is listening; notifications then arrive in commit order, which is how a test
proves a topic was *not* raised: a later control write's topic has arrived, and the
first topic has not moved.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from helpers import wait_until
from taskflare.backends import Backend, open_backend
from taskflare.backends.base import (
    CANCEL_TOPIC,
    DONE_TOPIC,
    CancelOutcome,
    CompleteOutcome,
    CronTick,
    CronTickRecordParams,
    DeadLetterReprocessParams,
    FailOutcome,
    JobIdParams,
    LeaseRef,
    QueuePauseParams,
    ReleaseParams,
    RetryOutcome,
    Settlement,
    ready_topic,
)
from taskflare.backends.sqlite.fileevents import FileEvents
from taskflare.backends.sqlite.walwatch import WalIndexWatch
from taskflare.ids import uuid7

from .conftest import claim, claim_one, enqueue, job, message

WITHIN = 5.0  # seconds a raised topic may take to reach the waiter (PostgreSQL: a NOTIFY)


@pytest.fixture
async def notifier(backend: Backend) -> Backend:
    """The test's backend, already hearing every change (PostgreSQL: LISTEN is up)."""
    probe = ready_topic("probe")
    seq = backend.change_seq(probe)
    await enqueue(backend, message("probe"))
    # PostgreSQL starts listening here: the probe's NOTIFY arrives, or the listener,
    # once connected, raises every topic (anything may have changed before it listened).
    assert await backend.wait_for_change(probe, seq, WITHIN)
    return backend


@asynccontextmanager
async def raises(backend: Backend, topic: str) -> AsyncIterator[None]:
    """Assert that the writes of the block raise `topic` and wake a waiter promptly."""
    seq = backend.change_seq(topic)
    yield
    assert await backend.wait_for_change(topic, seq, WITHIN), f"{topic!r} was not raised"


async def barrier(backend: Backend) -> None:
    """Return once every change committed so far has reached this backend's waiters: a
    control write's topic arrives after theirs (PostgreSQL delivers in commit order)."""
    control = ready_topic("control")
    seq = backend.change_seq(control)
    await enqueue(backend, message("control"))
    assert await backend.wait_for_change(control, seq, WITHIN)


# -- ready:<queue> ----------------------------------------------------------------------


async def test_enqueue_raises_ready_for_its_queue(notifier: Backend) -> None:
    async with raises(notifier, ready_topic("q")):
        await enqueue(notifier, message("q"), message("q"))


async def test_a_settled_retry_raises_ready(notifier: Backend) -> None:
    await enqueue(notifier, message("q"))
    delivery = await claim_one(notifier, "q")
    async with raises(notifier, ready_topic("q")):
        retry = RetryOutcome(delivery.id, delivery.lease_id, 0, "again")
        await notifier.message_settle_many(Settlement(retries=[retry]))


async def test_release_raises_ready(notifier: Backend) -> None:
    await enqueue(notifier, message("q"))
    delivery = await claim_one(notifier, "q")
    async with raises(notifier, ready_topic("q")):
        refs = [LeaseRef(delivery.id, delivery.lease_id)]
        assert await notifier.message_release_many(ReleaseParams(refs)) == 1


async def test_resuming_a_paused_queue_raises_ready(notifier: Backend) -> None:
    await notifier.queue_pause(QueuePauseParams("q", paused=True))
    async with raises(notifier, ready_topic("q")):
        await notifier.queue_pause(QueuePauseParams("q", paused=False))


async def test_a_dead_letter_copy_raises_ready_for_the_dead_letter_queue(
    notifier: Backend,
) -> None:
    await enqueue(notifier, message("q"))
    delivery = await claim_one(notifier, "q")
    async with raises(notifier, ready_topic("q-dlq")):
        fail = FailOutcome(delivery.id, delivery.lease_id, "boom", "q-dlq", uuid7())
        await notifier.message_settle_many(Settlement(fails=[fail]))


async def test_a_manual_job_retry_raises_ready(notifier: Backend) -> None:
    await enqueue(notifier, job())
    delivery = await claim_one(notifier, "jobs")
    fail = FailOutcome(delivery.id, delivery.lease_id, "boom")
    await notifier.message_settle_many(Settlement(fails=[fail]))
    async with raises(notifier, ready_topic("jobs")):
        await notifier.job_retry(JobIdParams(delivery.id))


@pytest.mark.parametrize("kind", ["message", "job"])
async def test_dead_letter_reprocess_raises_ready_for_the_origin_queue(
    notifier: Backend, kind: str
) -> None:
    await enqueue(notifier, message("origin") if kind == "message" else job(queue="origin"))
    delivery = await claim_one(notifier, "origin")
    fail = FailOutcome(delivery.id, delivery.lease_id, "boom", "origin-dlq", uuid7())
    await notifier.message_settle_many(Settlement(fails=[fail]))
    async with raises(notifier, ready_topic("origin")):
        reprocess = DeadLetterReprocessParams("origin-dlq")
        assert await notifier.dead_letter_reprocess(reprocess) == 1


async def test_a_cron_tick_with_its_job_raises_ready(notifier: Backend) -> None:
    async with raises(notifier, ready_topic("cron")):
        tick = CronTick("nightly", 1000.0, "enqueued")
        await notifier.cron_tick_record(CronTickRecordParams(tick, job("report", "cron")))


# -- done / cancel ----------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
async def test_a_settled_job_outcome_raises_done(notifier: Backend, outcome: str) -> None:
    await enqueue(notifier, job())
    delivery = await claim_one(notifier, "jobs")
    ref = (delivery.id, delivery.lease_id)
    settlement = {
        "completed": Settlement(completes=[CompleteOutcome(*ref, b"1")]),
        "failed": Settlement(fails=[FailOutcome(*ref, "boom")]),
        "cancelled": Settlement(cancels=[CancelOutcome(*ref, "stop")]),
    }[outcome]
    async with raises(notifier, DONE_TOPIC):
        assert (await notifier.message_settle_many(settlement)).states == {delivery.id: outcome}


async def test_cancelling_a_pending_job_raises_done(notifier: Backend) -> None:
    pending = job()
    await enqueue(notifier, pending)
    async with raises(notifier, DONE_TOPIC):
        await notifier.job_cancel(JobIdParams(pending.id))


async def test_cancelling_a_running_job_raises_cancel_then_done_when_it_stops(
    notifier: Backend,
) -> None:
    await enqueue(notifier, job())
    delivery = await claim_one(notifier, "jobs")
    async with raises(notifier, CANCEL_TOPIC):
        await notifier.job_cancel(JobIdParams(delivery.id))
    async with raises(notifier, DONE_TOPIC):
        complete = CompleteOutcome(delivery.id, delivery.lease_id, b"1")
        await notifier.message_settle_many(Settlement(completes=[complete]))


# -- what raises nothing ----------------------------------------------------------------


async def test_a_claim_does_not_raise_ready(notifier: Backend) -> None:
    await enqueue(notifier, message("q"), message("q"))
    await barrier(notifier)
    seq = notifier.change_seq(ready_topic("q"))
    assert len((await claim(notifier, "q", 10)).messages) == 2
    await barrier(notifier)
    assert notifier.change_seq(ready_topic("q")) == seq


async def test_a_plain_ack_does_not_raise_ready(notifier: Backend) -> None:
    await enqueue(notifier, message("q"), message("q"))
    delivered = (await claim(notifier, "q", 10)).messages
    await barrier(notifier)
    seq = notifier.change_seq(ready_topic("q"))
    acks = [LeaseRef(delivered[0].id, delivered[0].lease_id), LeaseRef(delivered[1].id, None)]
    assert (await notifier.message_settle_many(Settlement(acks=acks))).acked == 2
    await barrier(notifier)
    assert notifier.change_seq(ready_topic("q")) == seq


@pytest.mark.parametrize("told_by_kernel", [True, False], ids=["file-events", "wal-header"])
async def test_sqlite_hears_another_connections_commit_without_the_slow_poll(
    database_url: str, told_by_kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit by another process (here: another backend on the same file, which has its
    own connection) wakes a waiter without the slower `PRAGMA data_version` poll, which
    is switched off here to prove it: the kernel reports the write to the WAL (Linux
    inotify) and the WAL-index header then shows the commit; where the kernel cannot
    report writes, the header is read every few milliseconds."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the WAL-index header is SQLite's")
    if told_by_kernel:
        events = FileEvents.open(database_url.removeprefix("sqlite:///"))
        if events is None:
            pytest.skip("this system does not report file writes (no inotify)")
        events.close()
    if not told_by_kernel:  # as on a system without inotify
        monkeypatch.setattr(FileEvents, "open", classmethod(lambda cls, path: None))
    waiter, writer = open_backend(database_url), open_backend(database_url)
    try:
        await waiter.migrate()
        await enqueue(writer, message("warmup"))  # both connections open, -shm exists
        waiter.poll_interval = 3600.0  # type: ignore[attr-defined]
        topic = ready_topic("q")
        since = waiter.change_seq(topic)
        waiting = asyncio.ensure_future(waiter.wait_for_change(topic, since, WITHIN))
        # Commit again and again until the waiter wakes (its watch may begin after the
        # first commit); it must wake well within WITHIN.
        while not waiting.done():
            await enqueue(writer, message("q"))
            await asyncio.wait({waiting}, timeout=0.05)
        assert waiting.result(), "another connection's commits did not wake the waiter"
    finally:
        await waiter.close()
        await writer.close()


async def test_sqlite_hears_an_announced_commit_at_once_after_a_write_that_was_not_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel reports a write to the file before its commit can be seen (here: a
    checkpoint, which commits nothing), so the watch looks again and again for a while;
    a commit made by another taskflare process is announced the moment it is visible and
    ends that looking at once. Proved with the WAL-index header unreadable and the slow
    poll switched off: only the announcement can wake the waiter."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's own watch")
    path = database_url.removeprefix("sqlite:///")
    events = FileEvents.open(path)
    if events is None:
        pytest.skip("this system does not report file writes (no inotify)")
    events.close()
    monkeypatch.setattr(WalIndexWatch, "header", lambda self: None)
    waiter, writer = open_backend(database_url), open_backend(database_url)
    try:
        await waiter.migrate()
        waiter.poll_interval = 3600.0  # type: ignore[attr-defined]
        topic = ready_topic("q")
        seq = waiter.change_seq(topic)
        await enqueue(writer, message("warmup"))  # both connections open, the WAL has frames
        assert await waiter.wait_for_change(topic, seq, WITHIN)  # the watch's first look
        executor = waiter._db  # type: ignore[attr-defined]
        looks = [0]
        poll = executor.poll_data_version

        def counted() -> bool:
            looks[0] += 1
            return bool(poll())

        monkeypatch.setattr(executor, "poll_data_version", counted)
        seq = waiter.change_seq(topic)
        waiting = asyncio.ensure_future(waiter.wait_for_change(topic, seq, WITHIN))
        conn = sqlite3.connect(path)
        try:  # a write to the file that is no commit
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
        await wait_until(lambda: looks[0] >= 1, what="the watch to look after the write")
        assert not waiting.done()
        await enqueue(writer, message("q"))
        assert await waiting, "an announced commit did not wake the waiter"
    finally:
        await waiter.close()
        await writer.close()


async def test_sqlite_waiters_share_one_watch_of_other_processes(database_url: str) -> None:
    """However many fetchers wait (one per queue, two while a queue has a backlog), one
    task per event loop watches the file for other processes' commits: an idle worker's
    cost does not grow with its queues. The watch ends a little after its last waiter."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's own watch")
    waiter, writer = open_backend(database_url), open_backend(database_url)
    try:
        await waiter.migrate()
        await enqueue(writer, message("warmup"))
        topics = [ready_topic(f"q{i}") for i in range(6)]
        waits = [
            asyncio.ensure_future(waiter.wait_for_change(t, waiter.change_seq(t), WITHIN))
            for t in topics
        ]
        await asyncio.sleep(0)  # every waiter has started waiting
        watches = [t for t in asyncio.all_tasks() if t.get_name() == "taskflare-sqlite-watch"]
        assert len(watches) == 1
        await enqueue(writer, message("q0"))
        assert all(await asyncio.gather(*waits)), "a commit elsewhere wakes every waiter"
        await wait_until(lambda: watches[0].done(), what="the watch to end")
    finally:
        await waiter.close()
        await writer.close()
