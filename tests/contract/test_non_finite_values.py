"""NaN and infinities in any value taskflare stores as JSON are refused, naming where they
are; nothing is stored. (JSON has no such numbers: encoded, they would come back as null.)

One test per way a user value reaches the database, each run with NaN, +inf and -inf."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from taskflare import (
    App,
    BodyEncodingError,
    InvalidDocument,
    InvalidPayload,
    InvalidResult,
    JobContext,
    JobStatus,
)
from taskflare.testing import drain

BAD = [math.nan, math.inf, -math.inf]


class Reading(BaseModel):
    sensor: str
    value: float


def _noop(payload: Any) -> None:
    return None


async def _nothing_stored(app: App) -> None:
    assert (await app.read.jobs()).jobs == []
    assert (await app.get_queue("events").counts()).get("ready", 0) == 0
    assert await app.namespace("prices").count() == 0


Store = Callable[[App, float], Awaitable[Any]]

# What each path raises, the field path its message must name, and the call.
PATHS: dict[str, tuple[type[Exception], str, Store]] = {
    "send": (
        BodyEncodingError,
        r"body\.reading\[1\]",
        lambda app, bad: app.get_queue("events").send({"reading": [1.5, bad]}),
    ),
    "send_batch": (
        BodyEncodingError,
        r"body\.v",
        lambda app, bad: app.get_queue("events").send_batch([{"body": {"v": bad}}]),
    ),
    "enqueue": (
        InvalidPayload,
        r"payload\.x",
        lambda app, bad: app.enqueue("untyped", {"x": bad}),
    ),
    "enqueue, a model's float": (
        InvalidPayload,
        r"payload\.value",
        lambda app, bad: app.enqueue("typed", {"sensor": "a", "value": str(bad)}),
    ),
    "enqueue, a type not declared here": (
        InvalidPayload,
        r"payload\.x",
        lambda app, bad: app.enqueue("elsewhere", {"x": bad}, strict=False),
    ),
    "enqueue_many": (
        InvalidPayload,
        r"payload\.x",
        lambda app, bad: app.enqueue_many("untyped", [{"x": 1}, {"x": bad}]),
    ),
    "document put": (
        InvalidDocument,
        r"value\.price",
        lambda app, bad: app.namespace("prices").put("k", {"price": bad}),
    ),
    "document put_many": (
        InvalidDocument,
        r"value\[0\]",
        lambda app, bad: app.namespace("prices").put_many({"a": 1, "b": [bad]}),
    ),
    "document insert": (
        InvalidDocument,
        r"'k': value",
        lambda app, bad: app.namespace("prices").insert("k", bad),
    ),
}


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("path", list(PATHS))
async def test_a_non_finite_number_is_refused_naming_where(app: App, path: str, bad: float) -> None:
    app.queue("events")
    app.job("untyped")(_noop)

    @app.job("typed")
    def typed(payload: Reading) -> None:
        return None

    await app.jobs.load_stored_flow()
    error, where, store = PATHS[path]
    with pytest.raises(error, match=where) as raised:
        await store(app, bad)
    assert "NaN or infinite" in str(raised.value)
    await _nothing_stored(app)


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
async def test_a_once_result_that_is_not_finite_is_not_stored(app: App, bad: float) -> None:
    seen: list[Any] = []

    @app.job("memo", max_attempts=1)
    async def memo(payload: Any, ctx: JobContext) -> Any:
        try:
            await ctx.once("quote", lambda: {"score": [1, bad]})
        except InvalidResult as exc:
            seen.append(str(exc))
        # Nothing was stored under the key: the next call runs its function.
        seen.append(await ctx.once("quote", lambda: {"score": [1, 2]}))
        await ctx.progress(0.5)
        try:
            await ctx.progress(bad)
        except ValueError as exc:
            seen.append(str(exc))
        return "done"

    job = await app.enqueue("memo")
    await drain(app)
    assert (await job.refresh()).status is JobStatus.COMPLETED
    refused, second, progress = seen
    assert "once('quote'): result.score[1] is NaN or infinite" in refused
    assert second == ({"score": [1, 2]}, False)
    assert "progress must be a number from 0 to 1" in progress


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
async def test_a_job_result_that_is_not_finite_fails_the_job(app: App, bad: float) -> None:
    @app.job("answer", max_attempts=3)
    def answer(payload: Any) -> Any:
        return {"score": [1.0, bad]}

    job = await app.enqueue("answer")
    await drain(app)
    done = await job.refresh()
    assert done.status is JobStatus.FAILED and done.attempts == 1  # permanent: not retried
    assert done.result is None
    assert done.error is not None and "result.score[1] is NaN or infinite" in done.error
