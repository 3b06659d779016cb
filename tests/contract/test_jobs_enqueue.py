"""Jobs: enqueue validation (pydantic model, dataclass, TypedDict), unknown types,
`list_jobs` filters and cursor pagination, and the sync twins from plain code."""

from __future__ import annotations

import sys
import typing
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

from taskflare import (
    App,
    InvalidJobState,
    InvalidPayload,
    InvalidQueueConfig,
    Job,
    JobStatus,
    PermanentError,
    UnknownJobType,
)
from taskflare.testing import drain


class Email(BaseModel):
    to: str
    subject: str


@dataclass
class Resize:
    width: int
    height: int


class Crawl(TypedDict):
    url: str
    maxPages: int


async def all_jobs(app: App) -> list[Job]:
    return (await app.list_jobs(limit=1000)).jobs


async def test_pydantic_payload_is_validated_at_enqueue_and_given_as_a_model(app: App) -> None:
    got: list[Email] = []

    @app.job("send-email")
    async def send(payload: Email) -> None:
        got.append(payload)

    with pytest.raises(InvalidPayload, match="subject") as info:
        await app.enqueue("send-email", {"to": "a@example.com"})
    assert "send-email" in str(info.value)
    assert await all_jobs(app) == []

    job = await app.enqueue("send-email", Email(to="a@example.com", subject="Hi"))
    assert job.payload == {"to": "a@example.com", "subject": "Hi"}
    await drain(app)
    assert got == [Email(to="a@example.com", subject="Hi")]


async def test_dataclass_payload_is_validated_naming_the_field(app: App) -> None:
    got: list[Resize] = []

    @app.job("resize")
    def resize(payload: Resize) -> int:
        got.append(payload)
        return payload.width * payload.height

    with pytest.raises(InvalidPayload, match="width"):
        await app.enqueue("resize", {"width": "wide", "height": 2})
    assert await all_jobs(app) == []
    job = await app.enqueue("resize", {"width": 3, "height": 4})
    await drain(app)
    assert got == [Resize(3, 4)]
    assert (await app.get_job(job.id)).result == 12  # type: ignore[union-attr]


async def test_typeddict_payload_is_validated_naming_the_field(app: App) -> None:
    @app.job("crawl-website")
    async def crawl(payload: Crawl) -> int:
        return payload["maxPages"]

    with pytest.raises(InvalidPayload, match="maxPages"):
        await app.enqueue("crawl-website", {"url": "https://example.com", "maxPages": "many"})
    assert await all_jobs(app) == []
    await app.enqueue("crawl-website", {"url": "https://example.com", "maxPages": 100})
    assert len(await all_jobs(app)) == 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic takes typing.TypedDict")
def test_typing_typeddict_before_python_3_12_is_refused_at_registration(
    database_url: str,
) -> None:
    class Old(typing.TypedDict):
        url: str

    def handler(payload: Old) -> None:
        return None

    handler.__annotations__["payload"] = Old  # resolved, as without future annotations
    app = App(database_url)
    with pytest.raises(InvalidQueueConfig, match="typing_extensions"):
        app.job("old")(handler)


async def test_invalid_payload_message_does_not_echo_the_payload(app: App) -> None:
    @app.job("send-email")
    async def send(payload: Email) -> None:
        return None

    with pytest.raises(InvalidPayload) as info:
        await app.enqueue("send-email", {"to": 12345, "subject": "s3cr3t-token"})
    assert "to" in str(info.value) and "s3cr3t-token" not in str(info.value)


async def test_payload_that_is_not_json_is_rejected(app: App) -> None:
    app.job("any")(lambda payload: None)
    with pytest.raises(InvalidPayload):
        await app.enqueue("any", {"when": object()})
    assert await all_jobs(app) == []


async def test_unknown_job_type_raises_and_stores_nothing(app: App) -> None:
    app.job("known")(lambda payload: None)
    with pytest.raises(UnknownJobType, match="'nope'"):
        await app.enqueue("nope", {})
    assert await all_jobs(app) == []


def test_registering_a_job_type_twice_is_refused(database_url: str) -> None:
    app = App(database_url)
    app.job("dup")(lambda payload: None)
    with pytest.raises(InvalidQueueConfig, match="dup"):
        app.job("dup")(lambda payload: None)


async def test_list_jobs_pages_newest_first_without_duplicates_or_gaps(app: App) -> None:
    app.job("a")(lambda payload: None)
    app.job("b", queue="other")(lambda payload: None)
    enqueued = [(await app.enqueue("a" if i % 3 else "b", i)).id for i in range(23)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await app.list_jobs(limit=5, cursor=cursor)
        pages += 1
        assert len(page.jobs) <= 5
        seen.extend(j.id for j in page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 5
    assert seen == list(reversed(enqueued))


async def test_list_jobs_filters_by_status_type_and_queue(app: App) -> None:
    app.job("a")(lambda payload: None)
    app.job("b", queue="other")(lambda payload: None)

    @app.job("c")
    def c(payload: Any) -> None:
        raise PermanentError("no")

    a_ids = [(await app.enqueue("a", i)).id for i in range(3)]
    b_ids = [(await app.enqueue("b", i)).id for i in range(2)]
    c_id = (await app.enqueue("c")).id
    await drain(app)
    cancelled = (await app.enqueue("a", 99)).id
    await app.cancel(cancelled)
    pending = (await app.enqueue("b", 100)).id

    def ids(page: Any) -> list[str]:
        return [j.id for j in page.jobs]

    assert ids(await app.list_jobs(type="b")) == [pending, *reversed(b_ids)]
    assert ids(await app.list_jobs(queue="other", status="pending")) == [pending]
    assert ids(await app.list_jobs(status=JobStatus.FAILED)) == [c_id]
    assert ids(await app.list_jobs(status="cancelled")) == [cancelled]
    assert ids(await app.list_jobs(status="completed", type="a")) == list(reversed(a_ids))
    assert ids(await app.list_jobs(queue="default", type="b")) == []
    with pytest.raises(ValueError, match="unknown status"):
        await app.list_jobs(status="done")
    with pytest.raises(ValueError, match="limit"):
        await app.list_jobs(limit=0)
    with pytest.raises(ValueError, match="cursor"):
        await app.list_jobs(cursor="not-a-cursor")


def test_sync_twins_work_from_plain_code(database_url: str) -> None:
    app = App(database_url)
    try:
        app.job("double")(lambda payload: payload * 2)

        @app.job("fail")
        def fail(payload: Any) -> None:
            raise PermanentError("nope")

        job = app.enqueue_sync("double", 21)
        assert job.status is JobStatus.PENDING
        assert app.get_job_sync(job.id).status is JobStatus.PENDING  # type: ignore[union-attr]
        batch_id = app.enqueue_many_sync("double", [1, 2, 3], chunk_size=2)
        failing = app.enqueue_sync("fail")
        app.run_sync(drain(app))
        assert job.wait_sync(timeout=5) == 42
        assert app.get_job_sync(job.id).result == 42  # type: ignore[union-attr]
        batch = app.get_batch_sync(batch_id)
        assert batch is not None and (batch.total, batch.completed) == (3, 3)
        assert len(app.list_jobs_sync(type="double").jobs) == 4
        stats = app.stats_sync()
        assert (stats["total"], stats["completed"], stats["failed"]) == (5, 4, 1)
        again = app.retry_sync(failing.id)
        assert again.status is JobStatus.PENDING
        cancelled = app.cancel_sync(failing.id)
        assert cancelled.status is JobStatus.CANCELLED
        with pytest.raises(InvalidJobState):
            app.cancel_sync(job.id)
    finally:
        app.close_sync()
