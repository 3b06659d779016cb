"""A waiter on a change signal that is cancelled ends cancelled, even when the change it
waits for comes in the same moment (the loop ending while a notification arrives)."""

from __future__ import annotations

import asyncio

from taskflare.backends.changes import ChangeSignal


async def test_a_waiter_cancelled_as_its_change_comes_ends_cancelled() -> None:
    # The change and the cancellation meet at every step of the wake-up in turn: on
    # Python 3.11, `asyncio.wait_for` returned normally at one of them, swallowing the
    # cancellation (a loop ending then waited for that task for ever).
    for passes in range(8):
        signal = ChangeSignal()
        since = signal.seq("t")
        waiter = asyncio.create_task(signal.wait("t", since, 30))
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
