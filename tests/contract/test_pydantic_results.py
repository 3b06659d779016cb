"""A pydantic model returned by a handler (or given where JSON is stored) is stored as its
JSON data, as Celery's `pydantic=True` returns a task's model.

A typed handler receives its payload as a model instance; returning one (the same model,
or a result model) failed the job permanently with `Type is not JSON serializable`,
although dataclasses, datetimes, UUIDs and enums, which orjson writes itself, were
stored. A NaN or an infinity inside a model is still refused, naming its field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from job_helpers import job_of
from taskflare import App, InvalidPayload, JobContext, JobStatus
from taskflare.testing import drain


class Receipt(BaseModel):
    order: int
    sent_at: datetime
    lines: list[str]


class Score(BaseModel):
    value: float


SENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STORED = {"order": 7, "sent_at": "2026-01-02T03:04:05Z", "lines": ["a", "ü🎉"]}


async def test_a_handler_returning_a_model_completes_with_its_json(app: App) -> None:
    @app.job("charge")
    async def charge(payload: Receipt) -> Receipt:
        return payload  # the typed payload itself

    @app.job("nested")
    def nested(payload: Any) -> dict[str, Any]:
        return {"receipts": [Receipt(order=7, sent_at=SENT, lines=["a", "ü🎉"])]}

    first = await app.enqueue("charge", STORED)
    second = await app.enqueue("nested")
    await drain(app)
    assert await first.wait(timeout=60) == STORED
    assert await second.wait(timeout=60) == {"receipts": [STORED]}
    assert (await job_of(app, first.id)).result == STORED


async def test_a_model_holding_nan_is_refused_naming_the_field(app: App) -> None:
    @app.job("score", max_attempts=1)
    async def score(payload: Any) -> Score:
        return Score(value=math.nan)

    job = await app.enqueue("score")
    await drain(app)
    stored = await job_of(app, job.id)
    assert stored.status is JobStatus.FAILED
    assert stored.error is not None and "result.value is NaN or infinite" in stored.error
    with pytest.raises(InvalidPayload, match=r"payload\.score\.value is NaN"):
        await app.enqueue("score", {"score": Score(value=math.inf)})


async def test_a_model_is_stored_as_json_in_payloads_and_once_results(app: App) -> None:
    @app.job("untyped")
    async def untyped(payload: Any, ctx: JobContext) -> Any:
        result, _ = await ctx.once("quote", lambda: Receipt(order=1, sent_at=SENT, lines=[]))
        return result

    job = await app.enqueue("untyped", {"receipt": Receipt(order=7, sent_at=SENT, lines=[])})
    assert job.payload == {"receipt": {**STORED, "lines": []}}
    await drain(app)
    assert await job.wait(timeout=60) == {"order": 1, "sent_at": STORED["sent_at"], "lines": []}


async def test_what_orjson_cannot_write_is_still_refused(app: App) -> None:
    @app.job("setter", max_attempts=1)
    async def setter(payload: Any) -> set[int]:
        return {1}

    job = await app.enqueue("setter")
    await drain(app)
    stored = await job_of(app, job.id)
    assert stored.status is JobStatus.FAILED
    assert stored.error is not None and "Type is not JSON serializable: set" in stored.error
