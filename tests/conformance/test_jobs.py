"""JobStore: idempotent enqueue, history, listing, cancel, retry, progress, counts,
batches, retention, the event feed."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from job_helpers import wait_past
from taskflare.backends import Backend
from taskflare.backends.base import (
    CancelOutcome,
    CancelRequestedParams,
    CancelResult,
    CompleteOutcome,
    EnqueueResult,
    FailOutcome,
    JobAttemptsParams,
    JobBatchCounts,
    JobBatchCreateParams,
    JobBatchGetParams,
    JobCancelResult,
    JobCount,
    JobCountParams,
    JobEnqueueParams,
    JobEventCursor,
    JobEventsParams,
    JobFilter,
    JobIdParams,
    JobProgressParams,
    JobRetryResult,
    LeaseRef,
    MessageRecord,
    NewMessage,
    PruneParams,
    QueuePurgeParams,
    ReleaseParams,
    RetryOutcome,
    RetryResult,
    Settlement,
    State,
)
from taskflare.errors import InvalidMessage

from .conftest import (
    OWNER,
    OpenBackend,
    attempt_of,
    backend_now,
    claim,
    claim_one,
    enqueue,
    gone,
    job,
    message,
    record,
)

DAY = 86_400.0


async def enqueue_job(backend: Backend, new: NewMessage, ttl: float = DAY) -> EnqueueResult:
    return await backend.job_enqueue(JobEnqueueParams(new, idempotency_ttl=ttl))


async def finish(backend: Backend, queue: str, state: str) -> str:
    """Claim the next job of `queue` and settle it into `state`; return its id."""
    delivery = await claim_one(backend, queue)
    ref = (delivery.id, delivery.lease_id)
    settlement = {
        State.COMPLETED: Settlement(completes=[CompleteOutcome(*ref, b'"done"')]),
        State.FAILED: Settlement(fails=[FailOutcome(*ref, "boom")]),
        State.CANCELLED: Settlement(cancels=[CancelOutcome(*ref, "stop")]),
    }[State(state)]
    outcome = Settlement(
        completes=settlement.completes,
        fails=settlement.fails,
        cancels=settlement.cancels,
        attempts=[attempt_of(delivery, state)],
    )
    assert (await backend.message_settle_many(outcome)).states == {delivery.id: state}
    return delivery.id


def ids(records: list[MessageRecord]) -> list[str]:
    return [r.id for r in records]


# -- job_enqueue ------------------------------------------------------------------------


async def test_enqueue_stores_a_pending_job_with_its_fields(backend: Backend) -> None:
    new = NewMessage(
        id="job-1",
        queue="jobs",
        body=b'{"amount": 10}',
        content_type="json",
        priority=4,
        type="charge",
        max_attempts=5,
        idempotency_key="order-1",
        correlation_id="req-9",
        batch_id=None,
    )
    assert await enqueue_job(backend, new) == EnqueueResult("job-1", duplicate=False)
    stored = await record(backend, "job-1")
    assert (stored.state, stored.type, stored.max_attempts) == (State.READY, "charge", 5)
    assert (stored.body, stored.priority, stored.attempts) == (b'{"amount": 10}', 4, 0)
    assert (stored.idempotency_key, stored.correlation_id) == ("order-1", "req-9")
    assert stored.cancel_requested is False and stored.result is None


async def test_a_second_enqueue_with_the_same_type_and_key_returns_the_first_job(
    backend: Backend,
) -> None:
    first, second = job(key="order-42", body=b"1"), job(key="order-42", body=b"2")
    assert await enqueue_job(backend, first) == EnqueueResult(first.id, duplicate=False)
    assert await enqueue_job(backend, second) == EnqueueResult(first.id, duplicate=True)
    assert await gone(backend, second.id)
    assert ids(await backend.job_list(JobFilter())) == [first.id]


async def test_the_same_key_for_another_job_type_is_another_job(backend: Backend) -> None:
    charge, refund = job("charge", key="order-42"), job("refund", key="order-42")
    assert (await enqueue_job(backend, charge)).duplicate is False
    assert await enqueue_job(backend, refund) == EnqueueResult(refund.id, duplicate=False)


async def test_repeating_the_same_enqueue_is_not_a_duplicate(backend: Backend) -> None:
    """A producer that retries after a lost reply sends the same id again."""
    keyed, plain = job(key="k"), job()
    for new in (keyed, plain, keyed, plain):
        assert await enqueue_job(backend, new) == EnqueueResult(new.id, duplicate=False)
    assert sorted(ids(await backend.job_list(JobFilter()))) == sorted([keyed.id, plain.id])


async def test_a_key_past_its_ttl_no_longer_holds(backend: Backend) -> None:
    """Two keys that differ only in their TTL: one of an hour (which no loaded machine
    runs past between two statements) still holds; one of 0.2 s, waited out, no more."""
    first, held = job(key="k"), job(key="hour")
    await enqueue_job(backend, first, ttl=0.2)
    await enqueue_job(backend, held, ttl=3600)
    assert (await enqueue_job(backend, job(key="hour"))).id == held.id
    await wait_past(0.3)
    fresh = job(key="k")
    assert await enqueue_job(backend, fresh) == EnqueueResult(fresh.id, duplicate=False)
    assert (await enqueue_job(backend, job(key="k"))) == EnqueueResult(fresh.id, duplicate=True)
    assert (await enqueue_job(backend, job(key="hour"))).id == held.id


async def test_a_key_whose_job_was_deleted_no_longer_holds(backend: Backend) -> None:
    first = job(key="k")
    await enqueue_job(backend, first)
    assert await backend.queue_purge(QueuePurgeParams("jobs")) == 1
    fresh = job(key="k")
    assert await enqueue_job(backend, fresh) == EnqueueResult(fresh.id, duplicate=False)


@pytest.mark.parametrize("state", [State.FAILED, State.CANCELLED])
async def test_a_key_whose_job_failed_or_was_cancelled_no_longer_holds(
    backend: Backend, state: str
) -> None:
    await enqueue_job(backend, job(key="k"))
    finished = await finish(backend, "jobs", state)
    fresh = job(key="k")
    assert await enqueue_job(backend, fresh) == EnqueueResult(fresh.id, duplicate=False)
    assert await enqueue_job(backend, job(key="k")) == EnqueueResult(fresh.id, duplicate=True)
    assert (await record(backend, finished)).state == state


async def test_concurrent_enqueues_of_one_key_from_separate_connections_store_one_job(
    backend: Backend, open_more: OpenBackend
) -> None:
    producers = [await open_more() for _ in range(20)]
    candidates = [job(key="order-42") for _ in producers]
    results = await asyncio.gather(
        *(enqueue_job(p, new) for p, new in zip(producers, candidates, strict=True))
    )
    winners = [r for r in results if not r.duplicate]
    assert len(winners) == 1
    assert {r.id for r in results} == {winners[0].id}
    assert ids(await backend.job_list(JobFilter())) == [winners[0].id]


async def test_enqueue_with_a_connection_the_backend_cannot_join_is_refused(
    backend: Backend,
) -> None:
    foreign = sqlite3.connect(":memory:")
    try:
        with pytest.raises(InvalidMessage):
            await backend.job_enqueue(JobEnqueueParams(job(), DAY, connection=foreign))
    finally:
        foreign.close()
    assert await backend.job_list(JobFilter()) == []


# -- job_attempts -----------------------------------------------------------------------


async def test_attempts_of_several_jobs_come_back_first_attempt_first(backend: Backend) -> None:
    await enqueue(backend, job(id="job-a"), job(id="job-b"))
    for _ in range(4):  # each job: a retried first attempt, then a completed second one
        delivery = await claim_one(backend, "jobs")
        ref = (delivery.id, delivery.lease_id)
        if delivery.attempts == 1:
            settlement = Settlement(
                retries=[RetryOutcome(*ref, 0, "again")],
                attempts=[attempt_of(delivery, "retried", "again")],
            )
        else:
            settlement = Settlement(
                completes=[CompleteOutcome(*ref, None)],
                attempts=[attempt_of(delivery, "completed")],
            )
        await backend.message_settle_many(settlement)

    rows = await backend.job_attempts(JobAttemptsParams(["job-b", "job-a"]))
    assert [(r.job_id, r.attempt, r.outcome, r.error) for r in rows] == [
        ("job-a", 1, "retried", "again"),
        ("job-a", 2, "completed", None),
        ("job-b", 1, "retried", "again"),
        ("job-b", 2, "completed", None),
    ]
    assert all(r.worker_id == OWNER and r.started_at is not None for r in rows)
    only_b = await backend.job_attempts(JobAttemptsParams(["job-b"]))
    assert [(r.job_id, r.attempt) for r in only_b] == [("job-b", 1), ("job-b", 2)]
    assert await backend.job_attempts(JobAttemptsParams([])) == []


# -- job_list ---------------------------------------------------------------------------


async def test_job_list_gives_only_jobs_newest_first(backend: Backend) -> None:
    older, newer = job(), job()
    await enqueue(backend, older)
    await enqueue(backend, message("jobs"))
    await wait_past(0.002)
    await enqueue(backend, newer)
    assert ids(await backend.job_list(JobFilter())) == [newer.id, older.id]
    assert ids(await backend.job_list(JobFilter(limit=1))) == [newer.id]


async def test_job_list_filters_by_state_type_and_queue(backend: Backend) -> None:
    charge, refund, other = job("charge"), job("refund"), job("charge", "other")
    await enqueue(backend, charge, refund, other)
    done = await finish(backend, "other", State.COMPLETED)

    assert ids(await backend.job_list(JobFilter(type="refund"))) == [refund.id]
    assert sorted(ids(await backend.job_list(JobFilter(queue="jobs")))) == sorted(
        [charge.id, refund.id]
    )
    assert ids(await backend.job_list(JobFilter(state=State.COMPLETED))) == [done]
    by_all = JobFilter(state=State.READY, type="charge", queue="jobs")
    assert ids(await backend.job_list(by_all)) == [charge.id]


async def test_job_list_pages_with_the_created_at_and_id_cursor(backend: Backend) -> None:
    await enqueue(backend, *[job() for _ in range(3)])  # one transaction: one created_at
    await wait_past(0.002)
    await enqueue(backend, *[job() for _ in range(3)])
    everything = await backend.job_list(JobFilter())
    assert [(r.created_at, r.id) for r in everything] == sorted(
        ((r.created_at, r.id) for r in everything), reverse=True
    )

    pages: list[str] = []
    before: tuple[float, str] | None = None
    while True:
        page = await backend.job_list(JobFilter(limit=2, before=before))
        if not page:
            break
        pages.extend(ids(page))
        before = (page[-1].created_at, page[-1].id)
    assert pages == ids(everything)


# -- job_cancel / job_cancel_requested --------------------------------------------------


@pytest.mark.parametrize("delay", [0, 60], ids=["ready", "delayed"])
async def test_cancelling_a_pending_job_cancels_it_now(backend: Backend, delay: float) -> None:
    pending = job(delay=delay)
    await enqueue(backend, pending)
    assert await backend.job_cancel(JobIdParams(pending.id)) == JobCancelResult(
        CancelResult.CANCELLED
    )
    stored = await record(backend, pending.id)
    assert (stored.state, stored.last_error) == (State.CANCELLED, "cancelled before it ran")
    assert stored.finished_at is not None
    assert (await claim(backend, "jobs")).messages == []


async def test_cancelling_a_running_job_requests_it(backend: Backend) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    requested = JobCancelResult(CancelResult.REQUESTED)
    assert await backend.job_cancel(JobIdParams(delivery.id)) == requested
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.cancel_requested) == (State.LEASED, True)
    assert await backend.job_cancel(JobIdParams(delivery.id)) == requested


@pytest.mark.parametrize("state", [State.COMPLETED, State.FAILED, State.CANCELLED])
async def test_cancelling_a_finished_job_changes_nothing_and_names_its_state(
    backend: Backend, state: str
) -> None:
    await enqueue(backend, job())
    job_id = await finish(backend, "jobs", state)
    before = await record(backend, job_id)
    assert await backend.job_cancel(JobIdParams(job_id)) == JobCancelResult(
        CancelResult.FINISHED, state
    )
    assert await record(backend, job_id) == before


async def test_cancelling_an_unknown_job_or_a_plain_message_finds_nothing(
    backend: Backend,
) -> None:
    plain = message("q")
    await enqueue(backend, plain)
    missing = JobCancelResult(CancelResult.MISSING)
    assert await backend.job_cancel(JobIdParams("no-such-job")) == missing
    assert await backend.job_cancel(JobIdParams(plain.id)) == missing
    assert (await record(backend, plain.id)).state == State.READY


async def test_cancel_requested_names_the_running_jobs_of_these_leases_to_stop(
    backend: Backend,
) -> None:
    await enqueue(backend, job(), job(), job())
    stopping = await claim_one(backend, "jobs")
    running = await claim_one(backend, "jobs")
    elsewhere = await claim_one(backend, "jobs")
    await backend.job_cancel(JobIdParams(stopping.id))
    await backend.job_cancel(JobIdParams(elsewhere.id))

    leases = [stopping.lease_id, running.lease_id]
    assert await backend.job_cancel_requested(CancelRequestedParams(leases)) == [stopping.id]
    assert await backend.job_cancel_requested(CancelRequestedParams([])) == []


# -- job_retry --------------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.FAILED, State.CANCELLED])
async def test_retrying_a_failed_or_cancelled_job_makes_it_pending_with_a_fresh_budget(
    backend: Backend, state: str
) -> None:
    await enqueue(backend, job())
    job_id = await finish(backend, "jobs", state)
    assert await backend.job_retry(JobIdParams(job_id)) == JobRetryResult(RetryResult.RETRIED)
    stored = await record(backend, job_id)
    assert (stored.state, stored.attempts, stored.last_error) == (State.READY, 0, None)
    assert (stored.finished_at, stored.result, stored.progress) == (None, None, None)
    assert (await claim_one(backend, "jobs")).attempts == 1


async def test_retrying_a_job_cancelled_while_running_clears_the_request(
    backend: Backend,
) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    await backend.job_cancel(JobIdParams(delivery.id))
    await backend.message_settle_many(
        Settlement(fails=[FailOutcome(delivery.id, delivery.lease_id, "boom")])
    )
    assert (await record(backend, delivery.id)).state == State.CANCELLED
    await backend.job_retry(JobIdParams(delivery.id))
    again = await claim_one(backend, "jobs")
    complete = CompleteOutcome(again.id, again.lease_id, b"1")
    result = await backend.message_settle_many(Settlement(completes=[complete]))
    assert result.states == {again.id: State.COMPLETED}


async def test_retrying_a_pending_running_or_completed_job_names_its_state(
    backend: Backend,
) -> None:
    await enqueue(backend, job(), job(), job())
    completed = await finish(backend, "jobs", State.COMPLETED)
    running = (await claim_one(backend, "jobs")).id
    (pending,) = [r.id for r in await backend.job_list(JobFilter(state=State.READY))]
    for job_id, state in [(pending, State.READY), (running, State.LEASED)]:
        result = await backend.job_retry(JobIdParams(job_id))
        assert result == JobRetryResult(RetryResult.WRONG_STATE, state)
    assert await backend.job_retry(JobIdParams(completed)) == JobRetryResult(
        RetryResult.WRONG_STATE, State.COMPLETED
    )


async def test_retrying_an_unknown_job_or_a_plain_message_finds_nothing(
    backend: Backend,
) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    await backend.message_settle_many(
        Settlement(fails=[FailOutcome(delivery.id, delivery.lease_id, "x")])
    )
    missing = JobRetryResult(RetryResult.MISSING)
    assert await backend.job_retry(JobIdParams("no-such-job")) == missing
    assert await backend.job_retry(JobIdParams(delivery.id)) == missing
    assert (await record(backend, delivery.id)).state == State.FAILED


# -- job_progress -----------------------------------------------------------------------


async def test_progress_is_recorded_while_the_lease_is_held(backend: Backend) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    progress = JobProgressParams(delivery.id, delivery.lease_id, 0.25, "a quarter")
    assert await backend.job_progress(progress) is True
    stored = await record(backend, delivery.id)
    assert (stored.progress, stored.progress_note) == (0.25, "a quarter")
    assert await backend.job_progress(JobProgressParams(delivery.id, delivery.lease_id, 0.5))
    stored = await record(backend, delivery.id)
    assert (stored.progress, stored.progress_note) == (0.5, None)


async def test_progress_is_refused_once_the_lease_is_lost(backend: Backend) -> None:
    await enqueue(backend, job())
    lost = await claim_one(backend, "jobs")
    await backend.message_release_many(ReleaseParams([LeaseRef(lost.id, lost.lease_id)]))
    assert await backend.job_progress(JobProgressParams(lost.id, lost.lease_id, 0.9)) is False
    current = await claim_one(backend, "jobs")
    assert await backend.job_progress(JobProgressParams(lost.id, lost.lease_id, 0.9)) is False
    assert (await record(backend, current.id)).progress is None
    done = CompleteOutcome(current.id, current.lease_id, None)
    await backend.message_settle_many(Settlement(completes=[done]))
    late = JobProgressParams(current.id, current.lease_id, 0.1)
    assert await backend.job_progress(late) is False


# -- job_counts -------------------------------------------------------------------------


async def test_job_counts_by_queue_type_and_state(backend: Backend) -> None:
    await enqueue(
        backend, job("charge"), job("charge"), job("refund"), job("charge", "other"), message()
    )
    await finish(backend, "other", State.COMPLETED)

    def key(c: JobCount) -> tuple[str, str, str]:
        return (c.queue, c.type, c.state)

    everything = sorted(await backend.job_counts(JobCountParams()), key=key)
    assert everything == [
        JobCount("jobs", "charge", State.READY, 2),
        JobCount("jobs", "refund", State.READY, 1),
        JobCount("other", "charge", State.COMPLETED, 1),
    ]
    by_type = sorted(await backend.job_counts(JobCountParams(type="charge")), key=key)
    assert [key(c) for c in by_type] == [
        ("jobs", "charge", "ready"),
        ("other", "charge", "completed"),
    ]
    assert await backend.job_counts(JobCountParams(queue="other", type="refund")) == []
    assert await backend.job_counts(JobCountParams(queue="q")) == []


# -- job_batch_create / job_batch_counts ------------------------------------------------


async def test_batch_counts_give_its_type_total_and_jobs_by_state(backend: Backend) -> None:
    await backend.job_batch_create(JobBatchCreateParams("batch-1", "charge", 3))
    assert await backend.job_batch_counts(JobBatchGetParams("batch-1")) == JobBatchCounts(
        "batch-1", "charge", 3, {}
    )
    await enqueue(backend, *[job(batch_id="batch-1") for _ in range(3)], job())
    await finish(backend, "jobs", State.FAILED)
    counts = await backend.job_batch_counts(JobBatchGetParams("batch-1"))
    assert counts == JobBatchCounts("batch-1", "charge", 3, {State.READY: 2, State.FAILED: 1})
    assert await backend.job_batch_counts(JobBatchGetParams("no-such-batch")) is None


async def test_batch_create_with_a_connection_the_backend_cannot_join_is_refused(
    backend: Backend,
) -> None:
    """As for `job_enqueue`: SQLite joins no caller's transaction, PostgreSQL only a psycopg
    one; either way no batch is recorded."""
    foreign = sqlite3.connect(":memory:")
    try:
        with pytest.raises(InvalidMessage):
            await backend.job_batch_create(
                JobBatchCreateParams("batch-1", "charge", 3, connection=foreign)
            )
    finally:
        foreign.close()
    assert await backend.job_batch_counts(JobBatchGetParams("batch-1")) is None


# -- job_prune --------------------------------------------------------------------------


async def test_prune_deletes_finished_rows_past_their_cutoff_with_their_history(
    backend: Backend,
) -> None:
    await enqueue(backend, job(), job(), job())
    completed = await finish(backend, "jobs", State.COMPLETED)
    failed = await finish(backend, "jobs", State.FAILED)
    await enqueue(backend, message("q"))
    plain = await claim_one(backend, "q")
    await backend.message_settle_many(
        Settlement(fails=[FailOutcome(plain.id, plain.lease_id, "x")])
    )
    await wait_past(0.01)
    cutoff = await backend_now(backend)
    await wait_past(0.01)
    young = await finish(backend, "jobs", State.CANCELLED)
    await enqueue(backend, job(), job())
    await claim_one(backend, "jobs")

    pruned = await backend.job_prune(PruneParams(cutoff, cutoff))
    assert pruned == 3
    for deleted in (completed, failed, plain.id):
        assert await gone(backend, deleted)
    assert await backend.job_attempts(JobAttemptsParams([completed, failed])) == []
    assert (await record(backend, young)).state == State.CANCELLED
    assert len(await backend.job_attempts(JobAttemptsParams([young]))) == 1
    remaining = await backend.job_list(JobFilter())
    assert sorted(r.state for r in remaining) == [State.CANCELLED, State.LEASED, State.READY]


async def test_prune_has_separate_cutoffs_for_completed_and_for_failed_rows(
    backend: Backend,
) -> None:
    await enqueue(backend, job(), job())
    completed = await finish(backend, "jobs", State.COMPLETED)
    failed = await finish(backend, "jobs", State.FAILED)
    now = await backend_now(backend) + 1
    assert await backend.job_prune(PruneParams(completed_before=now, failed_before=0)) == 1
    assert await gone(backend, completed)
    assert await backend.job_prune(PruneParams(completed_before=0, failed_before=now)) == 1
    assert await gone(backend, failed)


async def test_prune_deletes_at_most_limit_rows_at_a_time(backend: Backend) -> None:
    await enqueue(backend, *[job() for _ in range(3)])
    for _ in range(3):
        await finish(backend, "jobs", State.COMPLETED)
    now = await backend_now(backend) + 1
    assert [await backend.job_prune(PruneParams(now, now, limit=2)) for _ in range(3)] == [2, 1, 0]


# -- job_events / job_attempt_seq -------------------------------------------------------


async def test_attempt_seq_is_the_latest_attempt_row(backend: Backend) -> None:
    assert await backend.job_attempt_seq() == 0
    await enqueue(backend, job(), job())
    await finish(backend, "jobs", State.COMPLETED)
    first = await backend.job_attempt_seq()
    assert first > 0
    await finish(backend, "jobs", State.FAILED)
    assert await backend.job_attempt_seq() > first


async def test_job_events_report_enqueues_starts_and_attempts_after_the_cursor(
    backend: Backend,
) -> None:
    await enqueue(backend, job("charge", id="job-a"), job("refund", id="job-b"))
    await finish(backend, "jobs", State.FAILED)  # job-a: the older id of one batch
    running = await claim_one(backend, "jobs")
    seq = await backend.job_attempt_seq()

    events = await backend.job_events(JobEventsParams(JobEventCursor(0, 0, 0)))
    assert [e.at for e in events] == sorted(e.at for e in events)
    seen = {(e.kind, e.job_id, e.attempt) for e in events}
    assert seen == {
        ("enqueued", "job-a", 0),  # no attempt had started (Oban, Sidekiq: 0)
        ("enqueued", "job-b", 0),
        ("failed", "job-a", 1),
        ("started", "job-b", 1),
    }
    failed = next(e for e in events if e.kind == "failed")
    assert (failed.type, failed.queue, failed.error, failed.seq) == ("charge", "jobs", None, seq)
    assert failed.duration == pytest.approx(0, abs=1)
    started = next(e for e in events if e.kind == "started")
    assert started.at == (await record(backend, running.id)).started_at

    stored_b = await record(backend, "job-b")
    later = JobEventCursor(stored_b.created_at, stored_b.started_at or 0, seq)
    assert await backend.job_events(JobEventsParams(later)) == []
    assert len(await backend.job_events(JobEventsParams(JobEventCursor(0, 0, 0), limit=1))) == 3
