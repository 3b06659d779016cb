"""The change signal wakes a waiter in one turn of its event loop when the change is
raised on that loop (a PostgreSQL NOTIFY read by the loop's listener), and from any
other thread too (SQLite's connection thread); a waiter times out, and a cancelled one
leaves nothing behind."""

from __future__ import annotations

import asyncio
import threading

from taskflare.backends.changes import ChangeSignal


async def test_a_change_raised_on_the_waiters_loop_wakes_it_in_one_turn() -> None:
    signal = ChangeSignal()
    waiting = asyncio.ensure_future(signal.wait("ready:q", signal.seq("ready:q"), 30))
    await asyncio.sleep(0)  # the waiter is asleep now
    assert not waiting.done()
    signal.raise_topics(["ready:q"])
    await asyncio.sleep(0)  # one turn of the loop
    assert waiting.done() and waiting.result() is True


async def test_a_change_raised_on_another_thread_wakes_the_waiter() -> None:
    signal = ChangeSignal()
    waiting = asyncio.ensure_future(signal.wait("ready:q", signal.seq("ready:q"), 30))
    await asyncio.sleep(0)
    thread = threading.Thread(target=signal.raise_all)
    thread.start()
    assert await waiting is True
    thread.join()


async def test_a_wait_without_a_change_times_out_false() -> None:
    signal = ChangeSignal()
    assert await signal.wait("ready:q", signal.seq("ready:q"), 0.01) is False
    signal.raise_topics(["ready:other"])
    assert await signal.wait("ready:q", signal.seq("ready:q"), 0.01) is False


async def test_a_cancelled_waiter_is_forgotten() -> None:
    signal = ChangeSignal()
    waiting = asyncio.ensure_future(signal.wait("ready:q", signal.seq("ready:q"), 30))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
    assert signal._waiters == {}
    signal.raise_topics(["ready:q"])  # nothing left to wake


async def test_a_waiter_cancelled_as_its_change_comes_ends_cancelled() -> None:
    # The change and the cancellation meet at every step of the wake-up in turn (the
    # loop ending while a notification arrives): the waiter must end, not return and
    # wait again. On Python 3.11 `asyncio.wait_for` returned normally at one of them.
    for passes in range(8):
        signal = ChangeSignal()
        waiter = asyncio.ensure_future(signal.wait("t", signal.seq("t"), 30))
        for _ in range(3):
            await asyncio.sleep(0)  # waiting now
        signal.raise_topics(["t"])
        for _ in range(passes):
            await asyncio.sleep(0)
        requested = waiter.cancel()
        await asyncio.wait([waiter])
        if requested:
            assert waiter.cancelled(), f"the cancellation was lost after {passes} passes"
        else:
            assert waiter.result() is True
