"""An int too large for a float (2**1100) given where taskflare takes seconds is refused
by name, like any number past the option's limit, and never escapes as `OverflowError`.

Python ints have no bound, but `float(2**1100)` and `math.isfinite(2**1100)` raise
`OverflowError`; each option's check must not call them before its range check.
One case per way such a number reaches taskflare."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskflare import (
    App,
    Backoff,
    InvalidConfig,
    InvalidDelay,
    InvalidJobConfig,
    InvalidWebhookConfig,
    JobStatus,
    Retry,
)
from taskflare.messages import Message, MessageBatch
from taskflare.testing import drain

HUGE = 2**1100
ONE_YEAR = 365 * 86_400


def _noop(payload: Any) -> None:
    return None


async def _nothing_stored(app: App) -> None:
    assert (await app.read.jobs()).jobs == []
    assert (await app.get_queue("events").counts()).get("ready", 0) == 0


def _app(database_url: str) -> App:
    app = App(database_url)
    app.queue("events")
    app.job("work")(_noop)
    return app


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("delay_seconds", lambda app, n: app.enqueue("work", {}, delay_seconds=n)),
        ("delay_seconds", lambda app, n: app.enqueue_many("work", [{}], delay_seconds=n)),
        (
            "idempotency_ttl",
            lambda app, n: app.enqueue("work", {}, idempotency_key="k", idempotency_ttl=n),
        ),
        ("delay_seconds", lambda app, n: app.get_queue("events").send({}, delay_seconds=n)),
        (
            "delay_seconds",
            lambda app, n: app.get_queue("events").send_batch([{"body": 1}], delay_seconds=n),
        ),
        (
            "delay_seconds",
            lambda app, n: app.get_queue("events").send_batch([{"body": 1, "delay_seconds": n}]),
        ),
    ],
)
async def test_a_delay_past_float_range_is_refused_by_name(
    database_url: str, field: str, call: Callable[[App, int], Any], sign: int
) -> None:
    app = _app(database_url)
    try:
        with pytest.raises(InvalidDelay, match=field) as caught:
            await call(app, sign * HUGE)
        assert field in caught.value.fields[0]
        await _nothing_stored(app)
    finally:
        await app.close()


async def test_run_at_past_float_range_is_refused_ahead_and_now_behind(database_url: str) -> None:
    app = _app(database_url)
    try:
        with pytest.raises(InvalidDelay, match=r"run_at .* one year"):
            await app.enqueue("work", {}, run_at=HUGE)
        await _nothing_stored(app)
        # A time in the past means now, however far in the past.
        job = await app.enqueue("work", {}, run_at=-HUGE)
        assert job.status is JobStatus.PENDING
        assert job.run_at.timestamp() <= time.time() + 1
    finally:
        await app.close()


@pytest.mark.parametrize("sign", [1, -1])
def test_a_consumer_retry_past_float_range_is_refused_by_name(sign: int) -> None:
    message: Message[Any] = Message("m1", 0.0, {}, 1, "json")
    with pytest.raises(InvalidDelay, match="delay_seconds"):
        message.retry(delay_seconds=sign * HUGE)
    with pytest.raises(InvalidDelay, match="delay_seconds"):
        MessageBatch("events", [message]).retry_all(delay_seconds=sign * HUGE)


@pytest.mark.parametrize(
    ("error", "declare"),
    [
        (InvalidJobConfig, lambda app: app.job("slow", timeout=HUGE)(_noop)),
        (InvalidJobConfig, lambda app: Backoff(base=HUGE)),
        (InvalidJobConfig, lambda app: Backoff(cap=HUGE)),
        (
            InvalidWebhookConfig,
            lambda app: app.webhook("s", secret="x", job_type="work", tolerance=HUGE),
        ),
        (
            InvalidWebhookConfig,
            lambda app: app.webhook("s", secret="x", job_type="work", replay_window=HUGE),
        ),
        (InvalidConfig, lambda app: App(app.database_url, wait_until_limit=HUGE)),
    ],
)
def test_a_setting_past_float_range_is_refused_by_name(
    sqlite_url: str, error: type[Exception], declare: Callable[[App], Any]
) -> None:
    app = _app(sqlite_url)
    with pytest.raises(error):
        declare(app)


def test_a_misfire_grace_past_float_range_means_no_limit(sqlite_url: str) -> None:
    app = _app(sqlite_url)
    app.cron("0 0 * * *", name="nightly", misfire_grace=HUGE)(_noop)
    assert app.cron_triggers["nightly"].misfire_grace == math.inf
    with pytest.raises(ValueError, match="misfire_grace"):
        app.cron("0 0 * * *", name="never", misfire_grace=-HUGE)(_noop)


async def test_a_retry_past_float_range_waits_the_longest_delay(database_url: str) -> None:
    app = App(database_url)

    @app.job("later", max_attempts=2)
    async def later(payload: Any) -> None:
        raise Retry(delay_seconds=HUGE)

    try:
        with pytest.raises(ValueError, match="delay_seconds"):
            Retry(delay_seconds=-HUGE)
        job = await app.enqueue("later", {})
        before = time.time()
        await drain(app)
        job = await app.get_job(job.id)
        assert job is not None and job.status is JobStatus.PENDING and job.attempts == 1
        assert before + ONE_YEAR - 60 <= job.run_at.timestamp() <= time.time() + ONE_YEAR
    finally:
        await app.close()
