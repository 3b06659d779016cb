"""Message / MessageBatch ack-retry precedence and `resolve_outcome`, without any database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from taskflare import InvalidDelay, Message, MessageBatch
from taskflare.messages import resolve_outcome, timestamp_from_epoch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_batch(count: int = 3) -> MessageBatch[int]:
    return MessageBatch("q", [Message(f"id-{i}", NOW, i, 1, "json") for i in range(count)])


def outcomes(
    batch: MessageBatch[int], *, failed: bool = False, retry_delay: float = 9
) -> list[float | None]:
    """Per message: None when acked, else the retry delay."""
    return [
        resolve_outcome(m, handler_failed=failed, batch=batch, retry_delay=retry_delay)
        for m in batch.messages
    ]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="taskflare")


def test_unmarked_messages_are_acked_when_the_handler_returns() -> None:
    assert outcomes(make_batch()) == [None, None, None]


def test_unmarked_messages_are_retried_with_queue_delay_when_the_handler_raises() -> None:
    assert outcomes(make_batch(), failed=True) == [9, 9, 9]


def test_explicit_ack_survives_a_raise() -> None:
    batch = make_batch()
    batch.messages[0].ack()
    assert outcomes(batch, failed=True) == [None, 9, 9]


def test_explicit_retry_survives_a_return() -> None:
    batch = make_batch()
    batch.messages[2].retry()
    assert outcomes(batch) == [None, None, 9]


def test_retry_then_ack_keeps_the_retry_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    batch = make_batch()
    batch.messages[0].retry(delay_seconds=4)
    batch.messages[0].ack()
    assert outcomes(batch) == [4, None, None]
    assert any("ack() ignored" in w and "id-0" in w for w in warnings(caplog))


def test_ack_then_retry_keeps_the_ack_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    batch = make_batch()
    batch.messages[0].ack()
    batch.messages[0].retry()
    assert outcomes(batch, failed=True)[0] is None
    assert any("retry() ignored" in w and "ack()" in w for w in warnings(caplog))


def test_ack_then_retry_all_acks_that_message_and_retries_the_others() -> None:
    batch = make_batch()
    batch.messages[1].ack()
    batch.retry_all()
    assert outcomes(batch) == [9, None, 9]


def test_retry_then_ack_all_retries_that_message_and_acks_the_others() -> None:
    batch = make_batch()
    batch.messages[1].retry()
    batch.ack_all()
    assert outcomes(batch, failed=True) == [None, 9, None]


def test_retry_all_then_ack_all_retries_all_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    batch = make_batch()
    batch.retry_all()
    batch.ack_all()
    assert outcomes(batch) == [9, 9, 9]
    assert any("ack_all() ignored" in w for w in warnings(caplog))


def test_ack_all_then_retry_all_retries_nothing_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    batch = make_batch()
    batch.ack_all()
    batch.retry_all(delay_seconds=3)
    assert outcomes(batch, failed=True) == [None, None, None]
    assert any("retry_all() ignored" in w for w in warnings(caplog))


def test_ack_all_then_message_retry_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = make_batch()
    batch.ack_all()
    batch.messages[0].retry()
    assert outcomes(batch) == [None, None, None]
    assert any("retry() ignored" in w and "ack_all()" in w for w in warnings(caplog))


def test_retry_all_then_message_ack_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = make_batch()
    batch.retry_all()
    batch.messages[0].ack()
    assert outcomes(batch) == [9, 9, 9]
    assert any("ack() ignored, retry_all() was already called" in w for w in warnings(caplog))


def test_ack_after_ack_all_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    batch = make_batch()
    batch.ack_all()
    batch.messages[0].ack()
    batch.ack_all()
    assert warnings(caplog) == []


def test_consistent_calls_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    batch = make_batch()
    batch.messages[0].ack()
    batch.messages[0].ack()
    batch.messages[1].retry()
    batch.messages[1].retry(delay_seconds=2)
    batch.retry_all()
    batch.retry_all()
    assert warnings(caplog) == []


def test_message_delay_beats_retry_all_delay_beats_queue_delay() -> None:
    batch = make_batch()
    batch.messages[0].retry(delay_seconds=1)
    batch.retry_all(delay_seconds=2)
    assert outcomes(batch, retry_delay=3) == [1, 2, 2]


def test_zero_message_delay_is_not_mistaken_for_no_delay() -> None:
    batch = make_batch(2)
    batch.messages[0].retry(delay_seconds=0)
    batch.retry_all(delay_seconds=0)
    assert outcomes(batch, retry_delay=3) == [0, 0]


def test_message_retry_after_retry_all_sets_its_own_delay() -> None:
    batch = make_batch(2)
    batch.retry_all(delay_seconds=2)
    batch.messages[0].retry(delay_seconds=5)
    assert outcomes(batch) == [5, 2]


def test_repeated_retry_keeps_the_last_delay() -> None:
    batch = make_batch(1)
    batch.messages[0].retry(delay_seconds=5)
    batch.messages[0].retry(delay_seconds=7)
    assert outcomes(batch) == [7]


def test_first_retry_all_delay_wins() -> None:
    batch = make_batch(1)
    batch.retry_all(delay_seconds=5)
    batch.retry_all(delay_seconds=7)
    assert outcomes(batch) == [5]


def test_plain_retry_uses_queue_delay() -> None:
    batch = make_batch(1)
    batch.messages[0].retry()
    assert outcomes(batch, retry_delay=0) == [0]
    assert outcomes(batch, retry_delay=12.5) == [12.5]


@pytest.mark.parametrize("bad", [-1, "3", float("nan"), True])
def test_retry_and_retry_all_refuse_bad_delays(bad: object) -> None:
    batch = make_batch(1)
    with pytest.raises(InvalidDelay):
        batch.messages[0].retry(delay_seconds=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidDelay):
        batch.retry_all(delay_seconds=bad)  # type: ignore[arg-type]
    # a refused call decides nothing
    assert batch.messages[0].decision is None
    assert outcomes(batch) == [None]


def test_batch_exposes_queue_messages_and_length() -> None:
    batch = make_batch(2)
    assert batch.queue == "q"
    assert len(batch) == 2
    assert [m.body for m in batch.messages] == [0, 1]
    message = batch.messages[0]
    assert (message.id, message.timestamp, message.attempts) == ("id-0", NOW, 1)


def test_timestamp_from_epoch_is_aware_utc() -> None:
    stamp = timestamp_from_epoch(0)
    assert stamp == datetime(1970, 1, 1, tzinfo=UTC)
