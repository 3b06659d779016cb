"""Queue declaration is validated like Cloudflare's: bad values raise, naming field and limit."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskflare import (
    App,
    InvalidConfig,
    InvalidJobConfig,
    InvalidQueueConfig,
    MessageBatch,
    QueueConfig,
    WorkerConfig,
    contrib,
)

# Nothing in this module connects: declaring queues never touches the database.
URL = "sqlite:///never-opened.db"


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("max_batch_size", 0, "between 1 and 100"),
        ("max_batch_size", 101, "between 1 and 100"),
        ("max_batch_size", -5, "between 1 and 100"),
        ("max_batch_timeout", -0.5, "between 0 and 60"),
        ("max_batch_timeout", 60.01, "between 0 and 60"),
        ("max_batch_timeout", math.nan, "between 0 and 60"),
        ("max_batch_timeout", math.inf, "between 0 and 60"),
        ("max_retries", -1, "between 0 and 100"),
        ("max_retries", 101, "between 0 and 100"),
        ("retry_delay", -1, "between 0 and 86400"),
        ("retry_delay", 86_401, "between 0 and 86400"),
        ("visibility_timeout", 0, "between 0.1 and"),
        ("max_concurrency", 0, "between 1 and"),
        ("max_message_bytes", 0, "between 1 and"),
        ("max_batch_bytes", 0, "between 1 and"),
    ],
)
def test_out_of_range_value_names_the_field_and_the_limit(
    field: str, value: object, limit: str
) -> None:
    with pytest.raises(InvalidQueueConfig) as info:
        QueueConfig.create("q", **{field: value})
    message = str(info.value)
    assert field in message
    assert limit in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 2.5),
        ("max_batch_size", "10"),
        ("max_batch_size", None),
        ("max_batch_size", True),
        ("max_batch_timeout", "5"),
        ("max_batch_timeout", False),
        ("max_retries", 1.5),
        ("max_retries", "3"),
        ("retry_delay", "0"),
        ("visibility_timeout", None),
        ("max_concurrency", 2.5),
        ("max_concurrency", "4"),
        ("allow_pickle", "yes"),
        ("allow_pickle", 1),
    ],
)
def test_wrong_type_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidQueueConfig, match=field):
        QueueConfig.create("q", **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 1),
        ("max_batch_size", 100),
        ("max_batch_timeout", 0),
        ("max_batch_timeout", 60),
        ("max_batch_timeout", 0.25),
        ("max_retries", 0),
        ("max_retries", 100),
        ("retry_delay", 0),
        ("retry_delay", 86_400),
        ("max_concurrency", 1),
        ("max_concurrency", None),
    ],
)
def test_boundary_values_are_accepted(field: str, value: object) -> None:
    config = QueueConfig.create("q", **{field: value})
    assert getattr(config, field) == value


def test_defaults_match_cloudflare() -> None:
    config = QueueConfig.create("q")
    assert config.max_batch_size == 10
    assert config.max_batch_timeout == 5
    assert config.max_retries == 3
    assert config.max_attempts == 4
    assert config.retry_delay == 0
    assert config.dead_letter_queue is None
    assert config.max_concurrency is None
    assert config.max_message_bytes == 131_072
    assert config.allow_pickle is False


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "x" * 64, None, 5, "a/b"])
def test_bad_queue_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidQueueConfig, match="queue name"):
        QueueConfig.create(name)


@pytest.mark.parametrize("name", ["q", "emails-dlq", "a.b_c-d", "0", "x" * 63])
def test_good_queue_names_are_accepted(name: str) -> None:
    assert QueueConfig.create(name).name == name


def test_bad_dead_letter_queue_name_is_refused() -> None:
    with pytest.raises(InvalidQueueConfig, match="queue name"):
        QueueConfig.create("q", dead_letter_queue="not valid")


def test_queue_named_as_its_own_dlq_is_refused() -> None:
    with pytest.raises(InvalidQueueConfig, match="own dead_letter_queue"):
        QueueConfig.create("q", dead_letter_queue="q")


def test_app_queue_raises_at_declaration_and_registers_nothing() -> None:
    app = App(URL)
    with pytest.raises(InvalidQueueConfig, match="max_batch_size"):
        app.queue("q", max_batch_size=101)
    with pytest.raises(InvalidQueueConfig, match="max_batch_timeout"):
        app.queue("q", max_batch_timeout=61)
    with pytest.raises(InvalidQueueConfig, match="max_retries"):
        app.queue("q", max_retries=101)
    assert app.queues == {}


def test_app_queue_declaring_a_dlq_registers_it() -> None:
    app = App(URL)
    app.queue("q", dead_letter_queue="q-dlq")
    assert set(app.queues) == {"q", "q-dlq"}
    dlq = app.queue("q-dlq", max_retries=0)  # declaring it later replaces the implicit one
    assert app.get_queue("q-dlq") is dlq


@pytest.mark.parametrize("timeout", [0, -1, "5", None, math.nan])
def test_consumer_timeout_is_validated(timeout: Any) -> None:
    q = App(URL).queue("q")
    with pytest.raises(InvalidQueueConfig, match="timeout"):
        q.consumer(timeout=timeout)


@pytest.mark.parametrize("timeout", [0, -1, "5", True, math.nan, math.inf])
def test_job_timeout_is_validated_nan_included(timeout: Any) -> None:
    """A job type's timeout is seconds > 0 (None: no limit); NaN used to pass `<= 0`."""
    with pytest.raises(InvalidJobConfig, match="timeout must be a positive number"):
        App(URL).job("t", timeout=timeout)(lambda payload: None)
    for build in (contrib.email, contrib.webhooks, contrib.crawler, contrib.imports):
        with pytest.raises(InvalidJobConfig, match="timeout"):
            App(URL).use(build(timeout=timeout))


@pytest.mark.parametrize("limit", [-1, "5", True, math.nan, math.inf])
def test_wait_until_limit_is_a_finite_number_of_seconds(limit: Any) -> None:
    with pytest.raises(InvalidConfig, match="wait_until_limit"):
        App(URL, wait_until_limit=limit)


def test_consumer_must_be_callable() -> None:
    q = App(URL).queue("q")
    with pytest.raises(InvalidQueueConfig, match="callable"):
        q.consumer(42)  # type: ignore[call-overload]


def test_async_and_sync_consumers_are_told_apart() -> None:
    app = App(URL)

    @app.queue("a").consumer
    async def async_handler(batch: MessageBatch[Any]) -> None:
        pass

    @app.queue("b").consumer(timeout=2)
    def sync_handler(batch: MessageBatch[Any]) -> None:
        pass

    a, b = app.get_queue("a").consumer_spec, app.get_queue("b").consumer_spec
    assert a is not None and a.is_async and a.timeout == 15 * 60
    assert b is not None and not b.is_async and b.timeout == 2


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "4"])
def test_worker_concurrency_must_be_a_positive_integer(concurrency: Any) -> None:
    with pytest.raises(InvalidQueueConfig, match="concurrency"):
        WorkerConfig(concurrency=concurrency)


def test_worker_shutdown_grace_must_not_be_negative() -> None:
    with pytest.raises(InvalidQueueConfig, match="shutdown_grace"):
        WorkerConfig(shutdown_grace=-1)
