"""Concurrency limits: per job type and per key, global across workers, enforced by the
claim itself (a job that may not run yet is not claimed and spends no attempt);
`Concurrency(1, key=...)` runs each key's jobs one at a time in enqueue order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers import running_worker, wait_until
from job_helpers import job_of
from taskflare import App, Concurrency, JobStatus, WorkerConfig
from taskflare.backends.base import ClaimParams, SettleResult
from taskflare.ids import uuid7
from taskflare.policy import Delivery, Succeeded, decide
from taskflare.worker.batch_runner import as_settlement


async def claim(app: App, queue: str, limit: int = 10, *, expected: bool = False) -> list[Any]:
    """One claim as a worker makes it (with the queue's limits); `expected`: as it claims
    while a queue drains (work expected, see `ClaimParams.describe_empty`)."""
    backend = await app.backend()
    spec = app.registry.queue(queue)
    result = await backend.message_claim_many(
        ClaimParams(
            queue=queue,
            limit=limit,
            lease_id=uuid7(),
            owner="test",
            visibility_timeout=30,
            types=tuple(sorted(spec.job_types)),
            limits=spec.flow_limits(),
            describe_empty=not expected,
        )
    )
    return result.messages


async def complete(app: App, claimed: list[Any]) -> SettleResult:
    backend = await app.backend()
    decisions = [
        decide(Delivery(m.id, m.lease_id, m.attempts, 3, is_job=True), Succeeded(b"null"))
        for m in claimed
    ]
    return await backend.message_settle_many(as_settlement(decisions))


async def test_a_key_at_its_limit_is_skipped_without_spending_attempts(app: App) -> None:
    @app.job("sync", queue="sync", concurrency=Concurrency(1, key=lambda p: p["account"]))
    async def sync(payload: Any) -> None:
        return None

    a1 = await app.enqueue("sync", {"account": "a", "n": 1})
    a2 = await app.enqueue("sync", {"account": "a", "n": 2})
    b1 = await app.enqueue("sync", {"account": "b", "n": 1})
    a3 = await app.enqueue("sync", {"account": "a", "n": 3})

    first = await claim(app, "sync")
    assert sorted(m.id for m in first) == sorted([a1.id, b1.id])
    assert await claim(app, "sync") == []  # a is running, b has nothing left
    for job in (a2, a3):
        waiting = await job_of(app, job.id)
        assert waiting.status is JobStatus.PENDING and waiting.attempts == 0
        assert waiting.history == ()
    await complete(app, [m for m in first if m.id == a1.id])
    assert [m.id for m in await claim(app, "sync")] == [a2.id]  # enqueue order


@pytest.mark.parametrize("expected", [False, True], ids=["claim", "expected-claim"])
@pytest.mark.parametrize(
    ("sizes", "taken"), [((10, 50, 1), (10, 50, 0)), ((11, 50, 1), (11, 49, 0))]
)
async def test_max_concurrency_fills_up_exactly_whatever_the_claim_sizes(
    app: App, expected: bool, sizes: tuple[int, ...], taken: tuple[int, ...]
) -> None:
    app.job("render", queue="fill", max_concurrency=60)(lambda p: None)
    await app.enqueue_many("render", list(range(100)))
    counts = [len(await claim(app, "fill", n, expected=expected)) for n in sizes]
    assert tuple(counts) == taken


async def test_max_concurrency_holds_whichever_way_the_claims_before_went(app: App) -> None:
    # Claims that expect work and others, in turn, then jobs ending: the running jobs a
    # claim counts are every claim's (a worker's claims differ as its queue drains).
    app.job("render", queue="mixed-claims", max_concurrency=60)(lambda p: None)
    await app.enqueue_many("render", list(range(200)))
    turns = [(10, True), (20, False), (50, True), (1, True)]
    taken = [await claim(app, "mixed-claims", n, expected=e) for n, e in turns]
    assert [len(t) for t in taken] == [10, 20, 30, 0]
    await complete(app, taken[0] + taken[1][:5])
    again = [await claim(app, "mixed-claims", n, expected=True) for n in (10, 10)]
    assert [len(t) for t in again] == [10, 5]


async def test_concurrency_key_given_at_enqueue_and_max_concurrency_per_type(app: App) -> None:
    @app.job("export", queue="exports", max_concurrency=2, concurrency=Concurrency(1))
    async def export(payload: Any) -> None:
        return None

    jobs = [await app.enqueue("export", i, concurrency_key=f"t{i % 3}") for i in range(6)]
    first = await claim(app, "exports")
    assert [m.id for m in first] == [jobs[0].id, jobs[1].id]  # the type allows 2 at once
    await complete(app, first[:1])
    assert [m.id for m in await claim(app, "exports")] == [jobs[2].id]


async def test_one_at_a_time_per_key_in_enqueue_order_with_a_busy_worker(app: App) -> None:
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    order: dict[str, list[int]] = {}

    @app.job("step", queue="steps", concurrency=Concurrency(1, key=lambda p: p["key"]))
    async def step(payload: Any) -> None:
        key = payload["key"]
        running[key] = running.get(key, 0) + 1
        most[key] = max(most.get(key, 0), running[key])
        order.setdefault(key, []).append(payload["n"])
        await asyncio.sleep(0.01)
        running[key] -= 1

    for n in range(8):
        for key in ("x", "y", "z"):
            await app.enqueue("step", {"key": key, "n": n})
    async with running_worker(app, WorkerConfig(queues=("steps",), concurrency=8)):
        await wait_until(
            lambda: sum(len(v) for v in order.values()) == 24, timeout=60, what="24 steps"
        )
    assert most == {"x": 1, "y": 1, "z": 1}
    assert order == {key: list(range(8)) for key in ("x", "y", "z")}


async def test_max_concurrency_holds_across_two_workers(app: App) -> None:
    running = [0]
    most = [0]
    done = [0]

    @app.job("render", queue="render", max_concurrency=2)
    async def render(payload: Any) -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.02)
        running[0] -= 1
        done[0] += 1

    for i in range(12):
        await app.enqueue("render", i)
    config = WorkerConfig(queues=("render",), concurrency=4)
    async with running_worker(app, config), running_worker(app, config):
        await wait_until(lambda: done[0] == 12, timeout=60, what="12 renders")
    assert most[0] == 2


async def test_a_job_waiting_on_a_full_key_says_so_and_the_limit_counts_it(app: App) -> None:
    app.job("sync", queue="sync", concurrency=Concurrency(1, key=lambda p: p["account"]))(
        lambda p: None
    )
    await app.declare_queues()
    first = await app.enqueue("sync", {"account": "a", "n": 1})
    waiting = await app.enqueue("sync", {"account": "a", "n": 2})
    assert [m.id for m in await claim(app, "sync")] == [first.id]
    hold = await app.read.job_hold(await job_of(app, waiting.id))
    (held,) = hold["heldBy"]
    assert held["kind"] == "concurrency" and held["key"] == "a" and held["max"] == 1
    assert held["until"] is None  # until one of the key's running jobs ends
    (limit,) = await app.read.limits()
    assert (limit["keys"], limit["running"], limit["waiting"]) == (1, 1, 1)


async def test_enqueue_many_applies_each_payloads_key(app: App) -> None:
    """A bulk enqueue stores each job's own limit buckets (its key from its payload)."""

    @app.job("sync", queue="sync", concurrency=Concurrency(1, key=lambda p: p["account"]))
    async def sync(payload: Any) -> None:
        return None

    payloads = [{"account": a, "n": n} for n, a in enumerate("aaba")]
    await app.enqueue_many("sync", payloads, chunk_size=3)
    first = await claim(app, "sync")
    assert sorted(m.body for m in first) == sorted(
        [b'{"account":"a","n":0}', b'{"account":"b","n":2}']
    )
    assert await claim(app, "sync") == []  # a is running, b has nothing left


async def test_an_idle_limited_queue_is_not_claimed_again_when_jobs_end_and_none_waits(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker waiting on a queue with limits looks again when a job ends anywhere, since
    that may free a slot a waiting job needs; with no job waiting (nothing held back, none
    delayed) it does not: jobs ending elsewhere cost it no claims."""
    app.job("limited", queue="limited", max_concurrency=2)(lambda payload: None)
    app.job("other", queue="other")(lambda payload: None)
    backend = await app.backend()
    claims: dict[str, int] = {}
    real = backend.message_claim_many

    async def counted(params: ClaimParams) -> Any:
        claims[params.queue] = claims.get(params.queue, 0) + 1
        return await real(params)

    monkeypatch.setattr(backend, "message_claim_many", counted)
    async with running_worker(app, WorkerConfig(idle_wait=60)):
        await wait_until(lambda: claims.get("limited"), what="the limited queue's first claim")
        first = await app.enqueue("other", 0)
        await first.wait(timeout=10)
        before = claims["limited"]
        for n in range(1, 6):  # five jobs ending one after another, five `done` signals
            job = await app.enqueue("other", n)
            await job.wait(timeout=10)
        assert claims["limited"] == before
        # Work for the limited queue still wakes it at once.
        waiting = await app.enqueue("limited", 0)
        await waiting.wait(timeout=10)
