"""The thread that runs a SQLite connection's statements: order, errors, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taskflare.backends.sqlite.statementthread import StatementThread


async def test_calls_run_in_order_on_one_other_thread() -> None:
    thread = StatementThread("test-statements")
    seen: list[tuple[int, str]] = []
    try:
        results = await asyncio.gather(
            *[
                thread.submit(lambda i=i: seen.append((i, threading.current_thread().name)) or i)
                for i in range(20)
            ]
        )
    finally:
        thread.stop(wait=True)
    assert results == list(range(20))
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"test-statements"}
    assert threading.current_thread().name != "test-statements"


async def test_an_exception_reaches_the_caller() -> None:
    thread = StatementThread("test-statements")

    def fail() -> None:
        raise ValueError("refused")

    try:
        with pytest.raises(ValueError, match="refused"):
            await thread.submit(fail)
        assert await thread.submit(lambda: 7) == 7  # the thread goes on
    finally:
        thread.stop(wait=True)


async def test_a_call_cancelled_before_it_started_does_not_run() -> None:
    thread = StatementThread("test-statements")
    release = threading.Event()
    ran: list[str] = []
    try:
        blocker = thread.submit(release.wait)
        queued = thread.submit(lambda: ran.append("queued"))
        queued.cancel()
        release.set()
        await blocker
        await thread.submit(lambda: None)  # everything before it has been looked at
    finally:
        thread.stop(wait=True)
    assert ran == []


async def test_calls_submitted_before_stop_still_run_and_later_ones_are_refused() -> None:
    thread = StatementThread("test-statements")
    release = threading.Event()
    blocker = thread.submit(release.wait)
    last = thread.submit(lambda: "done")
    thread.stop()
    release.set()
    assert await blocker is True
    assert await last == "done"
    with pytest.raises(RuntimeError):
        thread.submit(lambda: None)
