"""MessageStore: enqueue, claim, release, read, settle; leases: extend, list expired."""

from __future__ import annotations

import sqlite3

import pytest

from job_helpers import wait_past
from taskflare.backends import Backend
from taskflare.backends.base import (
    CancelOutcome,
    ClaimedMessage,
    ClaimParams,
    CompleteOutcome,
    EnqueueParams,
    ExpiredLeaseParams,
    FailOutcome,
    JobAttemptsParams,
    JobIdParams,
    LeaseExtendParams,
    LeaseRef,
    MessageGetParams,
    MessageListParams,
    QueuePauseParams,
    ReleaseParams,
    RetryOutcome,
    Settlement,
    SettleResult,
    State,
)
from taskflare.errors import InvalidMessage, StorageRejected
from taskflare.ids import uuid7

from .conftest import (
    OWNER,
    attempt_of,
    backend_now,
    claim,
    claim_one,
    enqueue,
    gone,
    job,
    message,
    record,
    wait_for_expiry,
)

# -- message_enqueue_many ---------------------------------------------------------------


async def test_enqueued_messages_are_stored_ready_with_their_fields(backend: Backend) -> None:
    first = message("q", b'{"n": 1}', priority=5)
    second = message("q", b"plain text", content_type="text")
    await enqueue(backend, first, second)

    stored = await record(backend, first.id)
    assert (stored.id, stored.queue, stored.state) == (first.id, "q", State.READY)
    assert (stored.body, stored.content_type, stored.priority) == (b'{"n": 1}', "json", 5)
    assert stored.attempts == 0
    assert stored.available_at == pytest.approx(stored.created_at)
    assert stored.lease_expires_at is None and stored.started_at is None
    assert stored.last_error is None and stored.finished_at is None
    assert stored.origin_queue is None and stored.origin_id is None
    assert stored.type is None and stored.max_attempts is None
    assert stored.cancel_requested is False
    assert (await record(backend, second.id)).body == b"plain text"


async def test_enqueue_is_all_or_nothing_when_one_message_is_refused(backend: Backend) -> None:
    good = message("q")
    refused = message("q", None)  # type: ignore[arg-type]  # a body the database refuses
    with pytest.raises(StorageRejected):
        await enqueue(backend, good, refused)
    assert await gone(backend, good.id)
    assert await backend.message_list(MessageListParams("q")) == []


async def test_enqueue_of_an_id_already_stored_keeps_the_first_and_raises_nothing(
    backend: Backend,
) -> None:
    original = message("q", b'"first"')
    await enqueue(backend, original)
    await enqueue(backend, message("q", b'"second"', id=original.id))
    stored = await backend.message_list(MessageListParams("q"))
    assert [(m.id, m.body) for m in stored] == [(original.id, b'"first"')]


async def test_delay_sets_available_at_that_many_seconds_after_created_at(
    backend: Backend,
) -> None:
    delayed = message("q", delay=30)
    await enqueue(backend, delayed)
    stored = await record(backend, delayed.id)
    assert stored.state == State.READY
    assert stored.available_at - stored.created_at == pytest.approx(30, abs=1e-6)
    assert (await claim(backend, "q")).messages == []


async def test_enqueue_with_a_connection_the_backend_cannot_join_is_refused(
    backend: Backend,
) -> None:
    """SQLite cannot join a caller's transaction at all; PostgreSQL takes only a psycopg
    async connection. Either way nothing is stored."""
    foreign = sqlite3.connect(":memory:")
    try:
        with pytest.raises(InvalidMessage):
            await backend.message_enqueue_many(EnqueueParams([message("q")], connection=foreign))
    finally:
        foreign.close()
    assert await backend.message_list(MessageListParams("q")) == []


# -- message_claim_many -----------------------------------------------------------------


async def test_claim_leases_the_message_and_counts_the_attempt(backend: Backend) -> None:
    sent = message("q", b'"x"', priority=2)
    await enqueue(backend, sent)
    lease_id = uuid7()
    result = await claim(backend, "q", lease_id=lease_id, visibility_timeout=45)

    assert result.ready is None
    (delivery,) = result.messages
    assert (delivery.id, delivery.queue, delivery.body) == (sent.id, "q", b'"x"')
    assert (delivery.content_type, delivery.priority) == ("json", 2)
    assert (delivery.attempts, delivery.lease_id, delivery.type) == (1, lease_id, None)
    stored = await record(backend, sent.id)
    assert delivery.created_at == stored.created_at
    assert (stored.state, stored.attempts) == (State.LEASED, 1)
    assert stored.started_at is not None and stored.lease_expires_at is not None
    assert stored.lease_expires_at - stored.started_at == pytest.approx(45, abs=1e-6)


async def test_a_leased_message_is_not_claimed_again(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    await claim_one(backend, "q")
    assert (await claim(backend, "q")).messages == []


async def test_each_redelivery_counts_one_more_attempt(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    for expected in (1, 2, 3):
        delivery = await claim_one(backend, "q")
        assert delivery.attempts == expected
        retry = RetryOutcome(delivery.id, delivery.lease_id, 0)
        await backend.message_settle_many(Settlement(retries=[retry]))


async def test_claim_takes_the_highest_priority_first_then_the_oldest(backend: Backend) -> None:
    # Ids sort against their age, so only the age can explain the order.
    for id_, priority in [("m-4", 0), ("m-3", 9), ("m-2", 0), ("m-1", 9)]:
        await enqueue(backend, message("q", id=id_, priority=priority))
        await wait_past(0.002)  # a strictly later available_at for the next one
    order = [(await claim_one(backend, "q")).id for _ in range(4)]
    assert order == ["m-3", "m-1", "m-4", "m-2"]


async def test_a_claimed_batch_lists_the_highest_priority_first_then_the_oldest(
    backend: Backend,
) -> None:
    sent = [message("q", priority=p) for p in (0, 1, 0, 1)]  # time-ordered ids, as sent
    await enqueue(backend, *sent)
    claimed = (await claim(backend, "q", 10)).messages
    assert [m.id for m in claimed] == [sent[1].id, sent[3].id, sent[0].id, sent[2].id]


async def test_claim_takes_at_most_limit_messages(backend: Backend) -> None:
    await enqueue(backend, *[message("q") for _ in range(5)])
    assert len((await claim(backend, "q", 2)).messages) == 2
    assert len((await claim(backend, "q", 10)).messages) == 3


async def test_claim_waits_for_min_count_unless_the_oldest_waited_max_wait(
    backend: Backend,
) -> None:
    await enqueue(backend, message("q"), message("q"))
    held = await claim(backend, "q", 10, min_count=3, max_wait=60)
    assert held.messages == []
    assert held.ready is not None and held.ready.ready_count == 2

    full = await claim(backend, "q", 10, min_count=2, max_wait=60)
    assert len(full.messages) == 2


async def test_claim_takes_a_short_batch_once_its_oldest_waited_max_wait(
    backend: Backend,
) -> None:
    await enqueue(backend, message("q"), message("q"))
    assert (await claim(backend, "q", 10, min_count=3, max_wait=60)).messages == []
    await wait_past(0.3)
    taken = await claim(backend, "q", 10, min_count=3, max_wait=0.2)
    assert len(taken.messages) == 2


async def test_claim_with_types_takes_only_jobs_of_those_types(backend: Backend) -> None:
    charge, refund = job("charge", "mixed"), job("refund", "mixed")
    plain = message("mixed")
    await enqueue(backend, charge, refund, plain)

    taken = (await claim(backend, "mixed", 10, types=("refund",))).messages
    assert [(m.id, m.type, m.max_attempts) for m in taken] == [(refund.id, "refund", 3)]
    assert (await claim(backend, "mixed", 10, types=("email",))).messages == []
    rest = (await claim(backend, "mixed", 10)).messages
    assert {m.id for m in rest} == {charge.id, plain.id}


async def test_a_paused_queue_claims_nothing_and_says_it_is_paused(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    await backend.queue_pause(QueuePauseParams("q", paused=True))
    result = await claim(backend, "q")
    assert result.messages == []
    assert result.ready is not None and result.ready.paused is True
    assert result.ready.ready_count == 1

    await backend.queue_pause(QueuePauseParams("q", paused=False))
    assert len((await claim(backend, "q")).messages) == 1


async def test_an_empty_claim_describes_what_the_queue_holds(backend: Backend) -> None:
    soon, later = message("q", delay=30), message("q", delay=60)
    await enqueue(backend, soon, later)
    before = await backend_now(backend)
    result = await claim(backend, "q")
    after = await backend_now(backend)

    assert result.messages == []
    info = result.ready
    assert info is not None
    assert (info.ready_count, info.oldest_available_at, info.paused) == (0, None, False)
    assert info.next_available_at == (await record(backend, soon.id)).available_at
    assert before <= info.now <= after


async def test_an_empty_claim_on_an_unknown_queue_describes_an_empty_queue(
    backend: Backend,
) -> None:
    result = await claim(backend, "nowhere")
    assert result.messages == []
    assert result.ready is not None
    assert (result.ready.ready_count, result.ready.oldest_available_at) == (0, None)
    assert (result.ready.next_available_at, result.ready.paused) == (None, False)


async def test_a_claim_that_expects_work_claims_as_any_claim_and_may_skip_the_description(
    backend: Backend,
) -> None:
    """`describe_empty=False` (a fetcher just told of new work): the same jobs are taken,
    in the same order, under the same rules (types, pause); taking nothing, the result
    describes the queue or leaves it to `queue_ready_info` (ready None)."""
    low, high, other = job("charge", "e"), job("charge", "e", priority=5), job("refund", "e")
    await enqueue(backend, low, high, other)

    def expecting(limit: int) -> ClaimParams:
        return ClaimParams(
            "e", limit, uuid7(), OWNER, 30.0, types=("charge",), describe_empty=False
        )

    taken = (await backend.message_claim_many(expecting(1))).messages
    assert [(m.id, m.attempts, m.type) for m in taken] == [(high.id, 1, "charge")]
    assert (await record(backend, high.id)).state == State.LEASED
    await backend.queue_pause(QueuePauseParams("e", paused=True))
    assert (await backend.message_claim_many(expecting(10))).messages == []
    await backend.queue_pause(QueuePauseParams("e", paused=False))
    assert [m.id for m in (await backend.message_claim_many(expecting(10))).messages] == [low.id]
    empty = await backend.message_claim_many(expecting(10))
    assert empty.messages == []
    if empty.ready is not None:
        assert (empty.ready.ready_count, empty.ready.oldest_available_at) == (0, None)
    assert (await record(backend, other.id)).state == State.READY


async def test_a_batch_claim_that_expects_work_still_waits_for_its_batch_to_fill(
    backend: Backend,
) -> None:
    """`describe_empty=False` changes nothing about batching: with `max_wait` 0 whatever
    is ready is taken; otherwise a short batch stays until it fills or its oldest
    message has waited `max_wait`."""
    first = message("b")
    await enqueue(backend, first)

    def expecting(min_count: int, max_wait: float) -> ClaimParams:
        return ClaimParams(
            "b",
            10,
            uuid7(),
            OWNER,
            30.0,
            min_count=min_count,
            max_wait=max_wait,
            describe_empty=False,
        )

    assert (await backend.message_claim_many(expecting(10, 60.0))).messages == []
    assert (await record(backend, first.id)).state == State.READY
    taken = (await backend.message_claim_many(expecting(10, 0.0))).messages
    assert [m.id for m in taken] == [first.id]


# -- message_release_many ---------------------------------------------------------------


async def test_release_puts_messages_back_ready_with_their_attempt_uncounted(
    backend: Backend,
) -> None:
    await enqueue(backend, message("q"), message("q"))
    delivered = (await claim(backend, "q", 10)).messages
    refs = [LeaseRef(m.id, m.lease_id) for m in delivered]
    assert await backend.message_release_many(ReleaseParams(refs)) == 2

    for m in delivered:
        stored = await record(backend, m.id)
        assert (stored.state, stored.attempts, stored.lease_expires_at) == (State.READY, 0, None)
    again = (await claim(backend, "q", 10)).messages
    assert [m.attempts for m in again] == [1, 1]


async def test_release_under_a_lease_no_longer_held_changes_nothing(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    stale = [LeaseRef(delivery.id, "another-lease")]
    assert await backend.message_release_many(ReleaseParams(stale)) == 0
    assert await backend.message_release_many(ReleaseParams([])) == 0
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.attempts) == (State.LEASED, 1)


# -- message_get / message_list ---------------------------------------------------------


async def test_get_of_an_unknown_id_is_none(backend: Backend) -> None:
    assert await backend.message_get(MessageGetParams("no-such-id")) is None


async def test_list_gives_a_queues_messages_oldest_first_by_state_up_to_limit(
    backend: Backend,
) -> None:
    sent = [message("q") for _ in range(4)]
    for m in sent:
        await enqueue(backend, m)
    await enqueue(backend, message("other"))
    leased = await claim_one(backend, "q")  # the oldest

    everything = await backend.message_list(MessageListParams("q"))
    assert [m.id for m in everything] == [m.id for m in sent]
    ready = await backend.message_list(MessageListParams("q", state=State.READY))
    assert [m.id for m in ready] == [m.id for m in sent[1:]]
    leased_rows = await backend.message_list(MessageListParams("q", state=State.LEASED))
    assert [m.id for m in leased_rows] == [leased.id]
    first_two = await backend.message_list(MessageListParams("q", limit=2))
    assert [m.id for m in first_two] == [m.id for m in sent[:2]]


async def test_list_after_a_position_pages_through_without_gaps_or_repeats(
    backend: Backend,
) -> None:
    sent = [message("q") for _ in range(5)]
    await enqueue(backend, *sent)  # one statement: equal created_at, ordered by id
    seen: list[str] = []
    after: tuple[float, str] | None = None
    while True:
        page = await backend.message_list(MessageListParams("q", limit=2, after=after))
        if not page:
            break
        seen += [m.id for m in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == sorted(m.id for m in sent)


# -- message_settle_many: acks ----------------------------------------------------------


async def test_ack_under_the_held_lease_deletes_the_message(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    result = await backend.message_settle_many(
        Settlement(acks=[LeaseRef(delivery.id, delivery.lease_id)])
    )
    assert result.states == {delivery.id: "acked"} and result.acked == 1
    assert await gone(backend, delivery.id)


async def test_ack_under_another_lease_changes_nothing(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    result = await backend.message_settle_many(
        Settlement(acks=[LeaseRef(delivery.id, "another-lease")])
    )
    assert result.states == {}
    assert (await record(backend, delivery.id)).state == State.LEASED


@pytest.mark.parametrize("leased", [True, False], ids=["leased", "ready"])
async def test_ack_without_a_lease_id_acks_an_unfinished_plain_message(
    backend: Backend, leased: bool
) -> None:
    """A late pull ack: the consumer's lease may have expired and the message been
    released, yet its ack still counts (Cloudflare's pull consumers)."""
    sent = message("q")
    await enqueue(backend, sent)
    if leased:
        await claim_one(backend, "q")
    result = await backend.message_settle_many(Settlement(acks=[LeaseRef(sent.id, None)]))
    assert result.states == {sent.id: "acked"}
    assert await gone(backend, sent.id)


async def test_ack_without_a_lease_id_never_acks_a_finished_message(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    fail = FailOutcome(delivery.id, delivery.lease_id, "boom")
    await backend.message_settle_many(Settlement(fails=[fail]))
    result = await backend.message_settle_many(Settlement(acks=[LeaseRef(delivery.id, None)]))
    assert result.states == {}
    assert (await record(backend, delivery.id)).state == State.FAILED


@pytest.mark.parametrize("leased", [True, False], ids=["leased", "ready"])
async def test_ack_without_a_lease_id_never_acks_a_job(backend: Backend, leased: bool) -> None:
    sent = job()
    await enqueue(backend, sent)
    if leased:
        await claim_one(backend, "jobs")
    result = await backend.message_settle_many(Settlement(acks=[LeaseRef(sent.id, None)]))
    assert result.states == {}
    assert (await record(backend, sent.id)).state == (State.LEASED if leased else State.READY)


# -- message_settle_many: retries and failures ------------------------------------------


async def test_retry_puts_the_message_back_after_its_delay_with_the_error(
    backend: Backend,
) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    before = await backend_now(backend)
    result = await backend.message_settle_many(
        Settlement(retries=[RetryOutcome(delivery.id, delivery.lease_id, 20, "try later")])
    )
    after = await backend_now(backend)

    assert result.states == {delivery.id: State.READY} and result.retried == 1
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.attempts, stored.last_error) == (State.READY, 1, "try later")
    assert stored.lease_expires_at is None and stored.finished_at is None
    assert before + 20 <= stored.available_at <= after + 20
    assert (await claim(backend, "q")).messages == []


async def test_retry_without_an_error_keeps_the_last_error(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    first = await claim_one(backend, "q")
    retry = RetryOutcome(first.id, first.lease_id, 0, "first failure")
    await backend.message_settle_many(Settlement(retries=[retry]))
    second = await claim_one(backend, "q")
    await backend.message_settle_many(
        Settlement(retries=[RetryOutcome(second.id, second.lease_id, 0)])
    )
    assert (await record(backend, first.id)).last_error == "first failure"


async def test_fail_keeps_the_message_failed_with_its_error(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q")
    result = await backend.message_settle_many(
        Settlement(fails=[FailOutcome(delivery.id, delivery.lease_id, "broken")])
    )
    assert result.states == {delivery.id: State.FAILED} and result.failed == 1
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.last_error) == (State.FAILED, "broken")
    assert stored.finished_at is not None and stored.lease_expires_at is None


async def test_fail_copies_the_message_to_its_dead_letter_queue_unchanged_under_a_new_id(
    backend: Backend,
) -> None:
    sent = message("q", b"\x00\xffraw", content_type="bytes", priority=3)
    await enqueue(backend, sent)
    delivery = await claim_one(backend, "q")
    copy_id = uuid7()
    fail = FailOutcome(delivery.id, delivery.lease_id, "gave up", "q-dlq", copy_id)
    result = await backend.message_settle_many(Settlement(fails=[fail]))

    assert result.states == {delivery.id: State.FAILED}  # the copy is not an outcome
    assert copy_id != sent.id
    original = await record(backend, sent.id)
    assert (original.state, original.queue) == (State.FAILED, "q")
    copy = await record(backend, copy_id)
    assert (copy.queue, copy.state, copy.attempts) == ("q-dlq", State.READY, 0)
    assert (copy.body, copy.content_type) == (b"\x00\xffraw", "bytes")
    assert (copy.last_error, copy.priority) == ("gave up", 3)
    assert (copy.origin_queue, copy.origin_id) == ("q", sent.id)
    assert [m.id for m in (await claim(backend, "q-dlq")).messages] == [copy_id]


@pytest.mark.parametrize("kind", ["retry", "fail"])
async def test_rescue_outcomes_apply_only_once_the_lease_has_expired(
    backend: Backend, kind: str
) -> None:
    """Two leases that differ only in length: one of an hour (which no loaded machine runs
    past between two statements) is left alone; one of 0.3 s is rescued once it expired."""
    await enqueue(backend, message("q"), message("q"))
    live = await claim_one(backend, "q", visibility_timeout=3600)
    delivery = await claim_one(backend, "q", visibility_timeout=0.3)

    def rescue(of: ClaimedMessage) -> Settlement:
        if kind == "retry":
            retry = RetryOutcome(of.id, of.lease_id, 0, "lost", require_expired=True)
            return Settlement(retries=[retry])
        fail = FailOutcome(of.id, of.lease_id, "lost", require_expired=True)
        return Settlement(fails=[fail])

    assert (await backend.message_settle_many(rescue(live))).states == {}
    assert (await record(backend, live.id)).state == State.LEASED

    await wait_for_expiry(backend, delivery)
    expected = State.READY if kind == "retry" else State.FAILED
    assert (await backend.message_settle_many(rescue(delivery))).states == {delivery.id: expected}
    assert (await record(backend, delivery.id)).state == expected
    assert (await backend.message_settle_many(rescue(live))).states == {}
    assert (await record(backend, live.id)).state == State.LEASED


async def test_a_late_heartbeat_keeps_the_lease_from_the_rescuer(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    delivery = await claim_one(backend, "q", visibility_timeout=0.2)
    await wait_for_expiry(backend, delivery)
    extend = LeaseExtendParams([delivery.lease_id], visibility_timeout=60)
    assert await backend.lease_extend_many(extend) == 1

    retry = RetryOutcome(delivery.id, delivery.lease_id, 0, "lost", require_expired=True)
    assert (await backend.message_settle_many(Settlement(retries=[retry]))).states == {}
    assert (await record(backend, delivery.id)).state == State.LEASED


async def test_outcomes_under_a_lost_lease_do_not_apply(backend: Backend) -> None:
    await enqueue(backend, job(), message("q"))
    lost_job = await claim_one(backend, "jobs")
    lost_message = await claim_one(backend, "q")
    refs = [LeaseRef(m.id, m.lease_id) for m in (lost_job, lost_message)]
    assert await backend.message_release_many(ReleaseParams(refs)) == 2
    result = await backend.message_settle_many(
        Settlement(
            acks=[LeaseRef(lost_message.id, lost_message.lease_id)],
            retries=[RetryOutcome(lost_message.id, lost_message.lease_id, 0)],
            fails=[FailOutcome(lost_message.id, lost_message.lease_id, "x", "dlq", uuid7())],
            completes=[CompleteOutcome(lost_job.id, lost_job.lease_id, b"1")],
            cancels=[CancelOutcome(lost_job.id, lost_job.lease_id, "stop")],
        )
    )
    assert result.states == {}
    assert (await record(backend, lost_job.id)).state == State.READY
    assert (await record(backend, lost_message.id)).state == State.READY
    assert await backend.message_list(MessageListParams("dlq")) == []


# -- message_settle_many: jobs ----------------------------------------------------------


async def test_complete_keeps_the_job_completed_with_its_result(backend: Backend) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    result = await backend.message_settle_many(
        Settlement(completes=[CompleteOutcome(delivery.id, delivery.lease_id, b'{"ok": true}')])
    )
    assert result.states == {delivery.id: State.COMPLETED} and result.completed == 1
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.result, stored.progress) == (State.COMPLETED, b'{"ok": true}', 1)
    assert stored.finished_at is not None and stored.lease_expires_at is None


@pytest.mark.parametrize(
    "result",
    [b'{"name": "\xc3\xa9\\n\\"x\\"", "party": "\xf0\x9f\x8e\x89"}', b"[1, 2.5, null]", None],
    ids=["unicode-and-escapes", "array", "none"],
)
async def test_a_completed_result_is_stored_byte_for_byte(
    backend: Backend, result: bytes | None
) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    complete = CompleteOutcome(delivery.id, delivery.lease_id, result)
    await backend.message_settle_many(Settlement(completes=[complete]))
    stored = (await record(backend, delivery.id)).result
    assert stored == (b"null" if result is None else result)  # no result: JSON null


async def test_cancel_outcome_keeps_the_job_cancelled_with_its_reason(backend: Backend) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    result = await backend.message_settle_many(
        Settlement(cancels=[CancelOutcome(delivery.id, delivery.lease_id, "stopped by user")])
    )
    assert result.states == {delivery.id: State.CANCELLED} and result.cancelled == 1
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.last_error) == (State.CANCELLED, "stopped by user")
    assert stored.finished_at is not None


@pytest.mark.parametrize("outcome", ["completed", "retried", "failed"])
async def test_a_job_whose_cancellation_was_requested_ends_cancelled_whatever_is_settled(
    backend: Backend, outcome: str
) -> None:
    await enqueue(backend, job())
    delivery = await claim_one(backend, "jobs")
    await backend.job_cancel(JobIdParams(delivery.id))
    ref = (delivery.id, delivery.lease_id)
    settlement = {
        "completed": Settlement(completes=[CompleteOutcome(*ref, b"1")]),
        "retried": Settlement(retries=[RetryOutcome(*ref, 0, "again")]),
        "failed": Settlement(fails=[FailOutcome(*ref, "boom", "jobs-dlq", uuid7())]),
    }[outcome]
    attempt = attempt_of(delivery, outcome, error="whatever")
    result = await backend.message_settle_many(
        Settlement(
            completes=settlement.completes,
            retries=settlement.retries,
            fails=settlement.fails,
            attempts=[attempt],
        )
    )

    assert result.states == {delivery.id: State.CANCELLED}
    stored = await record(backend, delivery.id)
    assert (stored.state, stored.result) == (State.CANCELLED, None)
    assert stored.finished_at is not None
    (row,) = await backend.job_attempts(JobAttemptsParams([delivery.id]))
    assert (row.attempt, row.outcome) == (1, "cancelled")
    assert await backend.message_list(MessageListParams("jobs-dlq")) == []


async def test_attempt_rows_are_stored_only_for_outcomes_that_applied(backend: Backend) -> None:
    await enqueue(backend, job(), job())
    held = await claim_one(backend, "jobs")
    lost = await claim_one(backend, "jobs")
    result = await backend.message_settle_many(
        Settlement(
            completes=[
                CompleteOutcome(held.id, held.lease_id, b"1"),
                CompleteOutcome(lost.id, "a-lease-it-never-had", b"1"),
            ],
            attempts=[attempt_of(held, "completed"), attempt_of(lost, "completed")],
        )
    )
    assert result.states == {held.id: State.COMPLETED}
    rows = await backend.job_attempts(JobAttemptsParams([held.id, lost.id]))
    assert [(r.job_id, r.attempt, r.outcome, r.worker_id) for r in rows] == [
        (held.id, 1, "completed", OWNER)
    ]


async def test_settle_result_maps_every_applied_outcome_to_its_state(backend: Backend) -> None:
    await enqueue(backend, *[message("q") for _ in range(3)], job(), job())
    acked, retried, failed = (await claim(backend, "q", 3)).messages
    completed = await claim_one(backend, "jobs")
    cancelled = await claim_one(backend, "jobs")

    result = await backend.message_settle_many(
        Settlement(
            acks=[LeaseRef(acked.id, acked.lease_id)],
            retries=[RetryOutcome(retried.id, retried.lease_id, 0)],
            fails=[FailOutcome(failed.id, failed.lease_id, "x")],
            completes=[CompleteOutcome(completed.id, completed.lease_id, None)],
            cancels=[CancelOutcome(cancelled.id, cancelled.lease_id, "stop")],
        )
    )
    assert result.states == {
        acked.id: "acked",
        retried.id: "ready",
        failed.id: "failed",
        completed.id: "completed",
        cancelled.id: "cancelled",
    }
    counts = (result.acked, result.retried, result.failed, result.completed, result.cancelled)
    assert counts == (1, 1, 1, 1, 1)
    assert await backend.message_settle_many(Settlement()) == SettleResult()


# -- leases -----------------------------------------------------------------------------


async def test_extend_pushes_live_leases_and_counts_the_messages_they_hold(
    backend: Backend,
) -> None:
    await enqueue(backend, message("q"), message("q"), message("q"))
    pair = (await claim(backend, "q", 2, visibility_timeout=5)).messages
    single = await claim_one(backend, "q", visibility_timeout=5)
    before = await backend_now(backend)

    extended = await backend.lease_extend_many(
        LeaseExtendParams([pair[0].lease_id, "unknown-lease"], visibility_timeout=120)
    )
    assert extended == 2
    for m in pair:
        expires = (await record(backend, m.id)).lease_expires_at
        assert expires is not None and expires >= before + 120
    untouched = (await record(backend, single.id)).lease_expires_at
    assert untouched is not None and untouched < before + 10
    assert await backend.lease_extend_many(LeaseExtendParams([], 120)) == 0


async def test_list_expired_names_the_expired_deliveries_of_one_queue(backend: Backend) -> None:
    await enqueue(backend, job(max_attempts=7), message("other"), message("jobs"))
    expiring = await claim_one(backend, "jobs", visibility_timeout=0.2)
    await claim_one(backend, "jobs", visibility_timeout=60)  # live: not listed
    other = await claim_one(backend, "other", visibility_timeout=0.2)
    await wait_for_expiry(backend, expiring)
    await wait_for_expiry(backend, other)

    (lease,) = await backend.lease_list_expired(ExpiredLeaseParams("jobs"))
    stored = await record(backend, expiring.id)
    assert (lease.id, lease.lease_id, lease.queue) == (expiring.id, expiring.lease_id, "jobs")
    assert (lease.attempts, lease.max_attempts, lease.type) == (1, 7, "charge")
    assert (lease.lease_owner, lease.started_at) == (OWNER, stored.started_at)


async def test_list_expired_returns_at_most_limit_oldest_expiry_first(backend: Backend) -> None:
    await enqueue(backend, message("q"), message("q"), message("q"))
    first = await claim_one(backend, "q", visibility_timeout=0.1)
    second = await claim_one(backend, "q", visibility_timeout=0.2)
    third = await claim_one(backend, "q", visibility_timeout=0.3)
    await wait_for_expiry(backend, third)
    listed = await backend.lease_list_expired(ExpiredLeaseParams("q", limit=2))
    assert [lease.id for lease in listed] == [first.id, second.id]


async def test_a_batch_stores_each_messages_own_options_and_again_is_a_no_op(
    backend: Backend,
) -> None:
    """Messages of one batch that differ in any option, and ones that share them all,
    keep their own values; storing either batch again changes nothing."""
    shared = [job(batch_id="b1", priority=2, delay=10.0, body=f"{n}".encode()) for n in range(3)]
    mixed = [
        job(priority=1),
        job(type="other", max_attempts=7),
        job(delay=20.0, batch_id="b2"),
        message("q", b"plain text", content_type="text"),
    ]
    for batch in (shared, mixed, shared, mixed):
        await enqueue(backend, *batch)
    for m in shared + mixed:
        stored = await record(backend, m.id)
        assert (stored.queue, stored.body, stored.content_type) == (m.queue, m.body, m.content_type)
        assert (stored.priority, stored.type, stored.max_attempts) == (
            m.priority,
            m.type,
            m.max_attempts,
        )
        assert stored.batch_id == m.batch_id and stored.state == State.READY
        assert stored.available_at - stored.created_at == pytest.approx(m.delay_seconds, abs=1e-6)
    assert len(await backend.message_list(MessageListParams("jobs"))) == 6


async def test_a_batch_stored_without_waiting_for_the_disk_is_stored_like_any(
    backend: Backend,
) -> None:
    """`durable=False` (enqueue_many's chunks before its last) changes when the commit is
    flushed, not what is stored or when it can be claimed."""
    early, last = [message("q"), job()], [message("q")]
    await backend.message_enqueue_many(EnqueueParams(early, durable=False))
    assert [m.id for m in (await claim(backend, "q")).messages] == [early[0].id]
    await backend.message_enqueue_many(EnqueueParams(last))
    for m in early + last:
        assert (await record(backend, m.id)).body == m.body
