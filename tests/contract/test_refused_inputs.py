"""Inputs that used to be stored as something else are refused, naming what is wrong:
plain messages sent to a job queue, a unique key missing from the payload, a dict or a
string where a list belongs, NaN and infinities in JSON."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from taskflare import (
    App,
    BodyEncodingError,
    InvalidMessage,
    InvalidPayload,
    InvalidQuery,
    JobNotFound,
    JobQueueSend,
    JobStatus,
    Unique,
    UniqueKeyMissing,
)
from taskflare.testing import drain


def _noop(payload: Any) -> None:
    return None


async def test_a_message_sent_to_a_job_queue_is_refused(app: App, database_url: str) -> None:
    app.queue("partner-api")
    app.job("call", queue="partner-api")(_noop)
    with pytest.raises(JobQueueSend, match="'partner-api' runs job types"):
        await app.get_queue("partner-api").send({"x": 1})
    with pytest.raises(JobQueueSend):
        await app.get_queue("partner-api").send_batch([{"body": 1}])
    await app.declare_queues()
    # A producer that declares the queue but not its job types: the stored settings say.
    producer = App(database_url)
    producer.queue("partner-api")
    try:
        with pytest.raises(JobQueueSend):
            await producer.get_queue("partner-api").send({"x": 1})
        stored = await producer.stored_queue("partner-api")
        with pytest.raises(JobQueueSend):
            await stored.send_batch([{"body": 1}])
    finally:
        await producer.close()
    assert (await app.get_queue("partner-api").counts()).get("ready", 0) == 0
    # A message queue still takes messages.
    app.queue("emails")
    assert await app.get_queue("emails").send({"to": "a"})


async def test_a_unique_key_missing_from_the_payload_is_an_error(app: App) -> None:
    app.job("notify", unique=Unique(by=("type", "payload"), keys=("user",)))(_noop)
    with pytest.raises(UniqueKeyMissing, match=r"'notify'.*'user'"):
        await app.enqueue("notify", {"usr": 5, "text": "a"})
    with pytest.raises(UniqueKeyMissing, match="'user'"):
        await app.enqueue_many("notify", [{"user": 1}, {"usr": 6}])
    assert (await app.read.jobs()).jobs == []  # nothing stored, not even the good payload
    first = await app.enqueue("notify", {"user": 5, "text": "a"})
    assert (await app.enqueue("notify", {"user": 5, "text": "b"})).id == first.id


async def test_a_dict_or_a_string_where_a_list_belongs_is_refused(app: App) -> None:
    app.job("ok")(_noop)
    app.queue("emails")
    for wrong in ({"a": 1}, "ab"):
        with pytest.raises(InvalidPayload, match="payloads must be a list"):
            await app.enqueue_many("ok", wrong)
        with pytest.raises(InvalidMessage, match="messages must be a list"):
            await app.get_queue("emails").send_batch(wrong)  # type: ignore[arg-type]
    assert await app.enqueue_many("ok", []) == ""  # nothing to store: no batch
    assert (await app.read.jobs()).jobs == []


async def test_nan_and_infinity_are_refused_naming_where(app: App) -> None:
    app.job("ok")(_noop)

    @app.job("answer", max_attempts=1)
    def answer(payload: Any) -> Any:
        return {"score": [1.0, math.inf]}

    app.queue("emails")
    with pytest.raises(BodyEncodingError, match=r"body\.y"):
        await app.get_queue("emails").send({"x": 1, "y": math.nan})
    with pytest.raises(BodyEncodingError, match=r"messages\[0\]: body\[0\]"):
        await app.get_queue("emails").send_batch([{"body": [-math.inf]}])
    with pytest.raises(InvalidPayload, match=r"payload\.x"):
        await app.enqueue("ok", {"x": math.nan})
    with pytest.raises(InvalidPayload, match=r"payloads\[1\]: .*payload\.v"):
        await app.enqueue_many("ok", [{"v": 1}, {"v": math.inf}])
    with pytest.raises(InvalidPayload, match="payload"):
        await app.enqueue("not-declared", {"x": math.nan}, strict=False)
    assert (await app.read.jobs()).jobs == []
    # JSON null itself is fine.
    await app.enqueue("ok", {"x": None})
    job = await app.enqueue("answer", {})
    await drain(app)
    done = await app.get_job(job.id)
    assert done is not None and done.status is JobStatus.FAILED
    assert done.error is not None and "result.score[1]" in done.error


async def test_a_listing_given_a_bad_status_limit_or_cursor_raises_a_typed_error(
    app: App,
) -> None:
    """`list_jobs` and the read model refuse a bad status, limit or cursor with
    `InvalidQuery` naming the argument (still a `ValueError`, what they raised before)."""
    await app.enqueue(_noop_type(app), {})
    bad: list[tuple[dict[str, Any], str]] = [
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 10**9}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJhIjoxfQ"}, "cursor"),  # base64 JSON of another shape
        # Of the right shape, but not what a page ended with: `float("nan")`, `True`
        # and `str(2)` used to be taken as a position.
        ({"cursor": _cursor(b'["nan", "x"]')}, "cursor"),
        ({"cursor": _cursor(b'[true, "x"]')}, "cursor"),
        ({"cursor": _cursor(b"[1.5, 2]")}, "cursor"),
        ({"cursor": _cursor(b'[1.5, "a\\u0000b"]')}, "cursor"),
    ]
    for listing in (app.list_jobs, app.read.jobs):
        for kwargs, field in bad:
            with pytest.raises(InvalidQuery) as raised:
                await listing(**kwargs)
            assert isinstance(raised.value, ValueError)
            assert raised.value.fields == (field,)
            assert field in str(raised.value)


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


async def test_an_id_that_is_not_ours_is_not_found_on_both_backends(app: App) -> None:
    """Text that is no id this library handed out is unknown, as any other unknown id:
    a NUL used to be `StorageRejected` on PostgreSQL only (and None on SQLite), and an
    empty or long id `InvalidMessage` from cancel and retry only (404 from `GET /jobs/{id}`
    but 400 from `POST /jobs/{id}/retry`)."""
    for job_id in ("a\x00b", "y" * 600, ""):
        assert await app.get_job(job_id) is None
        assert await app.get_batch(job_id) is None
        for change in (app.cancel, app.retry):
            with pytest.raises(JobNotFound):
                await change(job_id)
        with pytest.raises(JobNotFound):
            await app.read.job_when_finished(job_id, 0)


def _noop_type(app: App) -> str:
    app.job("noop")(_noop)
    return "noop"


@pytest.mark.parametrize("char", ["\x01", "\t", "\n", "\x7f"])
async def test_a_control_character_in_a_key_is_refused_as_over_http(app: App, char: str) -> None:
    """The HTTP API refuses every control character in `idempotencyKey` and
    `correlationId`; the library (and so the command line) refused only NUL and stored
    the rest: keys no dashboard search or query string can name."""
    app.job("noop")(_noop)
    for field in ("idempotency_key", "correlation_id"):
        with pytest.raises(InvalidMessage) as raised:
            await app.enqueue("noop", {}, **{field: f"key{char}1"})
        assert raised.value.fields == (field,) and "control character" in str(raised.value)
        with pytest.raises(InvalidMessage):
            await app.enqueue_many("noop", [{}], correlation_id=f"c{char}")
    assert (await app.read.jobs()).jobs == []  # nothing stored
    assert await app.enqueue("noop", {}, idempotency_key="key ☃ 1", correlation_id="ünï")
