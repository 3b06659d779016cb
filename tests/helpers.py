"""Small helpers shared by the test suites: waiting without bare sleeps, running a worker."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from taskflare import App, Worker, WorkerConfig
from taskflare.backends.base import MessageGetParams, MessageRecord, QueueCountsParams

# How long the waiting helpers wait by default before failing [s]. A deadline, not a
# measure: a passing test never reaches it, and a loaded machine (2 CPUs at load 10-30)
# makes what takes a second take ten, so it is far from what any wait needs.
DEADLINE = 60.0
# How long a test's HTTP client waits for one answer from a server the test started
# (taskflare serve, an example app) [s]. Generous for the same reason: a guard against
# a hang, not a check on speed (httpx's default, 5 s, failed answers that were only slow).
HTTP_TIMEOUT = 30.0


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = DEADLINE,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running_worker(
    app: App, config: WorkerConfig | None = None, *, stop_timeout: float = 30.0
) -> AsyncIterator[Worker]:
    """Run a real `Worker` as a task for the duration of the block, then stop it cleanly."""
    worker = Worker(app, config)
    task = asyncio.create_task(worker.run(), name="test-worker")
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, stop_timeout)


async def state_counts(app: App, queue: str) -> dict[str, int]:
    """How many messages `queue` holds in each state (empty when it holds none)."""
    backend = await app.backend()
    for counts in await backend.queue_counts(QueueCountsParams(queue)):
        if counts.name == queue:
            return {state: n for state, n in counts.by_state.items() if n}
    return {}


async def total_messages(app: App) -> int:
    """Messages stored across every queue, in any state."""
    backend = await app.backend()
    return sum(sum(c.by_state.values()) for c in await backend.queue_counts(QueueCountsParams()))


async def get(app: App, message_id: str) -> MessageRecord | None:
    """The stored message, or None once it is gone (plain queue messages are deleted on ack)."""
    return await (await app.backend()).message_get(MessageGetParams(message_id))


async def fate(app: App, message_id: str) -> str:
    """'acked' (deleted), or the stored state: 'ready' (retried), 'failed', 'leased'."""
    record = await get(app, message_id)
    return "acked" if record is None else record.state
