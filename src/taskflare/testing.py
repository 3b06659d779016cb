"""Helpers for users' own tests: run consumers in-process until their queues are empty,
and assert what was (not) enqueued. Fixtures for pytest: `taskflare.pytest_plugin`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .app import App
from .worker import Worker, WorkerConfig


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What `drain` did: batches run and messages acked, retried and failed."""

    batches: int
    acked: int
    retried: int
    failed: int


async def drain(
    app: App, queues: Sequence[str] | None = None, *, max_batches: int = 100_000
) -> DrainResult:
    """Run the consumers of `queues` (default: every queue with one) until nothing is ready.

    Batches are delivered at once, without waiting for `max_batch_timeout`; messages
    delayed into the future are left alone. Retries with no delay are delivered again
    in the same call, so a message that always fails ends failed (and dead-lettered).
    """
    worker = Worker(app, WorkerConfig(queues=tuple(queues or ()), concurrency=1))
    batches = 0
    try:
        progressed = True
        while progressed and batches < max_batches:
            progressed = False
            for queue in worker.queues:
                if await worker.drain_once(queue):
                    batches += 1
                    progressed = True
    finally:
        worker.close_pool()
    await app.registry.hooks.drain()  # async lifecycle listeners started meanwhile
    stats = worker.stats
    return DrainResult(
        batches=batches,
        acked=sum(stats.acked.values()),
        retried=sum(stats.retried.values()),
        failed=sum(stats.failed.values()),
    )


_ANY: Any = object()


def _includes(actual: Any, expected: Any) -> bool:
    """`expected` is `actual`, or (for mappings) a subset of it, compared recursively."""
    if expected is _ANY:
        return True
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return all(k in actual and _includes(actual[k], v) for k, v in expected.items())
    return bool(actual == expected)


async def enqueued(
    app: App,
    queue: str | None = None,
    *,
    type: str | None = None,
    body: Any = _ANY,
    payload: Any = _ANY,
) -> list[Any]:
    """Work waiting to run (delayed included) that matches: pending jobs of `type` (on
    `queue`, if given) whose payload includes `payload` (a mapping matches any payload
    holding its keys and values); else messages of `queue` whose body includes `body`.
    Returns the `Job`s, or the messages as admin JSON."""
    if type is not None:
        page = await app.read.jobs(status="pending", type=type, queue=queue, limit=1000)
        found = list(page.jobs)
        while page.partial and page.next_cursor and len(found) < 1000:  # past its window
            page = await app.read.jobs(
                status="pending", type=type, queue=queue, limit=1000, cursor=page.next_cursor
            )
            found += page.jobs
        return [job for job in found if _includes(job.payload, payload)]
    if queue is None:
        raise ValueError("give the queue of the messages, or the job type")
    messages = await app.read.messages(queue, "ready", 100_000)
    return [m for m in messages if _includes(m["body"], body)]


async def assert_enqueued(
    app: App,
    queue: str | None = None,
    *,
    type: str | None = None,
    body: Any = _ANY,
    payload: Any = _ANY,
    count: int | None = None,
) -> list[Any]:
    """Assert that matching work waits (exactly `count` items, if given); return it.
    The `AssertionError` shows what does wait instead."""
    found = await enqueued(app, queue, type=type, body=body, payload=payload)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    everything = await enqueued(app, queue, type=type)
    what = f"job type {type!r}" if type is not None else f"queue {queue!r}"
    wanted = payload if type is not None else body
    shown = [j.payload if type is not None else j["body"] for j in everything[:5]]
    raise AssertionError(
        f"expected {count if count is not None else 'some'} enqueued on {what} matching "
        f"{'anything' if wanted is _ANY else repr(wanted)}; found {len(found)}. "
        f"Waiting there: {shown}{' ...' if len(everything) > 5 else ''}"
    )


async def assert_not_enqueued(
    app: App,
    queue: str | None = None,
    *,
    type: str | None = None,
    body: Any = _ANY,
    payload: Any = _ANY,
) -> None:
    """Assert that no matching work waits; the `AssertionError` shows what matched."""
    found = await enqueued(app, queue, type=type, body=body, payload=payload)
    if found:
        shown = [j.payload if type is not None else j["body"] for j in found[:5]]
        what = f"job type {type!r}" if type is not None else f"queue {queue!r}"
        raise AssertionError(f"expected nothing enqueued on {what}; found {len(found)}: {shown}")
