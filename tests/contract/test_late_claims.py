"""A claim whose answer is seen late: behind a handler that blocks the event loop (or a
slow database), the answer to a claim can wait past its lease, which nothing guards
before the claim is seen; another worker's lease rescuer then puts the deliveries back
and someone else runs them. The late claim must not run them too (a flaky
`test_an_async_handler_blocking_the_loop_past_its_lease_is_not_run_twice[postgres]`:
the job ran twice)."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import running_worker, wait_until
from taskflare import App, JobStatus, WorkerConfig
from taskflare.backends.base import ClaimParams, ClaimResult, MessageGetParams
from taskflare.worker.rescue import rescue_expired


def _late_first_claim(app: App, backend: Any, monkeypatch: pytest.MonkeyPatch, queue: str) -> None:
    """The first claim that takes something answers only once its lease has run out and a
    rescuer (another worker's, here called directly) has put its deliveries back."""
    real = backend.message_claim_many
    late: list[str] = []

    async def claim(params: ClaimParams) -> ClaimResult:
        result: ClaimResult = await real(params)
        if result.messages and not late:
            late.append(result.messages[0].lease_id)
            spec = app.registry.queues[queue]
            ids = [m.id for m in result.messages]

            async def put_back() -> bool:
                await rescue_expired(backend, spec)
                records = [await backend.message_get(MessageGetParams(i)) for i in ids]
                return all(r is not None and r.state == "ready" for r in records)

            await wait_until(put_back, what="the late claim's lease to run out and be rescued")
        return result

    monkeypatch.setattr(backend, "message_claim_many", claim)


async def test_a_job_claimed_late_after_its_lease_was_rescued_runs_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.queue("jobs", visibility_timeout=0.5)
    runs: list[int] = []

    @app.job("work", queue="jobs")
    async def work(payload: dict[str, int]) -> None:
        runs.append(payload["n"])

    job = await app.enqueue("work", {"n": 1})
    _late_first_claim(app, await app.backend(), monkeypatch, "jobs")
    async with running_worker(app, WorkerConfig(queues=["jobs"])):
        await job.wait(timeout=60)
    assert runs == [1]
    stored = await app.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED
    assert stored.attempts == 2  # the rescued delivery counted, as a lost one


async def test_a_batch_claimed_late_after_its_lease_was_rescued_is_delivered_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = app.queue("work", visibility_timeout=0.5, max_batch_timeout=0)
    delivered: list[Any] = []

    @queue.consumer
    async def consume(batch: Any) -> None:
        delivered.extend(m.body for m in batch.messages)

    ids = await queue.send_batch([{"body": {"n": 1}}, {"body": {"n": 2}}])
    backend = await app.backend()
    _late_first_claim(app, backend, monkeypatch, "work")

    async def acked() -> bool:
        return [await backend.message_get(MessageGetParams(i)) for i in ids] == [None, None]

    async with running_worker(app, WorkerConfig(queues=["work"])):
        await wait_until(acked, what="both messages acked")
    assert sorted(m["n"] for m in delivered) == [1, 2]
