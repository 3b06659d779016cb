"""The outcome policy as a table: (delivery state, what happened) -> what is applied."""

from __future__ import annotations

import pytest

from taskflare.backends.base import (
    CancelOutcome,
    CompleteOutcome,
    FailOutcome,
    LeaseRef,
    RetryOutcome,
)
from taskflare.policy import (
    SHUTDOWN_ERROR,
    Cancelled,
    Delivery,
    Failed,
    LeaseExpired,
    Outcome,
    RetryRequested,
    Succeeded,
    WorkerShutdown,
    acked,
    decide,
)
from taskflare.retry import Backoff


def message(attempts: int, max_attempts: int = 3, dlq: str | None = None) -> Delivery:
    return Delivery("m1", "lease", attempts, max_attempts, dlq)


def job(attempts: int, max_attempts: int = 3, dlq: str | None = None) -> Delivery:
    backoff = Backoff(base=2, cap=300, jitter=False)
    return Delivery("j1", "lease", attempts, max_attempts, dlq, is_job=True, backoff=backoff)


def new_id() -> str:
    return "dlq-copy"


# (delivery, outcome, kind of outcome applied, attempt outcome, delay, error, dlq id)
TABLE = [
    # Success: a message is acked, a job completed.
    (message(1), Succeeded(), LeaseRef, "acked", None, None, None),
    (job(1), Succeeded(b'"ok"'), CompleteOutcome, "completed", None, None, None),
    # A retry asked for by the consumer: its delay, until the last attempt.
    (
        message(1),
        RetryRequested(7.0),
        RetryOutcome,
        "retried",
        7.0,
        "retried by the consumer",
        None,
    ),
    (message(3), RetryRequested(7.0), FailOutcome, "failed", None, "retried by the consumer", None),
    (
        message(3, dlq="dead"),
        RetryRequested(0),
        FailOutcome,
        "failed",
        None,
        "retried by the consumer",
        "dlq-copy",
    ),
    # The handler raised: a message waits the delay it comes with (the queue's retry_delay).
    (
        message(2),
        Failed("Boom: x", delay_seconds=5.0),
        RetryOutcome,
        "retried",
        5.0,
        "Boom: x",
        None,
    ),
    (
        message(3),
        Failed("Boom: x", delay_seconds=5.0),
        FailOutcome,
        "failed",
        None,
        "Boom: x",
        None,
    ),
    # A job's backoff times its retries unless the handler asked for a delay (Retry, 429).
    (job(1), Failed("E: x"), RetryOutcome, "retried", 4.0, "E: x", None),
    (job(2), Failed("E: x"), RetryOutcome, "retried", 8.0, "E: x", None),
    (job(2), Failed("E: x", delay_seconds=30.0), RetryOutcome, "retried", 30.0, "E: x", None),
    # A server's delay (at_least: its Retry-After) never shortens the backoff.
    (
        job(2),
        Failed("E", delay_seconds=0.0, at_least=True),
        RetryOutcome,
        "retried",
        8.0,
        "E",
        None,
    ),
    (
        job(2),
        Failed("E", delay_seconds=30.0, at_least=True),
        RetryOutcome,
        "retried",
        30.0,
        "E",
        None,
    ),
    (
        message(1),
        Failed("E", delay_seconds=0.0, at_least=True),
        RetryOutcome,
        "retried",
        0.0,
        "E",
        None,
    ),
    (job(3), Failed("E: x"), FailOutcome, "failed", None, "E: x", None),
    # Permanent errors fail at once, whatever attempts are left.
    (
        job(1, 10),
        Failed("PermanentError: no", permanent=True),
        FailOutcome,
        "failed",
        None,
        "PermanentError: no",
        None,
    ),
    (
        job(1, 10, dlq="dead"),
        Failed("P", permanent=True),
        FailOutcome,
        "failed",
        None,
        "P",
        "dlq-copy",
    ),
    # Cancelled while running.
    (job(1), Cancelled(), CancelOutcome, "cancelled", None, None, None),
    # The worker shut down under the handler: retried at once, or failed on the last attempt.
    (job(1), WorkerShutdown(), RetryOutcome, "retried", 0.0, SHUTDOWN_ERROR, None),
    (job(3), WorkerShutdown(), FailOutcome, "failed", None, SHUTDOWN_ERROR, None),
    (message(1), WorkerShutdown(), RetryOutcome, "retried", 0.0, SHUTDOWN_ERROR, None),
]


@pytest.mark.parametrize(
    ("delivery", "outcome", "kind", "attempt", "delay", "error", "dlq_id"), TABLE
)
def test_decision_table(
    delivery: Delivery,
    outcome: Outcome,
    kind: type,
    attempt: str,
    delay: float | None,
    error: str | None,
    dlq_id: str | None,
) -> None:
    decision = decide(delivery, outcome, new_id=new_id)
    assert type(decision.outcome) is kind
    assert decision.attempt_outcome == attempt
    assert decision.outcome.id == delivery.id and decision.outcome.lease_id == "lease"
    assert decision.delay_seconds == delay
    assert decision.error == error
    if isinstance(decision.outcome, FailOutcome):
        assert decision.outcome.dlq_message_id == dlq_id
        assert decision.outcome.dead_letter_queue == delivery.dead_letter_queue
    if isinstance(decision.outcome, RetryOutcome):
        assert decision.outcome.delay_seconds == delay


def test_a_lost_lease_is_retried_at_once_and_only_while_it_is_still_expired() -> None:
    decision = decide(job(1, 3), LeaseExpired(), new_id=new_id)
    assert isinstance(decision.outcome, RetryOutcome)
    assert decision.outcome.require_expired and decision.outcome.delay_seconds == 0
    assert decision.attempt_outcome == "lost"
    assert decision.error == "lease expired: the worker holding this job stopped or lost contact"


@pytest.mark.parametrize(
    ("delivery", "words"),
    [
        (job(1, 1), "its only delivery"),
        (job(4, 4), "the last of its 4 deliveries"),
        (message(4, 4, dlq="dead"), "the last of its 4 deliveries"),
    ],
)
def test_a_lost_lease_on_the_last_attempt_fails_with_the_deliverys_own_numbers(
    delivery: Delivery, words: str
) -> None:
    decision = decide(delivery, LeaseExpired(), new_id=new_id)
    assert isinstance(decision.outcome, FailOutcome) and decision.outcome.require_expired
    assert decision.attempt_outcome == "lost"
    assert decision.error is not None and words in decision.error
    kind = "job" if delivery.is_job else "message"
    assert f"the worker holding this {kind} stopped or lost contact" in decision.error
    assert decision.outcome.dlq_message_id == ("dlq-copy" if delivery.dead_letter_queue else None)


def test_errors_holding_a_nul_are_cleaned_so_every_backend_can_store_them() -> None:
    decision = decide(job(1), Failed("RuntimeError: a\x00b"), new_id=new_id)
    assert decision.error == "RuntimeError: a\\x00b"
    assert isinstance(decision.outcome, RetryOutcome) and "\x00" not in (
        decision.outcome.error or ""
    )


def test_a_permanent_failure_is_marked_permanent() -> None:
    assert decide(job(1), Failed("P", permanent=True)).permanent is True
    assert decide(job(3), Failed("E")).permanent is False


def test_the_bulk_ack_is_what_deciding_each_success_gives() -> None:
    refs = [LeaseRef(f"m{i}", "lease") for i in range(3)]
    one_by_one = [decide(Delivery(r.id, r.lease_id, 1, 3, None), Succeeded()) for r in refs]
    assert acked(refs).acks == [d.outcome for d in one_by_one]
    assert {d.attempt_outcome for d in one_by_one} == {"acked"}
