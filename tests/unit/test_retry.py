"""`Backoff.delay` and `classify`: what each exception means for a job."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from taskflare import Backoff, InvalidJobConfig, InvalidQueueConfig, PermanentError, Retry
from taskflare.retry import classify, retry_after_seconds


def http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://example.com/")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def test_backoff_without_jitter_doubles_per_attempt_up_to_the_cap() -> None:
    backoff = Backoff(base=2, cap=60, jitter=False)
    assert [backoff.delay(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]


def test_seed_formula_min_60_times_2_to_the_attempts_capped_at_300() -> None:
    seed = Backoff(base=60, cap=300, jitter=False)
    assert [seed.delay(n) for n in range(5)] == [60, 120, 240, 300, 300]


def test_jitter_draws_between_half_and_the_full_delay() -> None:
    backoff = Backoff(base=10, cap=1000)
    draws = [backoff.delay(3) for _ in range(500)]
    assert all(40 <= d <= 80 for d in draws)
    assert max(draws) - min(draws) > 10


def test_default_backoff_is_base_2_cap_300_with_jitter() -> None:
    assert Backoff() == Backoff(base=2.0, cap=300.0, jitter=True)
    assert all(150 <= Backoff().delay(50) <= 300 for _ in range(50))


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert Backoff(base=1, cap=5, jitter=False).delay(10_000) == 5


@pytest.mark.parametrize("bad", [-1, "2", True, None])
def test_backoff_rejects_bad_numbers(bad: object) -> None:
    with pytest.raises(InvalidQueueConfig):
        Backoff(base=bad)  # type: ignore[arg-type]


def test_permanent_error_is_permanent() -> None:
    assert classify(PermanentError("x")).permanent


def test_retry_carries_its_delay() -> None:
    verdict = classify(Retry(delay_seconds=12.5))
    assert not verdict.permanent and verdict.delay == 12.5


def test_retry_rejects_negative_or_non_numeric_delays() -> None:
    with pytest.raises(ValueError):
        Retry(delay_seconds=-1)
    with pytest.raises(TypeError):
        Retry(delay_seconds="5")  # type: ignore[arg-type]


def test_other_exceptions_are_retried_with_the_backoff() -> None:
    verdict = classify(RuntimeError("x"))
    assert not verdict.permanent and verdict.delay is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_http_4xx_is_permanent(status: int) -> None:
    assert classify(http_error(status)).permanent


@pytest.mark.parametrize("status", [408, 500, 502, 503])
def test_http_408_and_5xx_are_retried(status: int) -> None:
    verdict = classify(http_error(status))
    assert not verdict.permanent and verdict.delay is None


def test_http_429_with_retry_after_seconds() -> None:
    verdict = classify(http_error(429, {"Retry-After": "42"}))
    assert not verdict.permanent and verdict.delay == 42


def test_http_429_with_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    verdict = classify(http_error(429, {"Retry-After": format_datetime(when, usegmt=True)}))
    assert verdict.delay is not None and 110 <= verdict.delay <= 121


def test_http_429_with_a_past_date_or_garbage() -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert classify(http_error(429, {"Retry-After": past})).delay is None  # the backoff
    assert classify(http_error(429, {"Retry-After": "soon"})).delay is None
    assert classify(http_error(429)).delay is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_delay_that_is_not_finite_is_refused_so_it_is_never_stored(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Retry(delay_seconds=value)
    with pytest.raises(InvalidJobConfig, match="Backoff base must be a finite number"):
        Backoff(base=value)
    with pytest.raises(InvalidJobConfig, match="Backoff cap must be a finite number"):
        Backoff(cap=value)


@pytest.mark.parametrize("header", ["nan", "inf", "-inf", "1e400", "Infinity"])
def test_http_429_with_a_retry_after_that_is_not_finite_uses_the_default(header: str) -> None:
    assert classify(http_error(429, {"Retry-After": header})).delay is None


@pytest.mark.parametrize(
    "header", ["0", "-5", "-0.5", "", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 99 Foo"]
)
def test_a_retry_after_asking_for_no_wait_gives_none_so_the_backoff_applies(header: str) -> None:
    assert retry_after_seconds(header) is None
    verdict = classify(http_error(429, {"Retry-After": header}))
    assert verdict.delay is None and verdict.at_least


def test_a_retry_after_is_capped_when_asked_and_is_a_floor_over_the_backoff() -> None:
    assert retry_after_seconds("99999999", cap=3600) == 3600
    assert retry_after_seconds("42", cap=3600) == 42
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 00:02:00 GMT", now=now) == 120
    assert classify(http_error(429, {"Retry-After": "42"})).at_least
    assert not classify(Retry(0)).at_least  # a handler's own Retry(0) means "now"


@pytest.mark.parametrize("jitter", ["no", "false", 0, 1, None])
def test_backoff_jitter_must_be_a_bool(jitter: object) -> None:
    """A truthy string such as "no" silently turned jitter on."""
    with pytest.raises(InvalidJobConfig, match="jitter must be True or False"):
        Backoff(jitter=jitter)  # type: ignore[arg-type]
