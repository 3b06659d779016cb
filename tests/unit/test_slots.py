"""Worker slots are first come, first served: a batch claimed later never starts before
one claimed earlier, even when it asks for its slot at the moment one is freed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from taskflare import InvalidWorkerConfig, WorkerConfig
from taskflare.registry import QueueConfig, QueueSpec
from taskflare.worker.slots import Slots


def slots(concurrency: int, **limits: int | None) -> Slots:
    names = {"work", "jobs", *limits}
    specs = {n: QueueSpec(QueueConfig.create(n, max_concurrency=limits.get(n))) for n in names}
    return Slots(concurrency, specs)


async def test_a_freed_slot_goes_to_the_first_waiter_not_to_a_newcomer() -> None:
    s = slots(1)
    s.take("jobs", 1)  # e.g. the job producer, its claim in flight
    order: list[str] = []

    async def run(name: str) -> None:
        await s.acquire("work")
        order.append(name)

    first = asyncio.ensure_future(run("claimed first"))
    await asyncio.sleep(0)  # it waits for the slot
    # A batch claimed later is about to ask for a slot (its task already scheduled) when
    # the slot is freed: it runs before the first waiter wakes up.
    second = asyncio.ensure_future(run("claimed second"))
    s.give_back("jobs")
    await asyncio.sleep(0.01)
    assert order == ["claimed first"]
    s.give_back("work")
    await asyncio.gather(first, second)
    assert order == ["claimed first", "claimed second"]


async def test_a_cancelled_waiter_leaves_the_slot_to_the_next() -> None:
    s = slots(1)
    s.take("work", 1)
    got: list[str] = []

    async def run(name: str) -> None:
        await s.acquire("work")
        got.append(name)

    leaving = asyncio.ensure_future(run("leaving"))
    staying = asyncio.ensure_future(run("staying"))
    await asyncio.sleep(0)
    leaving.cancel()
    s.give_back("work")
    await asyncio.wait_for(staying, 5)
    assert got == ["staying"]
    assert s.free("work") == 0


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_gives_it_back() -> None:
    s = slots(1)
    s.take("work", 1)
    waiter = asyncio.ensure_future(s.acquire("work"))
    await asyncio.sleep(0)
    s.give_back("work")  # handed to the waiter, which has not resumed yet
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert s.free("work") == 1


async def test_a_queue_at_its_own_limit_does_not_hold_up_others() -> None:
    s = slots(2, work=1)
    s.take("work", 1)
    s.take("jobs", 1)
    blocked = asyncio.ensure_future(s.acquire("work"))  # work is at its limit of 1
    await asyncio.sleep(0)
    s.give_back("jobs")
    await asyncio.wait_for(s.acquire("jobs"), 5)  # the freed slot serves jobs
    assert not blocked.done()
    blocked.cancel()
    await asyncio.gather(blocked, return_exceptions=True)


async def test_a_listener_is_called_when_a_slot_frees_unless_a_fetcher_waits_for_one() -> None:
    s = slots(1)
    calls: list[int] = []
    s.listen(lambda: calls.append(s.take("jobs", 1)))  # a job queue's buffer of claimed jobs
    s.take("jobs", 1)
    s.give_back("jobs")
    assert calls == [1]  # the buffer took the freed slot at once
    # A fetcher waiting for a slot is served first: the listener is not called.
    waiting = asyncio.ensure_future(s.wait("work"))
    await asyncio.sleep(0)
    s.give_back("jobs")
    await waiting
    assert calls == [1] and s.free("work") == 1


def test_two_buffers_take_turns_at_freed_slots() -> None:
    s = slots(1)
    got: list[str] = []

    def buffer(name: str) -> Callable[[], None]:  # a busy job queue with claimed jobs waiting
        def start() -> None:
            if s.take("jobs", 1):
                got.append(name)

        return start

    s.listen(buffer("a"))
    s.listen(buffer("b"))
    s.take("jobs", 1)
    for _ in range(4):
        s.give_back("jobs")
    assert got == ["a", "b", "a", "b"]


def test_prefetch_is_a_whole_number_or_none() -> None:
    assert WorkerConfig().prefetch is None  # sized from the claim round trip
    assert WorkerConfig(prefetch=0).prefetch == 0  # a job is claimed only for a free slot
    for wrong in (-1, 1.5, True, "2"):
        with pytest.raises(InvalidWorkerConfig, match="prefetch must be"):
            WorkerConfig(prefetch=wrong)  # type: ignore[arg-type]
