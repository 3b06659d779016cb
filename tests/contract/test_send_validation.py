"""Semantic 7: size limits, content types, and refusals that enqueue nothing."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import get, total_messages
from taskflare import (
    App,
    BatchTooLarge,
    BodyEncodingError,
    DuplicateConsumer,
    EmptyBatch,
    InvalidMessage,
    InvalidQueueConfig,
    MessageBatch,
    MessageTooLarge,
    UnsupportedContentType,
)
from taskflare.testing import drain


@dataclass
class Point:
    x: int
    y: int


class Opaque:
    pass


async def received_bodies(app: App, queue: str = "q") -> list[tuple[Any, str]]:
    """Drain `queue` once and return what its consumer got: (body, content type)."""
    got: list[tuple[Any, str]] = []

    @app.get_queue(queue).consumer
    async def consume(batch: MessageBatch[Any]) -> None:
        got.extend((m.body, m.content_type) for m in batch.messages)

    await drain(app, [queue])
    return got


# -- sizes --------------------------------------------------------------------------------


async def test_body_over_max_message_bytes_raises_message_too_large(app: App) -> None:
    q = app.queue("q", max_message_bytes=1000)
    with pytest.raises(MessageTooLarge, match=r"1 001 bytes.*1 000 bytes"):
        await q.send("x" * 1001, content_type="text")
    assert await total_messages(app) == 0


async def test_body_at_max_message_bytes_is_accepted(app: App) -> None:
    q = app.queue("q", max_message_bytes=1000)
    await q.send("x" * 1000, content_type="text")
    assert await total_messages(app) == 1


async def test_default_message_limit_is_128_kib(app: App) -> None:
    q = app.queue("q")
    await q.send(b"x" * 131_072, content_type="bytes")
    with pytest.raises(MessageTooLarge):
        await q.send(b"x" * 131_073, content_type="bytes")
    assert await total_messages(app) == 1


async def test_batch_of_101_messages_raises_batch_too_large(app: App) -> None:
    q = app.queue("q")
    with pytest.raises(BatchTooLarge, match="101"):
        await q.send_batch([{"body": i} for i in range(101)])
    assert await total_messages(app) == 0


async def test_batch_of_100_messages_is_accepted(app: App) -> None:
    q = app.queue("q")
    ids = await q.send_batch([{"body": i} for i in range(100)])
    assert len(set(ids)) == 100
    assert await total_messages(app) == 100


async def test_batch_over_256_kib_raises_batch_too_large(app: App) -> None:
    q = app.queue("q")
    item = {"body": b"x" * 100_000, "content_type": "bytes"}
    with pytest.raises(BatchTooLarge, match="bytes"):
        await q.send_batch([item, item, item])
    assert await total_messages(app) == 0
    await q.send_batch([item, item])  # 200 KB is fine
    assert await total_messages(app) == 2


async def test_batch_with_one_oversized_message_enqueues_nothing(app: App) -> None:
    q = app.queue("q", max_message_bytes=100)
    with pytest.raises(MessageTooLarge, match=r"messages\[1\]: body is"):
        await q.send_batch([{"body": "ok"}, {"body": "x" * 200}, {"body": "ok"}])
    assert await total_messages(app) == 0


async def test_empty_batch_raises_empty_batch(app: App) -> None:
    q = app.queue("q")
    with pytest.raises(EmptyBatch):
        await q.send_batch([])
    assert await total_messages(app) == 0


@pytest.mark.parametrize(
    "bad_items",
    [
        [{"body": 1}, {"no_body": 2}],
        [{"body": 1}, "just a string"],
        [{"body": 1}, {"body": 2, "colour": "red"}],
        [{"body": 1}, {"body": "x", "content_type": "xml"}],
        [{"body": 1}, {"body": 5, "content_type": "text"}],
    ],
)
async def test_batch_with_one_bad_item_enqueues_nothing(app: App, bad_items: list[Any]) -> None:
    q = app.queue("q")
    with pytest.raises(InvalidMessage):
        await q.send_batch(bad_items)
    assert await total_messages(app) == 0


@pytest.mark.parametrize("not_a_list", [{"body": 1}, "abc", b"abc", 5])
async def test_send_batch_requires_a_list(app: App, not_a_list: Any) -> None:
    q = app.queue("q")
    with pytest.raises(InvalidMessage):
        await q.send_batch(not_a_list)
    assert await total_messages(app) == 0


# -- content types ------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["json", "JSON", "Json"])
async def test_content_type_names_are_case_insensitive(app: App, spelling: str) -> None:
    q = app.queue("q")
    message_id = await q.send({"a": 1}, content_type=spelling)
    record = await get(app, message_id)
    assert record is not None and record.content_type == "json"


async def test_json_is_the_default_content_type_and_round_trips(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    body = {"s": "é", "n": [1, 2.5, None, True], "nested": {"k": []}}
    await q.send(body)
    assert await received_bodies(app) == [(body, "json")]


async def test_none_is_a_valid_json_body(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    await q.send(None)
    await q.send_batch([{"body": None}])
    assert await received_bodies(app) == [(None, "json"), (None, "json")]


async def test_text_body_round_trips_as_str(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    await q.send("héllo ✓", content_type="TEXT")
    assert await received_bodies(app) == [("héllo ✓", "text")]


async def test_bytes_body_round_trips_as_bytes(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    await q.send(b"\x00\x01\xff", content_type="bytes")
    await q.send(bytearray(b"ba"), content_type="bytes")
    await q.send(memoryview(b"mv"), content_type="bytes")
    got = await received_bodies(app)
    assert got == [(b"\x00\x01\xff", "bytes"), (b"ba", "bytes"), (b"mv", "bytes")]
    assert all(type(body) is bytes for body, _ in got)


@pytest.mark.parametrize("body", [b"bytes", 5, None, ["a"]])
async def test_text_content_type_requires_a_str(app: App, body: Any) -> None:
    q = app.queue("q")
    with pytest.raises(BodyEncodingError, match="text"):
        await q.send(body, content_type="text")
    assert await total_messages(app) == 0


@pytest.mark.parametrize("body", ["text", 5, None, [1, 2]])
async def test_bytes_content_type_requires_bytes_like(app: App, body: Any) -> None:
    q = app.queue("q")
    with pytest.raises(BodyEncodingError, match="bytes"):
        await q.send(body, content_type="bytes")
    assert await total_messages(app) == 0


async def test_text_body_that_is_not_valid_unicode_is_refused(app: App) -> None:
    q = app.queue("q")
    with pytest.raises(BodyEncodingError):
        await q.send("lone surrogate \ud800", content_type="text")
    assert await total_messages(app) == 0


@pytest.mark.parametrize("body", [{1, 2}, Opaque(), b"raw bytes", 2**70, {1: "non-str key"}])
async def test_body_that_cannot_be_json_encoded_is_refused(app: App, body: Any) -> None:
    q = app.queue("q")
    with pytest.raises(BodyEncodingError):
        await q.send(body)
    assert await total_messages(app) == 0


async def test_pickle_is_refused_unless_the_queue_opts_in(app: App) -> None:
    q = app.queue("q")
    with pytest.raises(UnsupportedContentType, match="allow_pickle"):
        await q.send(Point(1, 2), content_type="pickle")
    assert await total_messages(app) == 0


async def test_pickle_round_trips_when_the_queue_opts_in(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0, allow_pickle=True)
    message_id = await q.send(Point(1, 2), content_type="Pickle")
    record = await get(app, message_id)
    assert record is not None and pickle.loads(record.body) == Point(1, 2)
    assert await received_bodies(app) == [(Point(1, 2), "pickle")]


async def test_unpicklable_body_is_refused(app: App) -> None:
    q = app.queue("q", allow_pickle=True)
    with pytest.raises(BodyEncodingError):
        await q.send(lambda: None, content_type="pickle")
    assert await total_messages(app) == 0


@pytest.mark.parametrize("name", ["xml", "v8", "application/json", ""])
async def test_unknown_content_type_is_refused_naming_it(app: App, name: str) -> None:
    q = app.queue("q")
    with pytest.raises(UnsupportedContentType) as info:
        await q.send("x", content_type=name)
    assert repr(name) in str(info.value)
    assert await total_messages(app) == 0


async def test_non_string_content_type_is_refused(app: App) -> None:
    q = app.queue("q")
    with pytest.raises(UnsupportedContentType):
        await q.send("x", content_type=None)  # type: ignore[arg-type]
    assert await total_messages(app) == 0


async def test_content_type_per_batch_item(app: App) -> None:
    q = app.queue("q", max_batch_timeout=0)
    await q.send_batch(
        [
            {"body": "t", "content_type": "text"},
            {"body": b"b", "content_type": "bytes"},
            {"body": {"j": 1}},
        ]
    )
    assert await received_bodies(app) == [("t", "text"), (b"b", "bytes"), ({"j": 1}, "json")]


# -- queue declaration ----------------------------------------------------------------------


async def test_queue_cannot_be_its_own_dead_letter_queue(app: App) -> None:
    with pytest.raises(InvalidQueueConfig, match="own dead_letter_queue"):
        app.queue("q", dead_letter_queue="q")
    assert "q" not in app.queues


async def test_second_consumer_on_a_queue_raises_duplicate_consumer(app: App) -> None:
    q = app.queue("q")

    @q.consumer
    async def first(batch: MessageBatch[Any]) -> None:
        pass

    with pytest.raises(DuplicateConsumer, match="first"):

        @q.consumer(timeout=5)
        def second(batch: MessageBatch[Any]) -> None:
            pass

    assert q.consumer_spec is not None and q.consumer_spec.handler is first


async def test_declaring_the_same_queue_twice_is_refused(app: App) -> None:
    app.queue("q")
    with pytest.raises(InvalidQueueConfig, match="already declared"):
        app.queue("q", max_retries=1)
