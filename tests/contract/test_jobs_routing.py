"""`enqueue(..., queue=)` routes a job to another job queue: any worker consuming that
queue whose app has the job type runs it there, with the type's own options (attempts,
backoff) and the queue's own settings (dead-letter queue). A type with rate or
concurrency limits runs only on its own queue; a worker whose app lacks the type leaves
the job pending. On both backends, with a running `Worker` and with `drain`."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import running_worker, state_counts, wait_until
from taskflare import (
    App,
    Backoff,
    DuplicateConsumer,
    InvalidWorkerConfig,
    JobContext,
    JobQueueSend,
    JobRouteRefused,
    JobStatus,
    UnknownQueue,
    Worker,
    WorkerConfig,
)
from taskflare.testing import drain

NO_WAIT = Backoff(base=0, cap=0, jitter=False)
Ran = list[tuple[str, str, int]]


def _declare(app: App, ran: Ran, *, bulk_has_types: bool) -> None:
    """`report` lives on queue `reports` (2 attempts, no backoff); `bulk` is a job queue
    with a dead-letter queue, declared with `jobs=True` or by a job type of its own."""
    if bulk_has_types:
        app.queue("bulk", dead_letter_queue="bulk-dlq")
        app.job("bulk-own", queue="bulk")(lambda payload: None)
    else:
        app.queue("bulk", dead_letter_queue="bulk-dlq", jobs=True)

    @app.job("report", queue="reports", max_attempts=2, retry=NO_WAIT)
    async def report(payload: dict[str, Any], ctx: JobContext) -> str:
        ran.append((payload["name"], ctx.queue, ctx.attempt))
        if payload["fail"] >= ctx.attempt:
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        return f"done on {ctx.queue}"


async def _status(app: App, job_id: str) -> JobStatus | None:
    job = await app.get_job(job_id)
    return None if job is None else job.status


async def _check_ran_on_bulk(app: App, ran: Ran, flaky: str, broken: str) -> None:
    assert sorted(ran) == [
        ("broken", "bulk", 1),
        ("broken", "bulk", 2),
        ("flaky", "bulk", 1),
        ("flaky", "bulk", 2),
    ]
    done = await app.get_job(flaky)
    assert done is not None and (done.status, done.result) == (JobStatus.COMPLETED, "done on bulk")
    failed = await app.get_job(broken)
    # The type's max_attempts (2, not the queue's 3 deliveries or the default).
    assert failed is not None and (failed.status, failed.attempts) == (JobStatus.FAILED, 2)
    # The dead-letter queue is the queue's it ran on; nothing touched its own queue.
    assert await state_counts(app, "bulk-dlq") == {"ready": 1}
    assert (await app.list_jobs(queue="reports")).jobs == []


@pytest.mark.parametrize("bulk_has_types", [False, True], ids=["jobs-true", "own-types"])
async def test_a_job_routed_to_another_queue_runs_on_a_worker_of_that_queue(
    app: App, bulk_has_types: bool
) -> None:
    ran: Ran = []
    _declare(app, ran, bulk_has_types=bulk_has_types)
    flaky = await app.enqueue("report", {"name": "flaky", "fail": 1}, queue="bulk")
    batch = await app.enqueue_many("report", [{"name": "broken", "fail": 9}], queue="bulk")
    [broken_job] = [j for j in (await app.list_jobs(queue="bulk")).jobs if j.batch_id == batch]
    assert (flaky.queue, flaky.max_attempts) == ("bulk", 2)  # the type's max_attempts

    async with running_worker(app, WorkerConfig(queues=("bulk",))):
        assert await flaky.wait(timeout=20) == "done on bulk"
        await wait_until(
            lambda: _failed(app, broken_job.id), timeout=20, what="the broken job to fail"
        )
    await _check_ran_on_bulk(app, ran, flaky.id, broken_job.id)


async def _failed(app: App, job_id: str) -> bool:
    return await _status(app, job_id) is JobStatus.FAILED


@pytest.mark.parametrize("bulk_has_types", [False, True], ids=["jobs-true", "own-types"])
async def test_drain_runs_a_routed_job_on_the_queue_it_was_routed_to(
    app: App, bulk_has_types: bool
) -> None:
    ran: Ran = []
    _declare(app, ran, bulk_has_types=bulk_has_types)
    flaky = await app.enqueue("report", {"name": "flaky", "fail": 1}, queue="bulk")
    broken = await app.enqueue("report", {"name": "broken", "fail": 9}, queue="bulk")
    assert (await drain(app, ["reports"])).batches == 0  # not on the type's own queue
    result = await drain(app, ["bulk"])
    assert (result.acked, result.retried, result.failed) == (1, 2, 1)
    await _check_ran_on_bulk(app, ran, flaky.id, broken.id)


async def test_a_worker_consumes_a_job_queue_declared_with_no_types_by_default(app: App) -> None:
    ran: Ran = []
    _declare(app, ran, bulk_has_types=False)
    assert set(Worker(app).queues) == {"bulk", "reports"}
    assert set(Worker(app, WorkerConfig(queues=("bulk",))).queues) == {"bulk"}
    job = await app.enqueue("report", {"name": "once", "fail": 0}, queue="bulk")
    async with running_worker(app):
        assert await job.wait(timeout=20) == "done on bulk"


async def test_a_worker_whose_app_lacks_the_type_leaves_the_routed_job_pending(
    database_url: str,
) -> None:
    producer, other = App(database_url), App(database_url)
    ran: Ran = []
    _declare(producer, ran, bulk_has_types=False)
    other.queue("bulk", jobs=True)
    other.job("unrelated", queue="elsewhere")(lambda payload: None)
    try:
        job = await producer.enqueue("report", {"name": "waits", "fail": 0}, queue="bulk")
        side = await other.enqueue("unrelated", 1, queue="bulk")
        async with running_worker(other, WorkerConfig(queues=("bulk",))):
            await side.wait(timeout=20)  # the other app's worker is running on bulk
            untouched = await producer.get_job(job.id)
            assert untouched is not None
            assert (untouched.status, untouched.attempts) == (JobStatus.PENDING, 0)
        assert (await drain(other, ["bulk"])).batches == 0
        async with running_worker(producer, WorkerConfig(queues=("bulk",))):
            assert await job.wait(timeout=20) == "done on bulk"
        assert ran == [("waits", "bulk", 1)]
    finally:
        await producer.close()
        await other.close()


async def test_a_type_with_flow_limits_is_refused_on_another_queue_naming_queue(
    app: App,
) -> None:
    app.queue("bulk", jobs=True)
    app.job("paced", queue="api", rate_limit="10/s")(lambda payload: None)
    app.job("serial", queue="api", max_concurrency=1)(lambda payload: None)
    for type in ("paced", "serial"):
        with pytest.raises(JobRouteRefused) as single:
            await app.enqueue(type, {}, queue="bulk")
        assert "queue 'bulk'" in str(single.value) and single.value.fields == ("queue",)
        with pytest.raises(JobRouteRefused):
            await app.enqueue_many(type, [{}, {}], queue="bulk")
        own = await app.enqueue(type, {}, queue="api")  # its own queue, named: fine
        assert own.queue == "api"
    assert {j.queue for j in (await app.list_jobs()).jobs} == {"api"}
    # A worker of bulk does not claim them either, should one get there another way.
    assert app.registry.claim_types(app.registry.queue("bulk")) == ()


async def test_a_producer_without_the_code_routes_as_the_stored_settings_say(
    database_url: str,
) -> None:
    app = App(database_url)
    ran: Ran = []
    _declare(app, ran, bulk_has_types=False)
    app.job("paced", queue="api", rate_limit="10/s")(lambda payload: None)
    app.queue("mail").consumer(lambda batch: None)
    await app.declare_queues()
    producer = App(database_url)
    try:
        await producer.jobs.load_stored_flow()
        job = await producer.enqueue(
            "report", {"name": "admin", "fail": 0}, queue="bulk", strict=False
        )
        with pytest.raises(JobRouteRefused, match="queue 'bulk'"):
            await producer.enqueue("paced", {}, queue="bulk", strict=False)
        with pytest.raises(UnknownQueue, match="queue 'mail'"):
            await producer.enqueue("report", {}, queue="mail", strict=False)
        assert (await drain(app, ["bulk"])).acked == 1
        assert await job.wait(timeout=60) == "done on bulk"
    finally:
        await producer.close()
        await app.close()


async def test_queues_that_run_no_jobs_are_refused_as_targets_and_worker_queues(
    app: App,
) -> None:
    app.job("report")(lambda payload: None)
    app.queue("produced-to")  # declared, consumed elsewhere: not a job queue
    app.queue("mail").consumer(lambda batch: None)
    for queue in ("produced-to", "mail", "nowhere"):
        with pytest.raises(UnknownQueue, match=f"queue '{queue}'"):
            await app.enqueue("report", {}, queue=queue)
    with pytest.raises(InvalidWorkerConfig, match=r"produced-to.*jobs=True"):
        Worker(app, WorkerConfig(queues=("produced-to",)))
    with pytest.raises(UnknownQueue, match="nowhere"):
        Worker(app, WorkerConfig(queues=("nowhere",)))
    jobs_only = app.queue("jobs-only", jobs=True)
    with pytest.raises(DuplicateConsumer, match="jobs-only"):
        jobs_only.consumer(lambda batch: None)
    # A message sent to a job queue would never run: refused as for any job queue.
    with pytest.raises(JobQueueSend, match="enqueue a job instead"):
        await jobs_only.send({"n": 1})
    assert (await app.list_jobs()).jobs == []
