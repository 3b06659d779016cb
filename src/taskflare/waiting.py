"""Waiting for something without a bare sleep: poll with growing pauses up to a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll_until(
    check: Callable[[], Awaitable[T | None]],
    timeout: float | None,
    what: str,
    *,
    first_pause: float = 0.01,
    max_pause: float = 0.25,
) -> T:
    """Call `check` with growing pauses until it returns non-None; `TimeoutError` naming
    `what` after `timeout` seconds (None: wait for ever)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pause = first_pause
    while True:
        value = await check()
        if value is not None:
            return value
        if deadline is not None and loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        wait = pause if deadline is None else min(pause, max(deadline - loop.time(), 0))
        await asyncio.sleep(wait)
        pause = min(pause * 1.5, max_pause)
