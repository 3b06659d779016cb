"""A producer without the app's code (`strict=False`: `taskflare jobs enqueue` without
`--app`) applies the limits and uniqueness the app's workers stored with the queue
settings, or refuses a job whose limit needs the app's code (a key function)."""

from __future__ import annotations

from typing import Any

import pytest

from taskflare import App, AppCodeRequired, Concurrency, InvalidJobOption, RateLimit, Unique


def _declare(url: str) -> App:
    """The app with the code, as its workers declare it."""
    app = App(url)
    app.queue("partner-api", rate_limit="5/s")
    app.job("serial", concurrency=Concurrency(1, key=lambda p: p["account"]))(_noop)
    app.job("limited", queue="partner-api", rate_limit=RateLimit("2/s", per_key=True))(_noop)
    app.job("static", rate_limit="3/m", max_concurrency=2)(_noop)
    app.job("once", unique=Unique(by=("type", "payload"), keys=("user",)))(_noop)
    return app


def _noop(payload: Any) -> None:
    return None


async def _without_code(url: str) -> App:
    producer = App(url)
    await producer.jobs.load_stored_flow()
    return producer


async def test_limits_that_need_no_code_are_computed_from_the_stored_declaration(
    database_url: str,
) -> None:
    app = _declare(database_url)
    await app.declare_queues()
    producer = await _without_code(database_url)
    try:
        for type, payload, keys in (
            ("static", {"n": 1}, {}),
            ("limited", {"tenant": "a"}, {"rate_key": "a"}),
            ("serial", {"account": 9}, {"concurrency_key": "9"}),
        ):
            expected = app.prepare_job(type, payload, **keys)
            got = producer.prepare_job(type, payload, strict=False, **keys)
            assert got.flow_keys and got.flow_keys == expected.flow_keys, type
            assert got.queue == expected.queue, type  # the type's queue, from the settings
        # The queue's own rate limit holds for a type it does not declare, too.
        other = producer.prepare_job("ad-hoc", {}, strict=False, queue="partner-api")
        assert other.flow_keys == ("r@partner-api|",)
    finally:
        await producer.close()
        await app.close()


async def test_a_limit_keyed_by_a_function_is_refused_naming_the_app(database_url: str) -> None:
    app = _declare(database_url)
    await app.declare_queues()
    producer = App(database_url)
    try:
        with pytest.raises(AppCodeRequired, match=r"'serial'.*--app.*concurrency_key"):
            await producer.enqueue("serial", {"account": 9}, strict=False)
        assert (await producer.read.jobs()).jobs == []  # nothing was stored
        # A per-key rate limit without a function takes the key given (or none).
        job = await producer.enqueue("limited", {"tenant": "a"}, strict=False, rate_key="a")
        assert job.queue == "partner-api"
    finally:
        await producer.close()
        await app.close()


async def test_a_key_no_stored_limit_uses_is_refused_naming_it(database_url: str) -> None:
    """Without the app's code the stored declarations say which keys a type's limits use:
    `rate_key` for `static` (an unkeyed rate) or for a type with no stored limits, or
    `concurrency_key` for `limited`, is refused naming the option; nothing is stored."""
    app = _declare(database_url)
    await app.declare_queues()
    producer = await _without_code(database_url)
    try:
        for type, field in (
            ("static", "rate_key"),
            ("static", "concurrency_key"),
            ("limited", "concurrency_key"),
            ("once", "rate_key"),
        ):
            with pytest.raises(InvalidJobOption, match="as the app's workers stored") as refused:
                await producer.enqueue(type, {"user": 1}, strict=False, **{field: "k"})
            assert refused.value.fields == (field,)
        assert (await producer.read.jobs()).jobs == []
    finally:
        await producer.close()
        await app.close()


async def test_the_stored_uniqueness_holds_for_a_producer_without_code(database_url: str) -> None:
    app = _declare(database_url)
    await app.declare_queues()
    producer = App(database_url)
    try:
        first = await app.enqueue("once", {"user": 5, "text": "a"})
        again = await producer.enqueue("once", {"user": 5, "text": "b"}, strict=False)
        assert again.duplicate and again.id == first.id
        other = await producer.enqueue("once", {"user": 6, "text": "a"}, strict=False)
        assert not other.duplicate
    finally:
        await producer.close()
        await app.close()


async def test_a_producer_without_code_takes_the_types_max_attempts_and_priority(
    database_url: str,
) -> None:
    """`taskflare jobs enqueue` without `--app` stored every job with 3 attempts and
    priority 0 whatever its type declared: a type with `max_attempts=1`, because it must
    not run twice, ran three times. The declared values are stored with the queue's
    settings and taken from there; given options still win."""
    app = App(database_url)
    app.job("charge", max_attempts=1, priority=7)(_noop)
    app.job("plain")(_noop)
    await app.declare_queues()
    producer = await _without_code(database_url)
    try:
        charge = producer.prepare_job("charge", {}, strict=False)
        assert (charge.max_attempts, charge.priority) == (1, 7)
        plain = producer.prepare_job("plain", {}, strict=False)
        expected = app.prepare_job("plain", {})
        assert (plain.max_attempts, plain.priority) == (expected.max_attempts, expected.priority)
        given = producer.prepare_job("charge", {}, strict=False, max_attempts=4, priority=1)
        assert (given.max_attempts, given.priority) == (4, 1)
        stored = await producer.enqueue("charge", {}, strict=False)
        job = await producer.get_job(stored.id)
        assert job is not None and job.max_attempts == 1
    finally:
        await producer.close()
        await app.close()
