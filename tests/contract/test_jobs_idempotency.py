"""Jobs (issue 4, point 6): idempotency keys per job type, their TTL, and one job from 50
concurrent enqueues in several processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from job_helpers import wait_past
from taskflare import App, InvalidJobOption, JobStatus
from taskflare.testing import drain

ENQUEUER = textwrap.dedent(
    """
    import json, os, sys, time
    from taskflare import App

    url, go_file, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = App(url)
    app.job("charge")(lambda payload: None)
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.005)
    ids = []
    for i in range(count):
        job = app.enqueue_sync("charge", {"order": 42, "n": i}, idempotency_key="order-42")
        ids.append([job.id, job.duplicate])
    app.close_sync()
    print(json.dumps(ids))
    """
)


async def test_second_enqueue_with_the_same_key_returns_the_first_job(app: App) -> None:
    app.job("charge")(lambda payload: None)
    first = await app.enqueue("charge", {"amount": 10}, idempotency_key="order-42")
    second = await app.enqueue("charge", {"amount": 99}, idempotency_key="order-42")
    assert first.duplicate is False and second.duplicate is True
    assert second.id == first.id
    assert second.payload == {"amount": 10}
    assert second.to_dict()["duplicate"] is True
    jobs = (await app.list_jobs()).jobs
    assert [j.id for j in jobs] == [first.id]
    assert jobs[0].idempotency_key == "order-42"


async def test_duplicate_of_a_finished_job_still_returns_it(app: App) -> None:
    app.job("charge")(lambda payload: "charged")
    first = await app.enqueue("charge", 1, idempotency_key="k")
    await drain(app)
    again = await app.enqueue("charge", 1, idempotency_key="k")
    assert again.duplicate and again.id == first.id
    assert again.status is JobStatus.COMPLETED and again.result == "charged"
    assert (await drain(app)).acked == 0


async def test_a_cancelled_job_no_longer_holds_its_key(app: App) -> None:
    ran: list[int] = []
    app.job("charge")(lambda payload: ran.append(payload))
    first = await app.enqueue("charge", 1, idempotency_key="k")
    await app.cancel(first.id)
    again = await app.enqueue("charge", 2, idempotency_key="k")
    assert not again.duplicate and again.id != first.id
    await drain(app)
    assert ran == [2]
    # The new job holds the key now.
    third = await app.enqueue("charge", 3, idempotency_key="k")
    assert third.duplicate and third.id == again.id


async def test_a_failed_job_no_longer_holds_its_key(app: App) -> None:
    calls: list[int] = []

    @app.job("charge", max_attempts=1)
    def charge(payload: int) -> None:
        calls.append(payload)
        if payload == 1:
            raise RuntimeError("declined")

    first = await app.enqueue("charge", 1, idempotency_key="k")
    await drain(app)
    assert (await app.get_job(first.id)).status is JobStatus.FAILED  # type: ignore[union-attr]
    again = await app.enqueue("charge", 2, idempotency_key="k")
    assert not again.duplicate and again.id != first.id
    await drain(app)
    assert calls == [1, 2]


async def test_same_key_for_different_types_makes_two_jobs(app: App) -> None:
    app.job("charge")(lambda payload: None)
    app.job("refund")(lambda payload: None)
    a = await app.enqueue("charge", 1, idempotency_key="order-42")
    b = await app.enqueue("refund", 1, idempotency_key="order-42")
    assert not a.duplicate and not b.duplicate and a.id != b.id
    assert len((await app.list_jobs()).jobs) == 2


async def test_key_past_its_ttl_makes_a_new_job(app: App) -> None:
    """Two keys that differ only in their TTL: one of an hour (which no loaded machine
    runs past between two statements) still holds; one of 0.2 s, waited out, no more."""
    app.job("charge")(lambda payload: None)
    first = await app.enqueue("charge", 1, idempotency_key="k", idempotency_ttl=0.2)
    held = await app.enqueue("charge", 1, idempotency_key="hour", idempotency_ttl=3600)
    assert (await app.enqueue("charge", 1, idempotency_key="hour")).id == held.id
    await wait_past(0.3)
    fresh = await app.enqueue("charge", 2, idempotency_key="k")
    assert fresh.duplicate is False and fresh.id != first.id
    assert len((await app.list_jobs()).jobs) == 3
    again = await app.enqueue("charge", 3, idempotency_key="k")
    assert again.duplicate and again.id == fresh.id
    assert (await app.enqueue("charge", 4, idempotency_key="hour")).id == held.id


@pytest.mark.parametrize("ttl", [0, 0.0])  # a negative one: InvalidDelay
async def test_a_key_ttl_that_is_not_positive_is_refused_naming_it(app: App, ttl: float) -> None:
    """A key that expires as it is taken guards nothing: a repeat made a second job."""
    app.job("charge")(lambda payload: None)
    with pytest.raises(InvalidJobOption, match="idempotency_ttl") as info:
        await app.enqueue("charge", 1, idempotency_key="k", idempotency_ttl=ttl)
    assert info.value.fields == ("idempotency_ttl",)
    assert not (await app.enqueue("charge", 1, idempotency_key="k")).duplicate  # none stored


async def test_jobs_without_a_key_are_never_duplicates(app: App) -> None:
    app.job("charge")(lambda payload: None)
    a = await app.enqueue("charge", 1)
    b = await app.enqueue("charge", 1)
    assert a.id != b.id and not a.duplicate and not b.duplicate


def test_fifty_concurrent_enqueues_from_five_processes_make_one_job(
    database_url: str, tmp_path: Path
) -> None:
    app = App(database_url)
    try:
        app.job("charge")(lambda payload: None)
        app.list_jobs_sync()  # create the schema before the processes race
        script = tmp_path / "enqueuer.py"
        script.write_text(ENQUEUER)
        go = tmp_path / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), database_url, str(go), "10"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(5)
        ]
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
            results.extend(json.loads(out))
        jobs = app.list_jobs_sync(limit=100).jobs
        assert len(jobs) == 1
        assert {job_id for job_id, _ in results} == {jobs[0].id}
        assert sum(1 for _, duplicate in results if not duplicate) == 1
        assert len(results) == 50
    finally:
        app.close_sync()
