"""Round trips: the hot paths cost one statement on every backend."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from taskflare.backends import Backend
from taskflare.backends.base import EnqueueResult, JobEnqueueParams, State

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
