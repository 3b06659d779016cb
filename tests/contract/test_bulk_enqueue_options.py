"""`enqueue_many` takes the options `enqueue` takes where they mean something for a bulk
call (`run_at`, `queue`, `connection`), with the same meaning and the same refusals.

The transaction itself (jobs visible only on commit, gone on rollback) is in
tests/postgres/test_postgres_jobs.py: only PostgreSQL can join a caller's transaction."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskflare import App, JobStatus
from taskflare.errors import InvalidDelay, InvalidMessage, TaskflareError, UnknownQueue
from taskflare.testing import drain

IN_AN_HOUR = datetime.now(UTC) + timedelta(hours=1)


async def test_run_at_schedules_every_job_of_the_batch_as_enqueue_does(app: App) -> None:
    ran: list[Any] = []
    app.job("later")(ran.append)
    when = datetime.now(UTC) + timedelta(hours=1)
    single = await app.enqueue("later", 0, run_at=when)
    batch_id = await app.enqueue_many("later", [1, 2, 3], run_at=when)
    epoch_id = await app.enqueue_many("later", [4, 5], run_at=when.timestamp())

    jobs = (await app.list_jobs(type="later")).jobs
    assert len(jobs) == 6
    assert {j.batch_id for j in jobs} == {None, batch_id, epoch_id}
    for job in jobs:
        assert job.status is JobStatus.PENDING
        assert job.run_at.timestamp() == pytest.approx(single.run_at.timestamp(), abs=5)
    await drain(app)
    assert ran == []  # not before its time


async def test_run_at_in_the_past_runs_at_once(app: App) -> None:
    app.job("now")(lambda payload: payload)
    batch_id = await app.enqueue_many("now", [1, 2], run_at=time.time() - 60)
    await drain(app)
    batch = await app.get_batch(batch_id)
    assert batch is not None and (batch.total, batch.completed) == (2, 2)


# Each bad run_at: enqueue_many raises what enqueue raises, naming the same fields.
BAD_RUN_AT: dict[str, dict[str, Any]] = {
    "naive": {"run_at": datetime.now() + timedelta(hours=1)},  # naive: the point
    "with delay_seconds": {"run_at": IN_AN_HOUR, "delay_seconds": 5},
    "not finite": {"run_at": math.nan},
    "a string": {"run_at": "tomorrow"},
    "a bool": {"run_at": True},
    "past a year": {"run_at": datetime.now(UTC) + timedelta(days=800)},
}


@pytest.mark.parametrize("options", BAD_RUN_AT.values(), ids=BAD_RUN_AT.keys())
async def test_a_bad_run_at_is_refused_as_enqueue_refuses_it(
    app: App, options: dict[str, Any]
) -> None:
    app.job("later")(lambda payload: None)
    with pytest.raises(InvalidDelay) as single:
        await app.enqueue("later", 1, **options)
    with pytest.raises(InvalidDelay) as bulk:
        await app.enqueue_many("later", [1, 2], **options)
    assert "run_at" in bulk.value.fields and bulk.value.fields == single.value.fields
    assert str(bulk.value) == str(single.value)
    assert (await app.list_jobs()).jobs == [] and await app.read.batches() == []


async def test_queue_puts_every_job_of_the_batch_on_that_queue_as_enqueue_does(
    app: App,
) -> None:
    app.job("report")(lambda payload: None)
    app.queue("roomy", max_message_bytes=1_000_000)
    app.job("roomy-job", queue="roomy")(lambda payload: None)
    single = await app.enqueue("report", 0, queue="roomy")
    batch_id = await app.enqueue_many("report", [{"blob": "x" * 300_000}] * 2, queue="roomy")

    on_roomy = (await app.list_jobs(queue="roomy", type="report")).jobs
    assert {j.batch_id for j in on_roomy} == {None, batch_id} and len(on_roomy) == 3
    assert single.queue == "roomy"
    assert (await app.list_jobs(queue="default")).jobs == []
    batch = await app.get_batch(batch_id)
    assert batch is not None and batch.total == 2
    # The size limit is the target queue's (1 MB), not the type's own queue's (128 KB).
    with pytest.raises(TaskflareError, match=r"payloads\[0\]: .*131 072 bytes"):
        await app.enqueue_many("report", [{"blob": "x" * 300_000}])


@pytest.mark.parametrize("queue", ["nowhere", "plain"])
async def test_a_queue_that_takes_no_jobs_is_refused_as_enqueue_refuses_it(
    app: App, queue: str
) -> None:
    app.job("report")(lambda payload: None)
    app.queue("plain").consumer(lambda batch: None)  # a message queue
    with pytest.raises(UnknownQueue) as single:
        await app.enqueue("report", 1, queue=queue)
    with pytest.raises(UnknownQueue) as bulk:
        await app.enqueue_many("report", [1, 2], queue=queue)
    assert str(bulk.value) == str(single.value) and repr(queue) in str(bulk.value)
    assert (await app.list_jobs()).jobs == [] and await app.read.batches() == []


async def test_a_connection_the_backend_cannot_join_is_refused_and_nothing_is_stored(
    app: App,
) -> None:
    """SQLite joins no caller's transaction; PostgreSQL takes only a psycopg 3
    connection. Either way `enqueue_many` refuses as `enqueue` does, before storing the
    batch record or any job."""
    app.job("invoice")(lambda payload: None)
    not_a_connection: Any = object()
    with pytest.raises(InvalidMessage) as single:
        await app.enqueue("invoice", 1, connection=not_a_connection)
    with pytest.raises(InvalidMessage) as bulk:
        await app.enqueue_many("invoice", [1, 2, 3], connection=not_a_connection)
    assert str(bulk.value) == str(single.value)
    assert (await app.list_jobs()).jobs == [] and await app.read.batches() == []


def test_the_sync_twin_takes_the_same_options(database_url: str) -> None:
    app = App(database_url)
    app.job("later")(lambda payload: None)
    try:
        batch_id = app.enqueue_many_sync("later", [1, 2], run_at=IN_AN_HOUR, queue="default")
        jobs = app.list_jobs_sync(type="later").jobs
        assert {j.batch_id for j in jobs} == {batch_id}
        assert all(j.run_at > datetime.now(UTC) + timedelta(minutes=30) for j in jobs)
    finally:
        app.close_sync()
