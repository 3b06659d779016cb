"""`wait_until` (issue 5, points 7 and 9): best-effort work that runs concurrently, whose
errors are logged and never raised, that a stopping worker waits for up to a limit, and
that becomes a job with one argument (`durable=True`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from typing import Any

import pytest

from helpers import running_worker, wait_until
from job_helpers import job_of
from taskflare import App, Job, JobContext, JobStatus, UnknownJobType, Worker
from taskflare.testing import drain


async def test_wait_until_returns_at_once_and_the_work_runs_concurrently(sqlite_url: str) -> None:
    app = App(sqlite_url)
    gate = asyncio.Event()
    done: list[str] = []

    async def slow(tag: str) -> None:
        await gate.wait()
        done.append(tag)

    assert app.wait_until(slow("coroutine")) is None
    assert app.wait_until(slow, "function and args") is None
    assert app.background.pending == 2 and done == []  # the caller moved on
    gate.set()
    await wait_until(lambda: len(done) == 2, what="both tasks")
    assert sorted(done) == ["coroutine", "function and args"]
    await wait_until(lambda: app.background.pending == 0, what="tasks forgotten")
    await app.close()


async def test_a_plain_function_runs_in_a_thread_not_on_the_loop(sqlite_url: str) -> None:
    app = App(sqlite_url)
    threads: list[str] = []

    def blocking(x: int, *, y: int) -> None:
        time.sleep(0.05)  # simulated blocking work
        threads.append(f"{threading.current_thread().name}:{x + y}")

    app.wait_until(blocking, 1, y=2)
    await wait_until(lambda: threads, what="the function to run")
    assert threads[0].endswith(":3")
    assert threads[0].split(":")[0] != threading.current_thread().name
    await app.close()


async def test_errors_are_logged_with_a_traceback_and_never_raised(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(sqlite_url)
    after: list[str] = []

    async def broken() -> None:
        raise RuntimeError("title service down")

    def broken_sync() -> None:
        raise ValueError("bad thread work")

    async def fine() -> None:
        after.append("ok")

    with caplog.at_level(logging.ERROR, logger="taskflare.background"):
        app.wait_until(broken())
        app.wait_until(broken_sync)
        app.wait_until(fine())  # one failure does not stop the others
        await wait_until(lambda: app.background.pending == 0, what="tasks to settle")
    assert after == ["ok"]
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info is not None for r in failures)
    assert "RuntimeError: title service down" in caplog.text
    assert "ValueError: bad thread work" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text
    assert any("broken" in r.getMessage() for r in failures)
    await app.close()


async def test_every_shape_of_async_work_runs_none_is_dropped_unawaited(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A lambda or wrapper that returns a coroutine, an object with `async def __call__`
    and a partial of an async function all run; their failures are logged by name."""
    app = App(sqlite_url)
    done: list[str] = []

    async def record(tag: str) -> None:
        done.append(tag)

    class Notifier:
        async def __call__(self, tag: str) -> None:
            done.append(tag)

    class SubNotifier(Notifier):
        pass

    async def broken() -> None:
        raise RuntimeError("failing behind a lambda")

    def start_broken() -> Any:
        return broken()

    with caplog.at_level(logging.ERROR, logger="taskflare.background"):
        app.wait_until(lambda: record("lambda"))
        app.wait_until(Notifier(), "callable object")
        app.wait_until(SubNotifier(), "inherited __call__")
        app.wait_until(functools.partial(record, "partial"))
        app.wait_until(start_broken)
        await wait_until(lambda: app.background.pending == 0, what="tasks to settle")
    assert sorted(done) == ["callable object", "inherited __call__", "lambda", "partial"]
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "start_broken" in failures[0].getMessage()
    assert "RuntimeError: failing behind a lambda" in caplog.text
    await app.close()


def test_bad_arguments_are_refused_at_the_call(sqlite_url: str) -> None:
    app = App(sqlite_url)

    async def work() -> None:
        pass

    coro = work()
    with pytest.raises(TypeError, match="takes no extra arguments"):
        app.wait_until(coro, 1)
    coro.close()
    with pytest.raises(TypeError, match="needs an awaitable or a function"):
        app.wait_until(42)
    app.close_sync()


def test_from_plain_code_the_work_runs_and_close_sync_waits_for_it(sqlite_url: str) -> None:
    app = App(sqlite_url)
    done = threading.Event()

    async def work() -> None:
        await asyncio.sleep(0.2)
        done.set()

    app.wait_until(work())  # no running loop here: the app's own loop runs it
    app.close_sync()
    assert done.is_set()


async def test_a_stopping_worker_waits_for_pending_wait_until_work(app: App) -> None:
    finished = asyncio.Event()

    async def follow_up() -> None:
        await asyncio.sleep(0.3)
        finished.set()

    @app.job("signup")
    async def signup(payload: None, ctx: JobContext) -> None:
        app.wait_until(follow_up())

    job = await app.enqueue("signup", None)
    async with running_worker(app):
        await app.wait_for_job(job.id, timeout=20)
        assert not finished.is_set()
    assert finished.is_set()  # the worker did not stop before the work was done


async def test_a_stopping_worker_abandons_work_past_the_limit_and_says_so(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(database_url, wait_until_limit=0.5)
    started = asyncio.Event()
    outcome: list[str] = []

    async def too_slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never ends by itself: only abandoning ends it
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    @app.job("kick")
    async def kick(payload: None, ctx: JobContext) -> None:
        app.wait_until(too_slow())

    try:
        await app.enqueue("kick", None)
        worker = Worker(app)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 20)
        with caplog.at_level(logging.INFO, logger="taskflare.background"):
            worker.stop()
            # The task never ends by itself: a worker that waited for it would not stop.
            await asyncio.wait_for(task, 60)
        assert outcome == ["cancelled"]
        assert "waiting up to 0.5s for 1 wait_until tasks" in caplog.text
        assert "abandoning wait_until task" in caplog.text
        assert "too_slow" in caplog.text
    finally:
        await app.close()


async def test_work_that_swallows_its_cancellation_past_the_limit_is_still_abandoned(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(database_url, wait_until_limit=0.2)
    started = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "done"  # ill-behaved: it still ran past the limit
        return "slept"

    try:
        app.wait_until(stubborn())
        await asyncio.wait_for(started.wait(), 10)
        with caplog.at_level(logging.INFO, logger="taskflare.background"):
            assert await app.background.drain() == 1
        assert "abandoning wait_until task" in caplog.text and "stubborn after 0.2s" in caplog.text
        assert "abandoned 1 of 1 wait_until tasks" in caplog.text
    finally:
        await app.close()


async def test_durable_turns_the_same_call_into_a_job(app: App) -> None:
    titles: list[str] = []

    @app.job("generate-title")
    async def generate_title(payload: dict[str, str], ctx: JobContext) -> str:
        titles.append(payload["thread"])
        return "A title"

    pending = app.wait_until(generate_title, {"thread": "t1"}, durable=True)
    job = await pending
    assert isinstance(job, Job)
    assert (job.type, job.status, job.payload) == (
        "generate-title",
        JobStatus.PENDING,
        {"thread": "t1"},
    )
    keyword_job = await app.wait_until(generate_title, thread="t2", durable=True)
    assert keyword_job.payload == {"thread": "t2"}
    assert app.background.pending == 0  # nothing in memory: it is stored
    await drain(app)
    assert sorted(titles) == ["t1", "t2"]
    assert (await job_of(app, job.id)).result == "A title"


def test_durable_from_plain_code_returns_the_stored_job(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.job("notify")
    def notify(payload: str, ctx: JobContext) -> None:
        pass

    job = app.wait_until(notify, "hello", durable=True)
    assert isinstance(job, Job) and job.status is JobStatus.PENDING and job.payload == "hello"
    app.close_sync()


async def test_durable_needs_a_registered_job_handler(app: App) -> None:
    async def not_a_job(payload: Any) -> None:
        pass

    @app.job("real")
    async def real(payload: Any, ctx: JobContext) -> None:
        pass

    with pytest.raises(UnknownJobType, match=r"needs a function registered with @app\.job"):
        app.wait_until(not_a_job, 1, durable=True)
    with pytest.raises(TypeError, match="one payload argument"):
        app.wait_until(real, 1, 2, durable=True)


async def test_await_close_waits_for_pending_work_as_close_sync_does(sqlite_url: str) -> None:
    app = App(sqlite_url)
    done: list[str] = []

    async def work(tag: str) -> None:
        await asyncio.sleep(0.2)
        done.append(tag)

    app.wait_until(work("a"))
    app.wait_until(work("b"))
    await app.close()
    assert sorted(done) == ["a", "b"], "close() dropped pending wait_until work"


async def test_await_close_past_the_limit_cancels_and_says_how_many(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(sqlite_url, wait_until_limit=0.2)
    outcome: list[str] = []

    async def quick() -> None:
        outcome.append("quick")

    async def stuck() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    app.wait_until(quick())
    app.wait_until(stuck())
    app.wait_until(stuck())
    with caplog.at_level(logging.WARNING, logger="taskflare.background"):
        await app.close()
    assert sorted(outcome) == ["cancelled", "cancelled", "quick"]
    assert "abandoned 2 of 3 wait_until tasks" in caplog.text


async def test_shutdown_waits_for_work_that_pending_work_starts_and_names_what_it_abandons(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A title generator that then invalidates a cache with `wait_until`: the follow-up
    started during shutdown is waited for as well (it used to be dropped without a
    word), and one still running at the limit is abandoned with a warning."""
    app = App(sqlite_url, wait_until_limit=30)
    outcome: list[str] = []

    async def invalidate_cache() -> None:
        await asyncio.sleep(0.05)  # simulated work, outliving the task that started it
        outcome.append("cache invalidated")

    async def generate_title() -> None:
        app.wait_until(invalidate_cache())
        outcome.append("title")

    app.wait_until(generate_title())
    assert await app.background.drain() == 0  # what `close()` and a stopping worker run
    assert outcome == ["title", "cache invalidated"]
    await app.close()

    short = App(sqlite_url, wait_until_limit=0.2)

    async def stuck_follow_up() -> None:
        await asyncio.Event().wait()

    async def starts_stuck_work() -> None:
        short.wait_until(stuck_follow_up())

    short.wait_until(starts_stuck_work())
    with caplog.at_level(logging.WARNING, logger="taskflare.background"):
        assert await short.background.drain() == 1
    assert "abandoning wait_until task" in caplog.text and "stuck_follow_up" in caplog.text
    await short.close()


async def test_work_that_ignores_its_cancellation_is_left_behind_after_the_cancel_grace(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio cannot kill a task: one that swallows every cancel is named and left
    running, and neither this drain nor a later one (`close()`'s) waits for it."""
    app = App(sqlite_url, wait_until_limit=0.1)
    started = asyncio.Event()
    release = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)

    try:
        app.wait_until(stubborn())
        await asyncio.wait_for(started.wait(), 10)
        with caplog.at_level(logging.INFO, logger="taskflare.background"):
            drained = asyncio.ensure_future(app.background.drain(cancel_grace=0.1))
            done, _ = await asyncio.wait({drained}, timeout=30)
            assert drained in done, "drain waited for a task that ignores its cancellation"
            assert drained.result() == 1
            assert "stubborn ignored its cancellation for 0.1s; leaving it behind" in caplog.text
            assert app.background.pending == 0
            again = asyncio.ensure_future(app.background.drain())
            done, _ = await asyncio.wait({again}, timeout=30)
            assert again in done and again.result() == 0
    finally:
        release.set()
        await app.close()
