"""Round trips: the hot paths cost one statement on every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import pytest

from taskflare.backends import Backend
from taskflare.backends.base import EnqueueParams, EnqueueResult, JobEnqueueParams, State

from .conftest import claim, enqueue, job, record


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


async def test_a_claim_from_an_idle_sqlite_queue_is_one_hop_to_the_connections_thread(
    backend: Backend, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker woken by a commit elsewhere looks at the queue, claims and (taking
    nothing) describes the queue: on SQLite all of it runs in one call on the thread
    that owns the connection, not one call per step (each call is a thread hop that a
    pickup waits for)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's connection thread")
    assert (await claim(backend, "q")).messages == []  # the queue is idle now
    executor = backend._db  # type: ignore[attr-defined]
    calls = [0]
    call = executor.call

    async def counted(fn: Callable[[], object]) -> object:
        calls[0] += 1
        return await call(fn)

    monkeypatch.setattr(executor, "call", counted)
    await enqueue(backend, job(queue="q"))
    calls[0] = 0
    assert len((await claim(backend, "q")).messages) == 1
    assert calls[0] == 1
    calls[0] = 0
    assert (await claim(backend, "q")).messages == []
    assert calls[0] == 1


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
