"""Round trips: the hot paths cost one statement on every backend."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from taskflare.backends import Backend
from taskflare.backends.base import EnqueueParams, EnqueueResult, JobEnqueueParams, State

from .conftest import job, record


@runtime_checkable
class CountsStatements(Protocol):
    """What both backends expose for tests that count round trips."""

    @property
    def statements_run(self) -> int: ...


async def test_enqueueing_a_job_without_an_idempotency_key_runs_one_statement(
    backend: Backend,
) -> None:
    await backend.job_enqueue(JobEnqueueParams(job(), 60))  # connects, checks the schema
    assert isinstance(backend, CountsStatements)
    new = job()
    before = backend.statements_run
    result = await backend.job_enqueue(JobEnqueueParams(new, 60))
    assert backend.statements_run - before == 1
    assert result == EnqueueResult(new.id, duplicate=False)
    assert (await record(backend, new.id)).state == State.READY


async def test_storing_a_batch_runs_one_statement_uniform_or_not(backend: Backend) -> None:
    """A batch whose messages share their options, and one whose don't, are each one
    statement (and the second store of the same ids is still one, a no-op)."""
    await backend.job_enqueue(JobEnqueueParams(job(), 60))  # connects, checks the schema
    assert isinstance(backend, CountsStatements)
    same = [job(batch_id="b1") for _ in range(5)]
    mixed = [job(), job(priority=3), job(delay=5.0), job(type="other")]
    for batch in (same, mixed):
        before = backend.statements_run
        await backend.message_enqueue_many(EnqueueParams(batch))
        assert backend.statements_run - before == 1
    for m in same + mixed:
        assert (await record(backend, m.id)).state == State.READY
