"""The private loop of the sync twins ends like `asyncio.run`: what still runs on it is
cancelled and waited for, not left pending on a closed loop."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from typing import Any

from taskflare.portal import Portal


def test_stopping_the_private_loop_ends_its_tasks() -> None:
    seen: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append(f"{info.exc_type.__name__}: {info.exc_value}")
    try:
        ended = threading.Event()
        keep: list[asyncio.Task[Any]] = []

        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                ended.set()

        async def start() -> None:
            keep.append(asyncio.create_task(forever()))

        portal = Portal()
        portal.run(start())
        portal.stop()
        assert ended.is_set()
        assert keep[0].cancelled()
        del keep[:]
        # and the portal starts a new loop when used again
        assert portal.run(asyncio.sleep(0, "again")) == "again"
        portal.stop()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert seen == []
