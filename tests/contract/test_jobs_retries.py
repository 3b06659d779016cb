"""Jobs (issue 4, point 3): retries with exponential backoff per type, `PermanentError`,
`Retry(delay_seconds=)`, HTTP errors, and failing into the queue's dead-letter queue."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from job_helpers import drain_until, job_of
from taskflare import App, Backoff, Job, JobContext, JobStatus, PermanentError, Retry
from taskflare.testing import drain


def retry_delay(job: Job) -> float:
    """Seconds between the end of the job's last attempt and when it may run again."""
    last = job.history[-1]
    assert last.finished_at is not None
    return (job.run_at - last.finished_at).total_seconds()


def http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.example.com/hook")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


async def test_default_backoff_is_exponential_with_jitter(app: App) -> None:
    @app.job("flaky")
    async def flaky(payload: Any) -> None:
        raise RuntimeError("down")

    jobs = [await app.enqueue("flaky", i) for i in range(6)]
    await drain(app)
    for job in jobs:
        retried = await job_of(app, job.id)
        assert retried.status is JobStatus.PENDING and retried.attempts == 1
        assert retried.error == "RuntimeError: down"
        # Backoff() after attempt 1: min(2 * 2**1, 300) = 4 s, jittered into [2, 4].
        assert 2 - 0.05 <= retry_delay(retried) <= 4 + 0.5


async def test_backoff_base_and_cap_are_set_per_type(app: App) -> None:
    @app.job("slow-retry", max_attempts=5, retry=Backoff(base=7, cap=1000, jitter=False))
    async def slow(payload: Any) -> None:
        raise RuntimeError("x")

    @app.job("capped", max_attempts=5, retry=Backoff(base=7, cap=10, jitter=False))
    async def capped(payload: Any) -> None:
        raise RuntimeError("x")

    a = await app.enqueue("slow-retry")
    b = await app.enqueue("capped")
    await drain(app)
    assert retry_delay(await job_of(app, a.id)) == pytest.approx(14, abs=0.5)
    assert retry_delay(await job_of(app, b.id)) == pytest.approx(10, abs=0.5)


async def test_backoff_grows_between_attempts_until_the_cap(app: App) -> None:
    @app.job("grow", max_attempts=4, retry=Backoff(base=0.05, cap=0.15, jitter=False))
    async def grow(payload: Any) -> None:
        raise RuntimeError("again")

    job = await app.enqueue("grow")

    async def failed() -> bool:
        return (await job_of(app, job.id)).status is JobStatus.FAILED

    await drain_until(app, failed, what="job to run out of attempts")
    history = (await job_of(app, job.id)).history
    assert [a.outcome for a in history] == ["retried", "retried", "retried", "failed"]
    gaps = []
    for before, after in itertools.pairwise(history):
        assert before.finished_at is not None and after.started_at is not None
        gaps.append((after.started_at - before.finished_at).total_seconds())
    # Delays after attempts 1, 2, 3: 0.1, 0.15 (capped), 0.15 (capped).
    for gap, expected in zip(gaps, [0.1, 0.15, 0.15], strict=True):
        assert gap >= expected - 0.01


async def test_seed_backoff_formula_is_expressible(app: App) -> None:
    @app.job("seed", max_attempts=3, retry=Backoff(base=60, cap=300, jitter=False))
    async def seed(payload: Any) -> None:
        raise RuntimeError("x")

    job = await app.enqueue("seed")
    await drain(app)
    # min(60 * 2 ** 1, 300) after the first attempt.
    assert retry_delay(await job_of(app, job.id)) == pytest.approx(120, abs=0.5)


async def test_permanent_error_fails_the_job_at_once(app: App) -> None:
    @app.job("charge", max_attempts=5)
    async def charge(payload: Any) -> None:
        raise PermanentError("card declined")

    job = await app.enqueue("charge")
    await drain(app)
    failed = await job_of(app, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 1
    assert failed.error == "PermanentError: card declined"
    assert [a.outcome for a in failed.history] == ["failed"]


async def test_retry_exception_retries_after_its_delay(app: App) -> None:
    @app.job("poll", max_attempts=5)
    async def poll(payload: Any, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise Retry(delay_seconds=30, reason="not ready yet")
        return "ready"

    job = await app.enqueue("poll")
    await drain(app)
    retried = await job_of(app, job.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    assert retried.error == "Retry: not ready yet"
    assert retry_delay(retried) == pytest.approx(30, abs=0.5)


async def test_retry_exception_with_a_short_delay_runs_again(app: App) -> None:
    @app.job("poll", max_attempts=5)
    async def poll(payload: Any, ctx: JobContext) -> int:
        if ctx.attempt < 3:
            raise Retry(delay_seconds=0.05)
        return ctx.attempt

    job = await app.enqueue("poll")

    async def done() -> bool:
        return (await job_of(app, job.id)).status is JobStatus.COMPLETED

    await drain_until(app, done)
    assert (await job_of(app, job.id)).result == 3


async def test_http_404_is_permanent(app: App) -> None:
    @app.job("hook", max_attempts=5)
    async def hook(payload: Any) -> None:
        raise http_error(404)

    job = await app.enqueue("hook")
    await drain(app)
    failed = await job_of(app, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1


async def test_http_500_and_408_are_retried(app: App) -> None:
    @app.job("hook", max_attempts=5)
    async def hook(payload: int) -> None:
        raise http_error(payload)

    server = await app.enqueue("hook", 500)
    timeout = await app.enqueue("hook", 408)
    await drain(app)
    for job in (server, timeout):
        retried = await job_of(app, job.id)
        assert retried.status is JobStatus.PENDING and retried.attempts == 1


async def test_http_429_honours_retry_after(app: App) -> None:
    @app.job("hook", max_attempts=5)
    async def hook(payload: Any) -> None:
        raise http_error(429, {"Retry-After": "90"})

    job = await app.enqueue("hook")
    await drain(app)
    retried = await job_of(app, job.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    assert retry_delay(retried) == pytest.approx(90, abs=0.5)


YEAR = 365 * 86_400


@pytest.mark.parametrize(
    "raised",
    [
        http_error(429, {"Retry-After": "1e300"}),
        http_error(429, {"Retry-After": "99999999999"}),
        Retry(delay_seconds=1e300),
    ],
    ids=["retry-after-1e300", "retry-after-3000-years", "Retry-1e300"],
)
async def test_a_retry_delay_past_a_year_waits_a_year_and_the_job_stays_readable(
    app: App, raised: BaseException
) -> None:
    """A delay no datetime can show (a server's `Retry-After: 1e300`) made the job
    unreadable: `get_job`, `list_jobs` and the API raised OverflowError on it."""

    @app.job("hook", max_attempts=5)
    async def hook(payload: Any) -> None:
        raise raised

    job = await app.enqueue("hook")
    await drain(app)
    retried = await job_of(app, job.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    assert retry_delay(retried) == pytest.approx(YEAR, abs=1)
    assert [j.id for j in (await app.list_jobs()).jobs] == [job.id]


async def test_http_429_without_retry_after_uses_the_backoff(app: App) -> None:
    @app.job("hook", max_attempts=5, retry=Backoff(base=20, cap=1000, jitter=False))
    async def hook(payload: Any) -> None:
        raise http_error(429)

    job = await app.enqueue("hook")
    await drain(app)
    assert retry_delay(await job_of(app, job.id)) == pytest.approx(40, abs=0.5)


async def test_job_out_of_attempts_fails_and_goes_to_the_queue_dlq(app: App) -> None:
    app.queue("default", max_batch_timeout=0, dead_letter_queue="dlq")

    @app.job("sync-crm", max_attempts=3, retry=Backoff(base=0, cap=0))
    async def sync_crm(payload: Any) -> None:
        raise RuntimeError("crm down")

    job = await app.enqueue("sync-crm", {"account": 7})
    ok = await app.enqueue("sync-crm", {"account": 8}, max_attempts=1)
    await drain(app, ["default"])
    failed = await job_of(app, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 3
    assert failed.error == "RuntimeError: crm down"
    dead = await app.get_queue("dlq").list_messages()
    assert sorted((m.origin_id, m.origin_queue) for m in dead) == sorted(
        [(job.id, "default"), (ok.id, "default")]
    )
    by_origin = {m.origin_id: m for m in dead}
    assert by_origin[job.id].body == {"account": 7}
    assert by_origin[job.id].state == "ready"


async def test_permanent_failure_also_goes_to_the_dlq(app: App) -> None:
    app.queue("default", max_batch_timeout=0, dead_letter_queue="dlq")

    @app.job("bad", max_attempts=5)
    async def bad(payload: Any) -> None:
        raise PermanentError("never")

    job = await app.enqueue("bad", 1)
    await drain(app, ["default"])
    [dead] = await app.get_queue("dlq").list_messages()
    assert dead.origin_id == job.id


async def test_failed_job_without_a_dlq_stays_only_as_failed(app: App) -> None:
    @app.job("bad", max_attempts=1)
    async def bad(payload: Any) -> None:
        raise RuntimeError("x")

    job = await app.enqueue("bad")
    await drain(app)
    assert (await job_of(app, job.id)).status is JobStatus.FAILED
    assert set(app.queues) == {"default"}


@pytest.mark.parametrize(
    "retry_after",
    ["0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "5"],
    ids=["zero", "negative", "past-date", "garbage", "shorter-than-the-backoff"],
)
async def test_http_429_never_retries_sooner_than_the_backoff(app: App, retry_after: str) -> None:
    """`Retry-After: 0` (or negative, or a past date) retried at once: a job spent all its
    attempts in a moment. A server's delay only ever lengthens the wait."""

    @app.job("hook", max_attempts=8, retry=Backoff(base=15, cap=30, jitter=False))
    async def hook(payload: Any) -> None:
        raise http_error(429, {"Retry-After": retry_after})

    job = await app.enqueue("hook")
    await drain(app)
    retried = await job_of(app, job.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    assert retry_delay(retried) == pytest.approx(30, abs=0.5)
