"""A bad item of a bulk call (`send_batch`, `enqueue_many`) is refused naming which item
(`messages[2]`, `payloads[2]`) and what about it is wrong; nothing of the call is stored.

One case per check an item goes through; the bad item is always the third."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from taskflare import (
    App,
    BodyEncodingError,
    InvalidMessage,
    InvalidPayload,
    MessageTooLarge,
    RateLimit,
    Unique,
    UniqueKeyMissing,
    UnsupportedContentType,
)


class Order(BaseModel):
    id: int
    tenant: str


def _noop(payload: Any) -> None:
    return None


def _ok_messages() -> list[dict[str, Any]]:
    return [{"body": {"n": 1}}, {"body": "two", "content_type": "text"}]


def _ok_orders() -> list[dict[str, Any]]:
    return [{"id": 1, "tenant": "a"}, {"id": 2, "tenant": "b"}]


Call = Callable[[App], Awaitable[Any]]

CASES: dict[str, tuple[type[Exception], str, Call]] = {
    "send_batch: a body that is not JSON": (
        BodyEncodingError,
        r"messages\[2\]: body is not JSON",
        lambda app: app.get_queue("events").send_batch([*_ok_messages(), {"body": {1, 2}}]),
    ),
    "send_batch: a NaN in a body": (
        BodyEncodingError,
        r"messages\[2\]: body\.v\[1\] is NaN",
        lambda app: app.get_queue("events").send_batch(
            [*_ok_messages(), {"body": {"v": [0, math.nan]}}]
        ),
    ),
    "send_batch: a text body that is not text": (
        BodyEncodingError,
        r"messages\[2\]: content type 'text' requires a str body",
        lambda app: app.get_queue("events").send_batch(
            [*_ok_messages(), {"body": 3, "content_type": "text"}]
        ),
    ),
    "send_batch: an unknown content type": (
        UnsupportedContentType,
        r"messages\[2\]: unsupported content type 'xml'",
        lambda app: app.get_queue("events").send_batch(
            [*_ok_messages(), {"body": 3, "contentType": "xml"}]
        ),
    ),
    "send_batch: a negative delay": (
        InvalidMessage,
        r"messages\[2\]: delay_seconds",
        lambda app: app.get_queue("events").send_batch(
            [*_ok_messages(), {"body": 3, "delay_seconds": -1}]
        ),
    ),
    "send_batch: a body over the queue's limit": (
        MessageTooLarge,
        r"messages\[2\]: body is",
        lambda app: app.get_queue("events").send_batch([*_ok_messages(), {"body": "x" * 2000}]),
    ),
    "send_batch: an unknown key": (
        InvalidMessage,
        r"messages\[2\] has unknown keys: \['delay'\]",
        lambda app: app.get_queue("events").send_batch([*_ok_messages(), {"body": 1, "delay": 5}]),
    ),
    "send_batch: not a mapping": (
        InvalidMessage,
        r"messages\[2\] must be a mapping",
        lambda app: app.get_queue("events").send_batch([*_ok_messages(), "hello"]),
    ),
    "enqueue_many: a payload the model refuses": (
        InvalidPayload,
        r"payloads\[2\]: .*tenant",
        lambda app: app.enqueue_many("order", [*_ok_orders(), {"id": 3}]),
    ),
    "enqueue_many: a NaN in a payload": (
        InvalidPayload,
        r"payloads\[2\]: .*payload\.x is NaN",
        lambda app: app.enqueue_many("plain", [{"x": 1}, {"x": 2}, {"x": math.inf}]),
    ),
    "enqueue_many: a payload that is not JSON": (
        InvalidPayload,
        r"payloads\[2\]: .*payload is not JSON",
        lambda app: app.enqueue_many("plain", [{"x": 1}, {"x": 2}, {"x": object()}]),
    ),
    "enqueue_many: the first payload": (
        InvalidPayload,
        r"payloads\[0\]: .*payload\.x is NaN",
        lambda app: app.enqueue_many("plain", [{"x": math.nan}, {"x": 2}]),
    ),
    "enqueue_many: a payload over the queue's limit": (
        MessageTooLarge,
        r"payloads\[2\]: payload of job type 'plain' is",
        lambda app: app.enqueue_many("plain", [{"x": 1}, {"x": 2}, {"x": "y" * 2000}]),
    ),
    "enqueue_many: a unique key missing": (
        UniqueKeyMissing,
        r"payloads\[2\]: .*'user'",
        lambda app: app.enqueue_many("notify", [{"user": 1}, {"user": 2}, {"usr": 3}]),
    ),
    "enqueue_many: a rate limit key function that fails": (
        InvalidMessage,
        r"payloads\[2\]: the rate_limit key function failed",
        lambda app: app.enqueue_many("limited", [*_ok_orders(), {"id": 3}]),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_item_is_named_by_its_index_and_nothing_is_stored(app: App, case: str) -> None:
    app.queue("events", max_message_bytes=1024)
    app.queue("small", max_message_bytes=1024)
    app.job("order")(_noop_order)
    app.job("plain", queue="small")(_noop)
    app.job("notify", unique=Unique(by=("type", "payload"), keys=("user",)))(_noop)
    app.job("limited", rate_limit=RateLimit("10/s", key=lambda p: p["tenant"]))(_noop)
    error, message, call = CASES[case]
    with pytest.raises(error, match=message):
        await call(app)
    assert (await app.read.jobs()).jobs == []
    assert (await app.get_queue("events").counts()).get("ready", 0) == 0


async def test_an_option_error_names_the_option_not_an_item(app: App) -> None:
    app.job("plain")(_noop)
    with pytest.raises(InvalidMessage) as raised:
        await app.enqueue_many("plain", [{"x": 1}], priority=10**9)
    assert "priority" in str(raised.value) and "payloads[" not in str(raised.value)


def _noop_order(payload: Order) -> None:
    return None
