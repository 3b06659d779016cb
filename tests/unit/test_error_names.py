"""Errors name the argument as the caller wrote it, carry units, and have the right type."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskflare import App
from taskflare.errors import (
    InvalidDelay,
    InvalidJobConfig,
    InvalidJobOption,
    InvalidMessage,
    InvalidPayload,
    InvalidQueueConfig,
    MessageTooLarge,
    TaskflareError,
)

HTTP = {"run_at": "runAt", "delay_seconds": "delaySeconds", "max_attempts": "maxAttempts"}


@pytest.fixture
def app(tmp_path: Path) -> App:
    application = App(f"sqlite:///{tmp_path / 'names.db'}")
    application.job("hello")(print)
    return application


def test_message_for_renames_only_the_fields_at_fault() -> None:
    exc = InvalidDelay("give either run_at or delay_seconds, not both", fields=("run_at",))
    assert exc.message_for(HTTP) == "give either runAt or delay_seconds, not both"
    assert exc.message_for({}) == str(exc)
    plain = TaskflareError("run_at is fine here")
    assert plain.message_for(HTTP) == "run_at is fine here"


def test_enqueue_argument_errors_are_validation_errors_naming_their_fields(app: App) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    cases = [
        ({"run_at": later, "delay_seconds": 5}, InvalidDelay, ("run_at", "delay_seconds")),
        ({"run_at": datetime(2030, 1, 1)}, InvalidDelay, ("run_at",)),
        ({"run_at": later + timedelta(days=400)}, InvalidDelay, ("run_at",)),
        ({"delay_seconds": 10**12}, InvalidDelay, ("delay_seconds",)),
        ({"priority": 10**9}, InvalidJobOption, ("priority",)),
        ({"max_attempts": 0}, InvalidJobOption, ("max_attempts",)),
        ({"idempotency_key": "a\x00b"}, InvalidMessage, ("idempotency_key",)),
    ]
    for kwargs, kind, fields in cases:
        with pytest.raises(kind) as caught:
            app.prepare_job("hello", {}, **kwargs)  # type: ignore[arg-type]
        assert isinstance(caught.value, InvalidMessage), kwargs  # ValueError, not config
        assert caught.value.fields == fields, kwargs
        for field in fields:
            assert field in str(caught.value)
            assert HTTP.get(field, field) in caught.value.message_for(HTTP)
    # Still an InvalidJobConfig for code written against older versions.
    assert issubclass(InvalidJobOption, InvalidJobConfig)
    with pytest.raises(InvalidDelay) as both:
        app.prepare_job("hello", {}, run_at=later, delay_seconds=1)
    assert not isinstance(both.value, InvalidQueueConfig)


def test_limits_are_said_with_a_date_or_units(app: App) -> None:
    with pytest.raises(InvalidDelay, match=r"run_at 2\d{3}-\d\d-\d\dT.*days away"):
        app.prepare_job("hello", {}, run_at=datetime.now(UTC) + timedelta(days=800))
    # Epoch milliseconds are not guessed: refused, saying run_at counts seconds.
    in_an_hour_ms = (time.time() + 3600) * 1000
    with pytest.raises(InvalidDelay, match=r"milliseconds\? run_at is in seconds\)$"):
        app.prepare_job("hello", {}, run_at=in_an_hour_ms)
    with pytest.raises(InvalidDelay) as far:  # seconds too far away are not milliseconds
        app.prepare_job("hello", {}, run_at=time.time() + 800 * 86_400)
    assert "milliseconds" not in str(far.value)
    with pytest.raises(InvalidDelay, match=r"31,536,000 seconds \(one year\)"):
        app.prepare_job("hello", {}, delay_seconds=10**9)
    with pytest.raises(MessageTooLarge, match=r"is 200 0\d\d bytes \(195 KiB\).*131 072 bytes"):
        app.prepare_job("hello", "x" * 200_000)


def test_a_payload_that_is_not_json_is_an_invalid_payload(app: App) -> None:
    with pytest.raises(InvalidPayload):
        app.prepare_job("not-declared", {"x": object()}, strict=False)
