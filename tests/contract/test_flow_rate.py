"""Rate limits: per queue, per job type and per key (a key function or `rate_key=`),
several at once (all must allow); a job over its limit stays pending without spending an
attempt; a 429 (or `RateLimited`) backs off the job's whole key; an idle worker waiting on
a limit does not spin."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest

from helpers import running_worker, wait_until
from job_helpers import job_of
from taskflare import (
    App,
    Concurrency,
    InvalidJobOption,
    InvalidMessage,
    JobStatus,
    RateLimit,
    RateLimited,
    WorkerConfig,
)
from taskflare.backends.base import ClaimParams, FlowHoldParams, FlowStatsParams
from taskflare.ids import uuid7
from taskflare.testing import drain

# Times stored by the database (PostgreSQL: microseconds, the server's clock) against this
# process's `time.time()` on the same machine: rounding, not load.
CLOCK_SLACK = 0.01


async def claim(
    app: App, queue: str, limit: int = 50, *, expected: bool = False
) -> tuple[list[Any], Any]:
    """One claim as a worker makes it; `expected`: as it claims while a queue drains
    (work expected, see `ClaimParams.describe_empty`)."""
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
    return result.messages, result.ready


async def test_a_job_over_the_rate_stays_pending_and_the_claim_says_when_to_look(
    app: App,
) -> None:
    app.job("call", queue="api", rate_limit=RateLimit("2/s", burst=2))(lambda p: None)
    jobs = [await app.enqueue("call", i) for i in range(5)]
    taken, _ = await claim(app, "api")
    assert [m.id for m in taken] == [jobs[0].id, jobs[1].id]
    taken, ready = await claim(app, "api")
    assert taken == []
    assert ready.ready_count == 0 and ready.next_available_at is not None
    assert 0 < ready.next_available_at - ready.now <= 0.5 + 0.05  # one token in 0.5 s
    for job in jobs[2:]:
        waiting = await job_of(app, job.id)
        assert waiting.status is JobStatus.PENDING and waiting.attempts == 0

    async def third_claimed() -> bool:
        got, _ = await claim(app, "api")
        return [m.id for m in got] == [jobs[2].id]

    await wait_until(third_claimed, timeout=5, interval=0.1, what="a token after 0.5 s")


async def test_per_key_limits_from_a_function_or_rate_key(app: App) -> None:
    per_tenant = RateLimit("1/m", key=lambda p: p["tenant"])
    app.job("sync", queue="per-key", rate_limit=per_tenant)(lambda p: None)
    a1 = await app.enqueue("sync", {"tenant": "a"})
    await app.enqueue("sync", {"tenant": "a"})
    b1 = await app.enqueue("sync", {"tenant": "b"})
    c1 = await app.enqueue("sync", {"tenant": "a"}, rate_key="c")  # overrides the function
    taken, _ = await claim(app, "per-key")
    assert sorted(m.id for m in taken) == sorted([a1.id, b1.id, c1.id])
    assert (await claim(app, "per-key"))[0] == []


async def test_enqueue_many_gives_every_job_of_the_call_its_keys(app: App) -> None:
    """`rate_key=` / `concurrency_key=` on `enqueue_many` key every job of the call, as on
    `enqueue`; a bad key is refused naming the option, before anything is stored."""
    app.job(
        "sync-many",
        queue="keyed-many",
        rate_limit=RateLimit("1/m", per_key=True),
        concurrency=Concurrency(5),  # keyed by `concurrency_key=` at enqueue
    )(lambda p: None)
    await app.enqueue_many("sync-many", [1, 2, 3], rate_key="a", concurrency_key="x")
    await app.enqueue_many("sync-many", [4, 5], rate_key="b", concurrency_key="x")
    taken, _ = await claim(app, "keyed-many")
    assert sorted(m.body for m in taken) == [b"1", b"4"]  # one start a minute per key
    for bad in ({"rate_key": ""}, {"concurrency_key": "a\x00b"}):
        with pytest.raises(InvalidMessage) as refused:
            await app.enqueue_many("sync-many", [6], **bad)  # type: ignore[arg-type]
        assert refused.value.fields == tuple(bad)
    assert (await app.read.job_stats())["pending"] == 3


async def test_every_limit_of_a_job_must_allow_it(app: App) -> None:
    app.queue("slow-api", rate_limit="1/m")
    app.job("fetch", queue="slow-api", rate_limit="100/s")(lambda p: None)
    for i in range(3):
        await app.enqueue("fetch", i)
    taken, _ = await claim(app, "slow-api")
    assert len(taken) == 1  # the type allows 100, the queue 1


async def test_rate_limited_backs_off_the_whole_key_without_spending_attempts(app: App) -> None:
    answered: list[str] = []

    @app.job(
        "push",
        queue="push",
        max_attempts=1,
        rate_limit=RateLimit("100/s", key=lambda p: p["tenant"]),
    )
    async def push(payload: Any) -> None:
        answered.append(payload["tenant"])
        if payload["tenant"] == "a":
            raise RateLimited(retry_after=30)

    a1 = await app.enqueue("push", {"tenant": "a", "n": 1})
    before = time.time()
    await drain(app)  # answered 429: key a backs off for 30 s
    a2 = await app.enqueue("push", {"tenant": "a", "n": 2})
    b1 = await app.enqueue("push", {"tenant": "b", "n": 1})
    await drain(app)
    assert sorted(answered) == ["a", "b"]  # a2 was never claimed: key a is held
    first = await job_of(app, a1.id)
    assert first.status is JobStatus.PENDING and first.attempts == 0
    assert [a.outcome for a in first.history] == ["snoozed"]
    assert (await job_of(app, a2.id)).history == ()
    assert (await job_of(app, b1.id)).status is JobStatus.COMPLETED
    backend = await app.backend()
    stats = await backend.flow_stats(FlowStatsParams(app.registry.queue("push").flow_limits()))
    (held,) = stats
    # a2 waits on the held key (a1 is snoozed until the hold ends: not ready yet).
    assert held.family == "r:push:0" and held.keys == 1 and held.waiting == 1
    # 30 s from the answer, which came between `before` and now (a loaded machine widens
    # the window; it cannot move the hold out of it).
    assert held.held_until is not None
    assert before + 30 - CLOCK_SLACK <= held.held_until <= time.time() + 30 + CLOCK_SLACK


def declare_429_hook(app: App, retry_after: str) -> None:
    """Job type `hook` (queue `hooks`, keyed by `rate_key=`): its server answers 429 with
    this `Retry-After`."""

    @app.job("hook", queue="hooks", max_attempts=1, rate_limit=RateLimit("10/s", per_key=True))
    async def hook(payload: Any) -> None:
        request = httpx.Request("POST", "https://api.example.com/")
        response = httpx.Response(429, headers={"Retry-After": retry_after}, request=request)
        raise httpx.HTTPStatusError("429", request=request, response=response)


async def test_an_http_429_backs_off_the_key_for_its_retry_after(app: App) -> None:
    declare_429_hook(app, retry_after="20")

    job = await app.enqueue("hook", 1, rate_key="acme")
    before = time.time()
    await drain(app)
    after = time.time()
    other = await app.enqueue("hook", 2, rate_key="acme")
    await drain(app)
    snoozed = await job_of(app, job.id)
    assert snoozed.status is JobStatus.PENDING and snoozed.attempts == 0
    # 20 s from the answer, which came while the first drain ran.
    run_at = snoozed.run_at.timestamp()
    assert before + 20 - CLOCK_SLACK <= run_at <= after + 20 + CLOCK_SLACK
    assert (await job_of(app, other.id)).history == ()


@pytest.mark.parametrize("retry_after", ["0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_an_http_429_asking_for_no_wait_snoozes_for_the_default(
    app: App, retry_after: str
) -> None:
    """`Retry-After: 0` (or negative, or past) snoozed the job for 0 s: given its attempt
    back each time, it ran again at once, for ever. It waits `default_retry_after` (1 s)."""
    declare_429_hook(app, retry_after=retry_after)

    job = await app.enqueue("hook", 1, rate_key="acme")
    await drain(app)
    snoozed = await job_of(app, job.id)
    assert snoozed.status is JobStatus.PENDING and snoozed.attempts == 0
    last = snoozed.history[-1]
    assert last.finished_at is not None
    assert (snoozed.run_at - last.finished_at).total_seconds() == pytest.approx(1.0, abs=0.2)
    assert len(snoozed.history) == 1


async def test_an_http_429_with_a_retry_after_past_a_year_holds_the_key_a_year(
    app: App,
) -> None:
    """`Retry-After: 1e300` from a server: the job and its key wait a year, and the job
    stays readable (a time no datetime can show made `get_job` raise)."""

    declare_429_hook(app, retry_after="1e300")

    job = await app.enqueue("hook", 1, rate_key="acme")
    await drain(app)
    snoozed = await job_of(app, job.id)
    year = 365 * 86_400
    assert snoozed.status is JobStatus.PENDING and snoozed.attempts == 0
    assert snoozed.run_at.timestamp() - time.time() == pytest.approx(year, abs=60)
    backend = await app.backend()
    (held,) = await backend.flow_stats(FlowStatsParams(app.registry.queue("hooks").flow_limits()))
    assert held.held_until is not None
    assert held.held_until - time.time() == pytest.approx(year, abs=60)


async def test_an_idle_worker_waiting_on_a_limit_does_not_spin(app: App) -> None:
    done: list[int] = []
    app.job("rare", queue="rare", rate_limit="1/m")(lambda p: done.append(p))
    for i in range(3):
        await app.enqueue("rare", i)
    backend = await app.backend()
    claims: list[tuple[float, int]] = []  # (when, how many jobs it took)
    claim_many = backend.message_claim_many

    async def counted(params: ClaimParams) -> Any:
        result = await claim_many(params)
        claims.append((time.monotonic(), len(result.messages)))
        return result

    backend.message_claim_many = counted  # type: ignore[method-assign]
    async with running_worker(app, WorkerConfig(queues=("rare",), concurrency=4)):
        await wait_until(lambda: len(done) == 1, timeout=10, what="the one allowed job")
        # Five claims after the job ended, each of which took nothing (the next token is a
        # minute away): the worker looked again at most about once a second, as it waits
        # until the token is due or its idle wait (1 s) ends, not in a loop.
        await wait_until(
            lambda: len([c for c in claims if c[1] == 0]) >= 5, timeout=60, what="5 claims"
        )
    assert len(done) == 1
    idle = [when for when, taken in claims if taken == 0]
    gaps = [b - a for a, b in itertools.pairwise(idle[2:])]
    # After the first ones (the job's end wakes the worker once), ~1 s apart; a busy
    # machine only makes them further apart.
    assert gaps and min(gaps) > 0.5, gaps


@pytest.mark.parametrize("expected", [False, True], ids=["claim", "expected-claim"])
async def test_a_limit_near_its_budget_gives_a_claim_only_what_is_left(
    app: App, expected: bool
) -> None:
    # Far from its budget a limit lets a claim take its whole batch; near it (fewer
    # tokens or slots left than a claim takes) the claim takes exactly what is left.
    app.job("sync", queue="near", rate_limit=RateLimit("80/h", burst=80))(lambda p: None)
    app.job("render", queue="slots", max_concurrency=60)(lambda p: None)
    for i in range(150):
        await app.enqueue("sync", i)
        await app.enqueue("render", i)
    for queue, taken in (("near", [50, 30, 0]), ("slots", [50, 10, 0])):
        counts = [len((await claim(app, queue, 50, expected=expected))[0]) for _ in range(3)]
        assert counts == taken, queue


@pytest.mark.parametrize("expected", [False, True], ids=["claim", "expected-claim"])
async def test_each_key_spends_the_tokens_of_its_own_jobs_in_a_mixed_claim(
    app: App, expected: bool
) -> None:
    # Two keys with 40 tokens each, their jobs interleaved: a claim of 30 takes 15 of
    # each and spends 15 from each key (not 30), so the next claim takes 30 again, the
    # one after that the 10 + 10 left.
    per_tenant = RateLimit("40/h", burst=40, key=lambda p: p["tenant"])
    app.job("sync", queue="mixed", rate_limit=per_tenant)(lambda p: None)
    for i in range(120):
        await app.enqueue("sync", {"tenant": "ab"[i % 2]})
    taken = [len((await claim(app, "mixed", 30, expected=expected))[0]) for _ in range(4)]
    assert taken == [30, 30, 20, 0]


async def test_a_held_key_holds_a_claim_that_expects_work(app: App) -> None:
    # Far from its budget (100 tokens, a claim of 10) but held: the key's jobs wait,
    # other keys' jobs are taken, and their tokens spent.
    per_tenant = RateLimit("100/s", key=lambda p: p["tenant"])
    app.job("call", queue="held", rate_limit=per_tenant)(lambda p: None)
    jobs = [await app.enqueue("call", {"tenant": "ab"[i % 2]}) for i in range(6)]
    backend = await app.backend()
    await backend.flow_hold(FlowHoldParams(buckets=("r:call:0|a",), seconds=30))
    taken, _ = await claim(app, "held", 10, expected=True)
    assert sorted(m.id for m in taken) == sorted(j.id for j in jobs[1::2])
    assert (await claim(app, "held", 10, expected=True))[0] == []
    (stat,) = await backend.flow_stats(FlowStatsParams(app.registry.queue("held").flow_limits()))
    assert stat.started == 3 and stat.waiting == 3


async def test_a_claim_that_expects_work_spends_the_tokens_it_takes(app: App) -> None:
    # Limits far from their budgets, a queue's and a type's, on one queue: each claim
    # spends one token of each per job it starts, so the fourth claim finds the type's
    # limit near and takes what is left; then the queue's 700 tokens left go to the
    # jobs of another type (a day's rate: nothing refills meanwhile).
    app.queue("spend", rate_limit=RateLimit("1000/d", burst=1000))
    app.job("a", queue="spend", rate_limit=RateLimit("300/d", burst=300))(lambda p: None)
    app.job("b", queue="spend")(lambda p: None)
    await app.enqueue_many("a", list(range(400)))
    taken = [len((await claim(app, "spend", 80, expected=True))[0]) for _ in range(5)]
    assert taken == [80, 80, 80, 60, 0]
    await app.enqueue_many("b", list(range(800)))
    taken = [len((await claim(app, "spend", 100, expected=True))[0]) for _ in range(9)]
    assert taken == [100] * 7 + [0, 0]


async def test_a_key_that_no_limit_of_the_type_uses_is_refused_naming_it(app: App) -> None:
    """A `rate_key` / `concurrency_key` only means something to a keyed limit: given for
    a type without one, the job was stored unlimited and its caller never knew. It is
    refused naming the option, by `enqueue` and `enqueue_many`; nothing is stored."""
    app.queue("metered", rate_limit="5/s")  # a queue's own limit is one bucket, unkeyed
    app.job("plain", queue="metered")(lambda p: None)
    app.job("flat", queue="flat", rate_limit="5/s", max_concurrency=2)(lambda p: None)
    app.job(
        "keyed",
        queue="keyed",
        rate_limit=RateLimit("5/s", per_key=True),
        concurrency=Concurrency(2),
    )(lambda p: None)
    refusals = {
        ("plain", "rate_key"): "has no rate limit",
        ("plain", "concurrency_key"): "has no keyed concurrency limit",
        ("flat", "rate_key"): "has rate limits, but none per key",
        ("flat", "concurrency_key"): "has only max_concurrency",
    }
    for (type, field), why in refusals.items():
        keys = {field: "acme"}
        for many in (False, True):
            with pytest.raises(InvalidJobOption) as refused:
                if many:
                    await app.enqueue_many(type, [{}, {}], **keys)
                else:
                    await app.enqueue(type, {}, **keys)
            assert refused.value.fields == (field,), refused.value
            assert str(refused.value).startswith(f"{field} was given, but job type {type!r} {why}")
    assert (await app.list_jobs()).jobs == []
    # A type whose limits use the keys takes them.
    await app.enqueue("keyed", {}, rate_key="acme", concurrency_key="7")
    await app.enqueue_many("keyed", [{}], rate_key="acme", concurrency_key="7")
    assert len((await app.list_jobs()).jobs) == 2


@pytest.mark.parametrize("bad", ["", "a\x7fb", "a\x85b", "\ud800", "x" * 201, 5.5])
async def test_a_bad_key_is_refused_naming_it_and_nothing_is_stored(app: App, bad: Any) -> None:
    # The same for a type with keyed limits, one with unkeyed ones and one without any:
    # a key given is checked whether or not a limit uses it (a lone surrogate would
    # otherwise reach the database and come back as a storage error naming no field).
    app.job(
        "keyed", queue="k", rate_limit=RateLimit("5/s", per_key=True), concurrency=Concurrency(2)
    )(lambda p: None)
    app.job("plain", queue="p")(lambda p: None)
    for type in ("keyed", "plain"):
        for field in ("rate_key", "concurrency_key"):
            keys = {"rate_key": "r", "concurrency_key": "c", field: bad}
            with pytest.raises(InvalidMessage, match=field) as caught:
                await app.enqueue(type, {}, **keys)
            assert caught.value.fields == (field,)
    assert (await app.list_jobs()).jobs == []
