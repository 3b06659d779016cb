"""Jobs (issue 4, point 7): `ctx.once(key, fn)` runs `fn` once per key across jobs."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import running_worker, wait_until
from job_helpers import drain_until, job_of
from taskflare import App, Backoff, JobContext, JobStatus, WorkerConfig
from taskflare.testing import drain


async def test_twenty_concurrent_jobs_run_the_charge_exactly_once(app: App) -> None:
    entered: set[str] = set()
    charges: list[str] = []
    outcomes: list[tuple[Any, bool]] = []

    async def charge() -> dict[str, Any]:
        charges.append("charged")
        # Hold the key until every job is inside its handler, so all 20 race for it.
        await wait_until(lambda: len(entered) == 20, what="20 concurrent jobs")
        return {"charge_id": "ch_1", "amount": 4200}

    @app.job("pay")
    async def pay(payload: Any, ctx: JobContext) -> Any:
        entered.add(ctx.job_id)
        result = await ctx.once("payment:42", charge)
        outcomes.append(result)
        return result[0]

    jobs = [await app.enqueue("pay", i) for i in range(20)]
    # Worker concurrency counts jobs (each job holds a slot): 20 slots, 20 racing jobs.
    async with running_worker(app, WorkerConfig(concurrency=20)):
        for job in jobs:
            assert await job.wait(timeout=30) == {"charge_id": "ch_1", "amount": 4200}
    assert charges == ["charged"]
    assert sorted(cached for _, cached in outcomes) == [False] + [True] * 19
    assert all(result == {"charge_id": "ch_1", "amount": 4200} for result, _ in outcomes)


async def test_once_returns_the_stored_result_to_later_jobs(app: App) -> None:
    runs: list[int] = []

    def send_receipt() -> str:
        runs.append(1)
        return "receipt-1"

    @app.job("receipt")
    async def receipt(payload: Any, ctx: JobContext) -> list[Any]:
        value, cached = await ctx.once("receipt:7", send_receipt)
        return [value, cached]

    first = await app.enqueue("receipt", 1)
    second = await app.enqueue("receipt", 2)
    await drain(app)
    # The two jobs run concurrently in one batch: either may be the one that runs it.
    results = [(await job_of(app, job.id)).result for job in (first, second)]
    assert sorted(results) == [["receipt-1", False], ["receipt-1", True]]
    assert runs == [1]


async def test_once_stores_nothing_when_fn_raises_so_a_retry_runs_it_again(app: App) -> None:
    calls: list[int] = []

    async def flaky_charge() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("gateway timeout")
        return "ch_2"

    @app.job("pay", max_attempts=3, retry=Backoff(base=0, cap=0))
    async def pay(payload: Any, ctx: JobContext) -> list[Any]:
        value, cached = await ctx.once("payment:43", flaky_charge)
        return [value, cached, ctx.attempt]

    job = await app.enqueue("pay")

    async def finished() -> bool:
        return (await job_of(app, job.id)).status.finished

    await drain_until(app, finished)
    done = await job_of(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == ["ch_2", False, 2]
    assert done.history[0].error == "ConnectionError: gateway timeout"
    assert len(calls) == 2


async def test_once_keys_are_independent(app: App) -> None:
    @app.job("k")
    async def k(payload: str, ctx: JobContext) -> list[Any]:
        value, cached = await ctx.once(payload, lambda: payload.upper())
        return [value, cached]

    a = await app.enqueue("k", "a")
    b = await app.enqueue("k", "b")
    await drain(app)
    assert (await job_of(app, a.id)).result == ["A", False]
    assert (await job_of(app, b.id)).result == ["B", False]


async def test_once_needs_a_key(app: App) -> None:
    errors: list[BaseException] = []

    @app.job("k")
    async def k(payload: Any, ctx: JobContext) -> None:
        with pytest.raises(ValueError) as info:
            await ctx.once("", lambda: 1)
        errors.append(info.value)

    await app.enqueue("k")
    await drain(app)
    assert len(errors) == 1
