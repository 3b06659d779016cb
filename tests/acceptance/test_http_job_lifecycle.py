"""The job service over HTTP with a real worker: cancelling a running job, retrying a
cancelled one, the long poll's bounds and what a finished job shows."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from helpers import running_worker, wait_until
from taskflare import App, JobContext

from .conftest import serve

STARTED = "started"


def build(database_url: str, events: dict[str, threading.Event]) -> App:
    app = App(database_url)

    @app.job("long-report", max_attempts=2)
    async def long_report(payload: Any, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(0.1, "started")
        events[STARTED].set()
        await asyncio.to_thread(events["release"].wait, 30)  # a cancel interrupts the await
        return {"rows": payload}

    @app.job("quick")
    async def quick(payload: Any) -> None:
        return None

    return app


async def call(client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    return await asyncio.to_thread(client.request, method, path, **kw)


async def test_cancel_a_running_job_then_retry_it_over_http(database_url: str) -> None:
    events = {STARTED: threading.Event(), "release": threading.Event()}
    worker_app = build(database_url, events)
    with serve(build(database_url, events)) as client:
        job_id = (
            await call(client, "POST", "/jobs", json={"type": "long-report", "payload": 3})
        ).json()["jobId"]
        async with running_worker(worker_app):
            assert await asyncio.to_thread(events[STARTED].wait, 10)
            shown = (await call(client, "GET", f"/jobs/{job_id}")).json()["job"]
            assert (shown["status"], shown["attempts"], shown["progress"]) == ("processing", 1, 0.1)

            answer = await call(client, "DELETE", f"/jobs/{job_id}")
            assert answer.status_code == 200, answer.text
            # Requested; the worker may already have stopped it when the answer reads it.
            assert answer.json()["message"] in ("Job cancellation requested", "Job cancelled")
            final = (await call(client, "GET", f"/jobs/{job_id}?wait=10")).json()["job"]
            assert final["status"] == "cancelled" and final["completedAt"] is not None
            assert (await call(client, "DELETE", f"/jobs/{job_id}")).status_code == 409

            events[STARTED].clear()
            events["release"].set()
            retried = await call(client, "POST", f"/jobs/{job_id}/retry")
            assert retried.status_code == 200, retried.text
            # pending, or already claimed by the running worker
            assert retried.json()["job"]["status"] in ("pending", "processing")
            done = (await call(client, "GET", f"/jobs/{job_id}?wait=10")).json()["job"]
        assert done["status"] == "completed" and done["result"] == {"rows": 3}
        assert done["attempts"] == 1 and done["error"] is None
        assert [h["outcome"] for h in done["history"]] == ["cancelled", "completed"]
        stats = (await call(client, "GET", "/stats")).json()["stats"]
        assert (stats["total"], stats["completed"], stats["cancelled"]) == (1, 1, 0)
    await worker_app.close()


def test_the_long_poll_is_bounded_and_answers_with_the_job_as_it_stands(
    database_url: str,
) -> None:
    events = {STARTED: threading.Event(), "release": threading.Event()}
    with serve(build(database_url, events)) as client:
        job_id = client.post("/jobs", json={"type": "quick", "delaySeconds": 3600}).json()["jobId"]
        for bad in ("61", "-1", "soon"):
            answer = client.get(f"/jobs/{job_id}?wait={bad}")
            assert answer.status_code == 422, answer.text
            assert "wait" in answer.json()["error"]
        answer = client.get(f"/jobs/{job_id}?wait=0.2")
        assert answer.status_code == 200
        assert answer.json()["job"]["status"] == "pending"


async def test_a_job_returning_nothing_completes_with_a_null_result(database_url: str) -> None:
    events = {STARTED: threading.Event(), "release": threading.Event()}
    worker_app = build(database_url, events)
    with serve(build(database_url, events)) as client:
        job_id = (await call(client, "POST", "/jobs", json={"type": "quick"})).json()["jobId"]
        async with running_worker(worker_app):

            async def finished() -> Any:
                job = (await call(client, "GET", f"/jobs/{job_id}")).json()["job"]
                return job if job["status"] == "completed" else None

            job = await wait_until(finished, what="the job to complete")
        assert job["result"] is None and job["progress"] == 1.0
        assert job["startedAt"] <= job["completedAt"]
    await worker_app.close()


async def test_the_status_endpoint_tracks_progress_flat(database_url: str) -> None:
    """`GET /jobs/{id}/status`, the progress-tracking endpoint of the async-processing
    guide: `{id, status, progress, result, error, createdAt, updatedAt}`, 404 unknown."""
    events = {STARTED: threading.Event(), "release": threading.Event()}
    worker_app = build(database_url, events)
    with serve(build(database_url, events)) as client:
        missing = await call(client, "GET", "/jobs/no-such-job/status")
        assert missing.status_code == 404 and "Job not found" in missing.json()["error"]
        job_id = (
            await call(client, "POST", "/jobs", json={"type": "long-report", "payload": 4})
        ).json()["jobId"]
        pending = (await call(client, "GET", f"/jobs/{job_id}/status")).json()
        assert pending["id"] == job_id and pending["status"] == "pending"
        assert pending["updatedAt"] == pending["createdAt"]
        async with running_worker(worker_app):
            assert await asyncio.to_thread(events[STARTED].wait, 10)
            running = (await call(client, "GET", f"/jobs/{job_id}/status")).json()
            assert (running["status"], running["progress"]) == ("processing", 0.1)
            assert running["updatedAt"] > running["createdAt"]
            events["release"].set()
            await call(client, "GET", f"/jobs/{job_id}?wait=10")
        done = (await call(client, "GET", f"/jobs/{job_id}/status")).json()
        assert done["status"] == "completed" and done["result"] == {"rows": 4}
        assert done["progress"] == 1.0 and done["error"] is None
        assert done["updatedAt"] >= running["updatedAt"]
    await worker_app.close()
