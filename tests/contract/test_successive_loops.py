"""One App across many event loops that end: each loop's connections end with it.

A script (or a test) may call `asyncio.run` again and again on one App, mix in the sync
twins (which run on a private loop) and close the App in between. When a loop ends, every
task the backend started on it (pool workers, the LISTEN connection, SQLite's commit
watch) must end when cancelled, as `asyncio.run` cancels them: one that swallows its
cancellation makes `asyncio.run` wait forever, and one left pending on a closed loop is
later destroyed with "Event loop is closed". The next loop gets fresh resources.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from taskflare import App, MessageBatch, Worker
from taskflare.testing import drain

LOOPS = 12
# How long the tasks left when a loop's coroutine returns may take to end once
# cancelled (a generous bound: they end at once; one that ignores its cancellation
# never does).
SHUTDOWN_DEADLINE = 20.0


@pytest.fixture
def many_connections_url(database_url: str) -> str:
    """The database URL; on PostgreSQL with a pool that opens several connections at once,
    so a loop typically ends while some are still being opened."""
    if database_url.startswith("postgresql"):
        return f"{database_url}&pool_min_size=4"
    return database_url


@pytest.fixture
def unraisable() -> Iterator[list[str]]:
    """What the interpreter could not raise anywhere (a coroutine closed by the garbage
    collector on a closed loop, say) while the test ran."""
    seen: list[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        seen.append(f"{info.exc_type.__name__}: {info.exc_value} in {info.object!r}")

    sys.unraisablehook = hook
    try:
        yield seen
    finally:
        gc.collect()
        sys.unraisablehook = previous


def run_like_asyncio_run(main: Coroutine[Any, Any, None]) -> None:
    """What `asyncio.run` does, with the wait for the leftover tasks bounded: run `main`,
    cancel every task still pending, wait for them, close the loop. Fails naming the tasks
    that did not end (asyncio.run would hang on them)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            _, pending = loop.run_until_complete(asyncio.wait(left, timeout=SHUTDOWN_DEADLINE))
            names = sorted(task.get_name() for task in pending)
            assert not pending, f"tasks ignored their cancellation: {names}"
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def test_an_app_survives_many_event_loops_ending(
    many_connections_url: str, unraisable: list[str]
) -> None:
    app = App(many_connections_url)
    q = app.queue("q", max_batch_timeout=0)
    bodies: list[int] = []
    awaited: list[tuple[int, asyncio.Event]] = []  # a body, and its loop's event

    @q.consumer
    async def consume(batch: MessageBatch[int]) -> None:
        bodies.extend(m.body for m in batch.messages)
        if awaited and any(m.body == awaited[-1][0] for m in batch.messages):
            awaited[-1][1].set()

    async def leave_a_worker_running(n: int) -> None:
        # The loop ends with a worker still running (waiting for new work): its LISTEN
        # connection or commit watch is cancelled with it.
        awaited.append((n, asyncio.Event()))
        worker = asyncio.create_task(Worker(app).run())
        await q.send(n)
        async with asyncio.timeout(SHUTDOWN_DEADLINE):
            await awaited[-1][1].wait()  # n (and whatever was sent before) was consumed
        assert not worker.done()

    expected: list[int] = []
    for n in range(LOOPS):
        expected.append(n)
        if n % 3 == 0:
            run_like_asyncio_run(leave_a_worker_running(n))
        elif n % 3 == 1:
            run_like_asyncio_run(q.send(n))
        else:
            q.send_sync(n)  # the private loop, which lives on
            if n % 2 == 0:
                app.close_sync()  # ends the private loop; the app is used again after
    run_like_asyncio_run(_drained(app))
    app.close_sync()
    assert sorted(bodies) == expected
    gc.collect()
    assert unraisable == []


async def _drained(app: App) -> None:
    await drain(app)
