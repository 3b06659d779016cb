"""QueueStore: declare, pause, ready info, counts, purge, dead-letter reprocessing."""

from __future__ import annotations

import pytest

from taskflare.backends import Backend
from taskflare.backends.base import (
    CompleteOutcome,
    DeadLetterReprocessParams,
    FailOutcome,
    JobIdParams,
    JobRetryResult,
    MessageListParams,
    QueueCounts,
    QueueCountsParams,
    QueueDeclareParams,
    QueuePauseParams,
    QueuePurgeParams,
    QueueSettings,
    ReadyInfoParams,
    RetryResult,
    Settlement,
    State,
)
from taskflare.ids import uuid7

from .conftest import backend_now, claim, claim_one, enqueue, gone, job, message, record


async def counts_of(backend: Backend, queue: str | None = None) -> dict[str, QueueCounts]:
    """queue_counts by queue name."""
    return {c.name: c for c in await backend.queue_counts(QueueCountsParams(queue))}


async def dead_letter(backend: Backend, queue: str, dlq: str) -> list[str]:
    """Claim every message of `queue` and fail it into `dlq`; return the copies' ids."""
    delivered = (await claim(backend, queue, 100)).messages
    fails = [FailOutcome(m.id, m.lease_id, f"failed {m.id}", dlq, uuid7()) for m in delivered]
    await backend.message_settle_many(Settlement(fails=fails))
    return [f.dlq_message_id for f in fails if f.dlq_message_id]


# -- queue_declare_many / queue_pause ---------------------------------------------------


async def test_declare_records_queues_with_their_settings(backend: Backend) -> None:
    await backend.queue_declare_many(
        QueueDeclareParams([QueueSettings("emails", '{"max_batch_size": 5}'), QueueSettings("sms")])
    )
    counts = await counts_of(backend)
    assert set(counts) == {"emails", "sms"}
    assert counts["emails"].settings_json == '{"max_batch_size": 5}'
    assert counts["sms"].settings_json == "{}"
    assert counts["emails"].paused is False and counts["emails"].by_state == {}
    await backend.queue_declare_many(QueueDeclareParams([]))
    assert set(await counts_of(backend)) == {"emails", "sms"}


async def test_declaring_again_updates_the_settings_and_keeps_the_pause(
    backend: Backend,
) -> None:
    await backend.queue_declare_many(QueueDeclareParams([QueueSettings("q", '{"v": 1}')]))
    await backend.queue_pause(QueuePauseParams("q", paused=True))
    await backend.queue_declare_many(QueueDeclareParams([QueueSettings("q", '{"v": 2}')]))
    (counts,) = await backend.queue_counts(QueueCountsParams("q"))
    assert (counts.settings_json, counts.paused) == ('{"v": 2}', True)


async def test_pause_and_resume_are_recorded_even_for_an_undeclared_queue(
    backend: Backend,
) -> None:
    await backend.queue_pause(QueuePauseParams("new", paused=True))
    (counts,) = await backend.queue_counts(QueueCountsParams("new"))
    assert (counts.paused, counts.settings_json) == (True, "{}")
    assert (await backend.queue_ready_info(ReadyInfoParams("new", 10))).paused is True

    await backend.queue_pause(QueuePauseParams("new", paused=False))
    assert (await counts_of(backend))["new"].paused is False
    assert (await backend.queue_ready_info(ReadyInfoParams("new", 10))).paused is False


# -- queue_ready_info -------------------------------------------------------------------


async def test_ready_info_counts_ready_messages_up_to_limit(backend: Backend) -> None:
    await enqueue(backend, *[message("q") for _ in range(5)], message("q", delay=60))
    await claim_one(backend, "q")  # leased: no longer ready
    assert (await backend.queue_ready_info(ReadyInfoParams("q", 100))).ready_count == 4
    assert (await backend.queue_ready_info(ReadyInfoParams("q", 3))).ready_count == 3


async def test_ready_info_gives_the_oldest_ready_and_the_next_delayed_time(
    backend: Backend,
) -> None:
    old, new = message("q"), message("q")
    await enqueue(backend, old)
    await enqueue(backend, new, message("q", delay=50), message("q", delay=40))
    before = await backend_now(backend)
    info = await backend.queue_ready_info(ReadyInfoParams("q", 10))
    after = await backend_now(backend)

    assert info.oldest_available_at == (await record(backend, old.id)).available_at
    created = (await record(backend, new.id)).created_at
    assert info.next_available_at == pytest.approx(created + 40, abs=1e-6)
    assert (info.ready_count, info.paused) == (2, False)
    assert before <= info.now <= after


async def test_ready_info_with_types_describes_only_those_job_types(backend: Backend) -> None:
    charge, refund = job("charge", "mixed"), job("refund", "mixed")
    await enqueue(backend, charge)
    await enqueue(backend, refund, job("refund", "mixed", delay=30), message("mixed"))

    info = await backend.queue_ready_info(ReadyInfoParams("mixed", 10, types=("refund",)))
    assert info.ready_count == 1
    assert info.oldest_available_at == (await record(backend, refund.id)).available_at
    assert info.next_available_at is not None
    none = await backend.queue_ready_info(ReadyInfoParams("mixed", 10, types=("email",)))
    assert (none.ready_count, none.oldest_available_at, none.next_available_at) == (0, None, None)
    everything = await backend.queue_ready_info(ReadyInfoParams("mixed", 10))
    assert everything.ready_count == 3
    assert everything.oldest_available_at == (await record(backend, charge.id)).available_at


# -- queue_counts -----------------------------------------------------------------------


async def test_counts_cover_declared_empty_queues_and_undeclared_queues_with_messages(
    backend: Backend,
) -> None:
    await backend.queue_declare_many(QueueDeclareParams([QueueSettings("idle", '{"a": 1}')]))
    await enqueue(backend, message("busy"), message("busy"), message("busy"))
    await claim_one(backend, "busy")

    counts = await counts_of(backend)
    assert set(counts) == {"idle", "busy"}
    assert counts["idle"].by_state == {} and counts["idle"].oldest_ready_at is None
    assert counts["idle"].settings_json == '{"a": 1}'
    busy = counts["busy"]
    assert busy.by_state == {State.READY: 2, State.LEASED: 1}
    assert busy.paused is False and busy.settings_json is None
    assert busy.oldest_ready_at is not None


async def test_counts_by_state_include_finished_rows_and_can_name_one_queue(
    backend: Backend,
) -> None:
    await enqueue(backend, job(), job(), message("jobs"), message("other"))
    completed = await claim_one(backend, "jobs")
    failed = await claim_one(backend, "jobs")
    await backend.message_settle_many(
        Settlement(
            completes=[CompleteOutcome(completed.id, completed.lease_id, None)],
            fails=[FailOutcome(failed.id, failed.lease_id, "x")],
        )
    )
    only = await backend.queue_counts(QueueCountsParams("jobs"))
    assert [c.name for c in only] == ["jobs"]
    assert only[0].by_state == {State.COMPLETED: 1, State.FAILED: 1, State.READY: 1}
    (ready,) = await backend.message_list(MessageListParams("jobs", state=State.READY))
    assert only[0].oldest_ready_at == ready.available_at
    assert await backend.queue_counts(QueueCountsParams("nowhere")) == []


# -- queue_purge ------------------------------------------------------------------------


async def test_purge_deletes_ready_and_delayed_messages_and_keeps_leased_ones(
    backend: Backend,
) -> None:
    finished, failed = job(queue="q"), message("q")
    await enqueue(backend, finished, failed)
    to_finish = {m.id: m for m in (await claim(backend, "q", 2)).messages}
    await backend.message_settle_many(
        Settlement(
            completes=[CompleteOutcome(finished.id, to_finish[finished.id].lease_id, None)],
            fails=[FailOutcome(failed.id, to_finish[failed.id].lease_id, "x")],
        )
    )
    await enqueue(backend, message("q"))
    leased = await claim_one(backend, "q")
    ready, delayed, other = message("q"), message("q", delay=60), message("other")
    await enqueue(backend, ready, delayed, other)

    assert await backend.queue_purge(QueuePurgeParams("q")) == 2
    for purged in (ready.id, delayed.id):
        assert await gone(backend, purged)
    assert (await record(backend, finished.id)).state == State.COMPLETED
    assert (await record(backend, failed.id)).state == State.FAILED
    assert (await record(backend, other.id)).state == State.READY
    # In flight: kept, and its worker settles it as usual.
    assert (await record(backend, leased.id)).state == State.LEASED
    assert await backend.queue_purge(QueuePurgeParams("q")) == 0
    settled = await backend.message_settle_many(
        Settlement(completes=[CompleteOutcome(leased.id, leased.lease_id, None)])
    )
    assert leased.id in settled.states
    assert (await record(backend, leased.id)).state == State.COMPLETED


# -- dead_letter_reprocess --------------------------------------------------------------


async def test_reprocessed_dead_letters_move_back_to_their_origin_queue(
    backend: Backend,
) -> None:
    sent = [message("q", b'"a"'), message("q", b'"b"')]
    await enqueue(backend, *sent)
    copies = await dead_letter(backend, "q", "q-dlq")

    assert await backend.dead_letter_reprocess(DeadLetterReprocessParams("q-dlq")) == 2
    assert await backend.message_list(MessageListParams("q-dlq")) == []
    for copy_id in copies:
        moved = await record(backend, copy_id)
        assert (moved.queue, moved.state, moved.attempts) == ("q", State.READY, 0)
        assert moved.last_error is None
    redelivered = (await claim(backend, "q", 10)).messages
    assert sorted(m.id for m in redelivered) == sorted(copies)
    assert sorted(m.body for m in redelivered) == [b'"a"', b'"b"']
    assert all(m.attempts == 1 for m in redelivered)


async def test_reprocess_by_ids_sends_back_only_those(backend: Backend) -> None:
    await enqueue(backend, message("q"), message("q"), message("q"))
    first, second, third = await dead_letter(backend, "q", "q-dlq")
    reprocess = DeadLetterReprocessParams("q-dlq", ids=[first, third])
    assert await backend.dead_letter_reprocess(reprocess) == 2
    left = await backend.message_list(MessageListParams("q-dlq"))
    assert [m.id for m in left] == [second]


async def test_a_dead_lettered_job_comes_back_as_itself_with_a_fresh_attempt_budget(
    backend: Backend,
) -> None:
    sent = job(max_attempts=1)
    await enqueue(backend, sent)
    (copy_id,) = await dead_letter(backend, "jobs", "jobs-dlq")
    assert (await record(backend, copy_id)).origin_id == sent.id

    assert await backend.dead_letter_reprocess(DeadLetterReprocessParams("jobs-dlq")) == 1
    assert await gone(backend, copy_id)
    revived = await record(backend, sent.id)
    assert (revived.queue, revived.state, revived.attempts) == ("jobs", State.READY, 0)
    assert revived.finished_at is None and revived.type == "charge"
    delivery = await claim_one(backend, "jobs")
    assert (delivery.id, delivery.attempts) == (sent.id, 1)


async def test_a_dead_letter_copy_of_a_job_already_retried_is_dropped_without_reviving_it(
    backend: Backend,
) -> None:
    sent = job()
    await enqueue(backend, sent)
    (copy_id,) = await dead_letter(backend, "jobs", "jobs-dlq")
    assert await backend.job_retry(JobIdParams(sent.id)) == JobRetryResult(RetryResult.RETRIED)
    running = await claim_one(backend, "jobs")

    assert await backend.dead_letter_reprocess(DeadLetterReprocessParams("jobs-dlq")) == 0
    assert await gone(backend, copy_id)
    stored = await record(backend, sent.id)
    assert (stored.state, stored.attempts) == (State.LEASED, running.attempts)


async def test_dead_letters_being_consumed_are_not_reprocessed(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    (copy_id,) = await dead_letter(backend, "q", "q-dlq")
    await claim_one(backend, "q-dlq")
    assert await backend.dead_letter_reprocess(DeadLetterReprocessParams("q-dlq")) == 0
    assert (await record(backend, copy_id)).queue == "q-dlq"
    assert await backend.dead_letter_reprocess(DeadLetterReprocessParams("empty-dlq")) == 0
