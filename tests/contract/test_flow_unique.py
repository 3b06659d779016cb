"""Unique jobs: a second enqueue while a matching job is in the declared states returns the
existing job; by type and payload (or some payload keys, or queue), for a period, and
concurrent-safe across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from job_helpers import job_of, wait_past
from taskflare import App, InvalidJobConfig, InvalidMessage, JobStatus, Unique
from taskflare.testing import drain

ENQUEUER = textwrap.dedent(
    """
    import json, os, sys, time
    from taskflare import App, Unique

    url, go_file, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = App(url)
    app.job("sync-account", unique=Unique(by=("type", "payload")))(lambda payload: None)
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.005)
    ids = []
    if sys.argv[4:] == ["bulk"]:  # one enqueue_many of `count` equal payloads
        app.enqueue_many_sync("sync-account", [{"account": 7}] * count)
    else:
        for i in range(count):
            job = app.enqueue_sync("sync-account", {"account": 7})
            ids.append([job.id, job.duplicate])
    app.close_sync()
    print(json.dumps(ids))
    """
)


async def test_second_enqueue_of_a_pending_match_returns_the_existing_job(app: App) -> None:
    @app.job("sync-account", unique=Unique(by=("type", "payload")))
    async def sync(payload: Any) -> None:
        return None

    first = await app.enqueue("sync-account", {"account": 1})
    again = await app.enqueue("sync-account", {"account": 1})
    other = await app.enqueue("sync-account", {"account": 2})
    assert again.duplicate and again.id == first.id
    assert not other.duplicate and other.id != first.id
    await drain(app)
    # Completed is not one of the default states (pending, processing): a new job now.
    fresh = await app.enqueue("sync-account", {"account": 1})
    assert not fresh.duplicate and fresh.id != first.id


async def test_unique_states_include_completed_and_a_period(app: App) -> None:
    """Two job types that differ only in their period: within it (an hour, which no
    loaded machine runs past between two statements) a completed job still holds the
    uniqueness; past it (0.4 s, waited out) it holds it no more."""
    completed = ("pending", "processing", "completed")
    for name, period in (("report", 3600.0), ("brief", 0.4)):
        unique = Unique(by=("type",), states=completed, period=period)
        app.job(name, unique=unique)(lambda payload: None)

    first = await app.enqueue("report", {"day": 1})
    short = await app.enqueue("brief", {"day": 1})
    await drain(app)
    assert (await job_of(app, first.id)).status is JobStatus.COMPLETED
    assert (await job_of(app, short.id)).status is JobStatus.COMPLETED
    same = await app.enqueue("report", {"day": 2})  # by type only: any payload matches
    assert same.duplicate and same.id == first.id
    await wait_past(0.5)  # past the short period: unique no more
    later = await app.enqueue("brief", {"day": 3})
    assert not later.duplicate and later.id != short.id
    still = await app.enqueue("report", {"day": 3})  # the hour has not passed
    assert still.duplicate and still.id == first.id


async def test_unique_at_enqueue_by_payload_keys(app: App) -> None:
    app.job("notify")(lambda payload: None)
    only_user = Unique(by=("type", "payload"), keys=("user",))
    a = await app.enqueue("notify", {"user": 5, "text": "a"}, unique=only_user)
    b = await app.enqueue("notify", {"user": 5, "text": "b"}, unique=only_user)
    c = await app.enqueue("notify", {"user": 6, "text": "a"}, unique=only_user)
    plain = await app.enqueue("notify", {"user": 5, "text": "a"})
    assert b.duplicate and b.id == a.id
    assert not c.duplicate and not plain.duplicate


async def test_unique_refuses_bad_declarations_and_an_idempotency_key_too(app: App) -> None:
    with pytest.raises(InvalidJobConfig, match="Unique state 'running'"):
        Unique(states=("running",))
    with pytest.raises(InvalidJobConfig, match="Unique by 'args'"):
        Unique(by=("args",))
    app.job("x")(lambda payload: None)
    with pytest.raises(InvalidMessage, match="cannot be combined") as caught:
        await app.enqueue("x", 1, unique=Unique(), idempotency_key="k")
    assert caught.value.fields == ("idempotency_key",)  # respelled over HTTP and CLI
    with pytest.raises(InvalidJobConfig, match="unique must be") as wrong:
        await app.enqueue("x", 1, unique="yes")  # type: ignore[arg-type]
    assert wrong.value.fields == ("unique",)
    assert (await app.list_jobs()).jobs == []


async def test_enqueue_many_honours_unique_against_stored_jobs_and_within_the_call(
    app: App,
) -> None:
    app.job("sync-account", unique=Unique(by=("type", "payload")))(lambda payload: None)
    first = await app.enqueue("sync-account", {"account": 1})
    payloads = [{"account": 1}, {"account": 2}, {"account": 3}, {"account": 2}, {"account": 1}]
    batch_id = await app.enqueue_many("sync-account", payloads)
    jobs = (await app.list_jobs(limit=100)).jobs
    assert sorted(j.payload["account"] for j in jobs) == [1, 2, 3]  # one job per account
    assert [j.id for j in jobs if j.payload["account"] == 1] == [first.id]
    batch = await app.get_batch(batch_id)
    assert batch is not None and batch.total == 2  # accounts 2 and 3: stored by this call
    # Unique given to enqueue_many itself, for a type without one; by payload keys.
    app.job("notify")(lambda payload: None)
    by_user = Unique(by=("type", "payload"), keys=("user",))
    await app.enqueue_many("notify", [{"user": 5, "n": 1}, {"user": 5, "n": 2}], unique=by_user)
    assert len((await app.list_jobs(type="notify")).jobs) == 1
    with pytest.raises(InvalidJobConfig, match="unique must be"):
        await app.enqueue_many("notify", [1], unique="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["one-by-one", "bulk"])
def test_fifty_concurrent_unique_enqueues_from_five_processes_make_one_job(
    database_url: str, tmp_path: Path, mode: str
) -> None:
    app = App(database_url)
    try:
        app.job("sync-account", unique=Unique())(lambda payload: None)
        app.list_jobs_sync()  # create the schema before the processes race
        script = tmp_path / "enqueuer.py"
        script.write_text(ENQUEUER)
        go = tmp_path / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), database_url, str(go), "10", mode],
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
        if mode == "bulk":
            return
        assert {job_id for job_id, _ in results} == {jobs[0].id}
        assert sum(1 for _, duplicate in results if not duplicate) == 1
        assert len(results) == 50
    finally:
        app.close_sync()
