"""The loops that take work from the database: one per message queue (or two while it has a
backlog), one per job queue.

Message queues follow Cloudflare's batching: claim a batch once it is full or its oldest
message has waited `max_batch_timeout`, take a slot, run the batch, settle it. Job
queues run jobs one by one: take every free slot, claim at most that many jobs, run
each as its own task and settle it the moment it ends; a job never waits for another.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import (
    DONE_TOPIC,
    Backend,
    ClaimedMessage,
    ClaimParams,
    ClaimResult,
    LeaseExtendParams,
    LeaseRef,
    ReadyInfo,
    ReadyInfoParams,
    ReleaseParams,
    SettleResult,
    ready_topic,
)
from ..ids import uuid7
from ..registry import QueueSpec
from .batch_runner import (
    DEFAULT_CANCEL_GRACE,
    BatchReport,
    BatchShutdown,
    BatchWatch,
    ConsumerAbandoned,
    execute_batch,
    message_outcomes,
    record_batch,
)
from .job_runner import JobReport, JobRunner, emit_outcome, log_outcome
from .leases import HeldLeases
from .settle import OutcomeBuffer
from .slots import Slots
from .stats import WorkerStats

log = logging.getLogger("taskflare.worker")

# The most jobs one claim takes (the free slots, and the buffer's room while the queue
# has a backlog).
MAX_JOB_CLAIM = 100
# A job queue's buffer holds the jobs that end during this many claim round trips; it is
# refilled when half of it has started, so each claim takes about two round trips' worth
# (fewer, larger claims: at two, a fast database made a claim of ~10 jobs every 1.5 ms,
# ~15 % more worker CPU per 10 ms job), and the half left covers a claim in flight.
PREFETCH_ROUND_TRIPS = 4.0


@dataclass(slots=True)
class WorkerState:
    """What the fetchers of one worker share."""

    backend: Backend
    worker_id: str
    slots: Slots
    held: HeldLeases
    buffer: OutcomeBuffer
    pool: Executor
    stats: WorkerStats
    jobs: JobRunner
    idle_wait: float
    cancel_grace: float = DEFAULT_CANCEL_GRACE
    # Tasks given up on (their code ignored its cancellation), while they run on.
    abandoned: set[asyncio.Task[Any]] = field(default_factory=set)
    # The running batches, by task, for giving up on them at shutdown.
    batches: dict[asyncio.Task[Any], BatchWatch] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    running: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` as a tracked task (shutdown waits for it, then cancels it)."""
        task = asyncio.create_task(coro, name=name)
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def until_stopped(self, awaitable: Awaitable[Any]) -> bool:
        """Await `awaitable` unless a stop comes first; True if it completed."""
        task = asyncio.ensure_future(awaitable)
        if self.stop.is_set():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        return True

    async def claim(
        self, params: ClaimParams, queue: str, failures: list[int]
    ) -> ClaimResult | None:
        """Claim, or log the failure and back off (None); `failures` counts them in a row."""
        sent = time.monotonic()
        try:
            result = await self.backend.message_claim_many(params)
        except Exception as exc:
            failures[0] += 1
            wait = min(0.1 * 2 ** failures[0], 5.0)
            log.warning("queue %r: cannot claim (%s); retrying in %.1fs", queue, exc, wait)
            await self.until_stopped(asyncio.sleep(wait))
            return None
        if failures[0]:
            log.warning("queue %r: database reachable again", queue)
            failures[0] = 0
        late = time.monotonic() - sent
        if result.messages and late > params.visibility_timeout / 2:
            return await self._still_held(params, result, late)
        return result

    async def _still_held(
        self, params: ClaimParams, result: ClaimResult, late: float
    ) -> ClaimResult:
        """A claim seen past half its lease (the event loop stalled in a blocking handler
        while the answer waited, or the database was slow) may have lost its deliveries
        to another worker's lease rescuer meanwhile: a lease is guarded (heartbeat, guard
        thread) only once its claim is seen. So extend the lease first, and run the claim
        only if it still holds every delivery; else hand back the ones it holds and run
        none (the others are another worker's now: running them here ran them twice)."""
        claimed = result.messages
        lease = LeaseExtendParams([claimed[0].lease_id], params.visibility_timeout)
        try:
            held = await self.backend.lease_extend_many(lease)
        except Exception as exc:
            log.warning("queue %r: cannot extend a late claim's lease (%s)", params.queue, exc)
            held = -1
        if held == len(claimed):
            return result
        log.warning(
            "queue %r: a claim answered %.1fs late (its lease: %gs) held %s of its %d "
            "deliveries; none run here, the rest handed back",
            params.queue,
            late,
            params.visibility_timeout,
            "an unknown number" if held < 0 else held,
            len(claimed),
        )
        await release(self, params.queue, claimed)
        return ClaimResult([], result.ready)


def idle_wait(info: ReadyInfo | None, spec: QueueSpec, idle: float, *, fill: bool) -> float:
    """How long a fetcher whose claim took nothing may sleep before looking again [s]."""
    if info is None or info.paused:
        return idle
    cfg = spec.config
    if fill and info.ready_count >= cfg.max_batch_size:
        return 0.0
    if info.oldest_available_at is not None:
        if not fill:
            return 0.001  # ready work another worker took first, or not yet visible
        due = info.oldest_available_at + cfg.max_batch_timeout - info.now
        return min(max(due, 0.001), idle)
    if info.next_available_at is not None:
        return min(max(info.next_available_at - info.now, 0.001), idle)
    return idle


class MessageFetcher:
    """Claims batches of one message queue and runs them as slots free up.

    The primary fetcher of a queue always runs; an extra one only while the queue has a
    backlog (the last claim came back full): a second claim in flight hides the database
    round trip of the first, and an idle queue costs one fetcher's polling.
    """

    def __init__(
        self, state: WorkerState, spec: QueueSpec, backlog: asyncio.Event, *, primary: bool
    ) -> None:
        self.state = state
        self.spec = spec
        self.backlog = backlog
        self.primary = primary

    def _params(self, *, expected: bool = False) -> ClaimParams:
        cfg = self.spec.config
        return ClaimParams(
            queue=self.spec.name,
            limit=cfg.max_batch_size,
            lease_id=uuid7(),
            owner=self.state.worker_id,
            visibility_timeout=cfg.visibility_timeout,
            min_count=cfg.max_batch_size,
            max_wait=cfg.max_batch_timeout,
            describe_empty=not expected,
        )

    async def run(self) -> None:
        """Claim and dispatch batches until the worker stops.

        As for jobs (see `JobProducer.run`), the primary fetcher's claim right after a
        change woke it, or right after a full batch, expects work: a backend may leave
        out describing an empty queue, which is then asked for separately."""
        state, spec = self.state, self.spec
        topic = ready_topic(spec.name)
        failures = [0]
        expected = False
        while not state.stop.is_set():
            if not self.primary and not await state.until_stopped(self.backlog.wait()):
                return
            seq = state.backend.change_seq(topic)
            params = self._params(expected=expected and self.primary)
            result = await state.claim(params, spec.name, failures)
            expected = False
            if result is None:
                continue
            claimed = result.messages
            if len(claimed) >= spec.config.max_batch_size:
                self.backlog.set()
                expected = True
            else:
                self.backlog.clear()
            if claimed:
                state.held.add(spec.name, claimed[0].lease_id, len(claimed))
                if await state.until_stopped(state.slots.acquire(spec.name)):
                    state.start(self._run_batch(claimed), f"taskflare-batch-{spec.name}")
                    await asyncio.sleep(0)  # the consumer starts before the next claim
                else:
                    await release(state, spec.name, claimed)
                continue
            ready = result.ready
            if ready is None and not params.describe_empty:
                ready = await ready_info(state, spec.name, spec.config.max_batch_size, None)
            wait = idle_wait(ready, spec, state.idle_wait, fill=True)
            if self.primary and wait > 0:
                await state.until_stopped(state.backend.wait_for_change(topic, seq, wait))
                expected = state.backend.change_seq(topic) != seq  # woken by new work

    async def _run_batch(self, claimed: list[ClaimedMessage]) -> None:
        state, spec = self.state, self.spec
        task = asyncio.current_task()
        assert task is not None
        watch = BatchWatch(state.cancel_grace, lambda report: self._given_up(task, claimed, report))
        state.batches[task] = watch
        hooks = state.jobs.registry.hooks
        try:
            report = await execute_batch(
                spec, claimed, state.pool, hooks, state.buffer, watch=watch
            )
        except BatchShutdown as shutdown:
            report = shutdown.report
        except ConsumerAbandoned:  # given up on long ago: its outcome is recorded
            return
        finally:
            del state.batches[task]
            if not watch.abandoned:
                state.slots.give_back(spec.name)
        await self._record(claimed, report)

    def _given_up(
        self, task: asyncio.Task[Any], claimed: list[ClaimedMessage], report: BatchReport
    ) -> None:
        """The worker gave up on the consumer running in `task`: free its slot, record its
        batch's outcome without it."""
        state = self.state
        state.slots.give_back(self.spec.name)
        state.abandoned.add(task)
        task.add_done_callback(state.abandoned.discard)
        state.start(self._record(claimed, report), f"taskflare-batch-{self.spec.name}")

    async def _record(self, claimed: list[ClaimedMessage], report: BatchReport) -> None:
        state, spec = self.state, self.spec
        hooks = state.jobs.registry.hooks
        result = await record_batch(state.buffer, report)
        state.held.done(spec.name, claimed[0].lease_id, len(claimed))
        state.stats.record(spec.name, result, [c.id for c in claimed], report.duration)
        if hooks.listeners:
            hooks.emit_all(message_outcomes(hooks, spec.name, claimed, report, result))


class JobProducer:
    """Claims the jobs of one job queue as slots free up and runs each one on its own.

    A job is claimed when a slot is free for it, or, while the queue has a backlog, a
    little ahead: a small buffer of claimed jobs fills each slot the moment it frees,
    instead of after a claim's round trip to the database (with 10 ms handlers that
    round trip left slots empty for a third of the time). The buffer holds about the
    jobs that end during four claim round trips (at most the queue's slots), so a
    buffered job waits a few round trips, a newly enqueued higher-priority job waits
    for at most the buffer, and a queue of long jobs buffers nothing. Buffered jobs are
    leased like running ones (the heartbeat extends them), handed back at once on a
    graceful stop, and a queue with rate or concurrency limits buffers nothing (a
    buffered job would hold a limit it does not use). Each job's outcome is written as
    soon as it ends (group-committed with outcomes ending at the same time), never held
    back by another.
    """

    def __init__(
        self,
        state: WorkerState,
        spec: QueueSpec,
        prefetch: int | None,
        types: tuple[str, ...],
    ) -> None:
        """`prefetch`: the most jobs buffered ahead of free slots (None: sized from the
        jobs ending per claim round trip, at most the queue's slots); `types`: the job
        types claimed (`Registry.claim_types`: the queue's own and those routed to it)."""
        self.state = state
        self.spec = spec
        self.types = types
        # The queue's rate and concurrency limits: enforced by the claim statement itself.
        self.limits = spec.flow_limits()
        self.buffer: deque[ClaimedMessage] = deque()
        slots = state.slots.free(spec.name)
        cap = slots if prefetch is None else prefetch
        self.cap = 0 if self.limits else min(cap, MAX_JOB_CLAIM)
        self.fixed = prefetch is not None
        self.backlog = False  # the last claim took all it asked for
        self.per_trip = 0.0  # jobs ending during one claim round trip (moving average)
        self.ended = 0  # jobs of this queue that have ended
        self.room = asyncio.Event()  # the buffer fell below its target
        self._last: tuple[float, int] | None = None  # the previous claim's start, `ended`
        if self.cap:
            state.slots.listen(self._dispatch)

    def _params(self, limit: int, *, expected: bool) -> ClaimParams:
        return ClaimParams(
            queue=self.spec.name,
            limit=limit,
            lease_id=uuid7(),
            owner=self.state.worker_id,
            visibility_timeout=self.spec.config.visibility_timeout,
            types=self.types,
            limits=self.limits,
            describe_empty=not expected,
        )

    def target(self) -> int:
        """How many claimed jobs the buffer should hold now."""
        if not self.backlog or not self.cap:
            return 0
        if self.fixed:
            return self.cap
        # Rounded, not up: a job is buffered only if one ends every 8 round trips or more
        # often, so a buffered job never waits long for a slot behind long-running jobs.
        return min(self.cap, math.floor(PREFETCH_ROUND_TRIPS * self.per_trip + 0.5))

    def _dispatch(self) -> None:
        """Start buffered jobs on the free slots (called when a slot frees)."""
        buffer = self.buffer
        if not buffer or self.state.stop.is_set():
            return
        started = self.state.slots.take(self.spec.name, len(buffer))
        for _ in range(started):
            message = buffer.popleft()
            self.state.start(self._run_job(message), f"taskflare-job-{message.id}")
        if started and (not buffer or self.wants_claim()):
            self.room.set()  # the claim loop waits for this while the buffer is full

    def wants_claim(self) -> bool:
        """Whether the buffer has room enough for a claim: half its target, or less when
        its cap leaves less than two round trips' worth after the claim is sent (a slow
        database: claims follow one another)."""
        target = self.target()
        keep = max(target - target // 2, round(2 * self.per_trip))
        return target - len(self.buffer) >= max(1, target - keep)

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Buffered jobs whose cancel was requested end as cancelled, without running."""
        wanted = set(job_ids)
        dropped = [m for m in self.buffer if m.id in wanted]
        if not dropped:
            return
        self.buffer = deque(m for m in self.buffer if m.id not in wanted)
        self.room.set()
        for message in dropped:
            self.state.start(self._run_job(message, cancelled=True), f"taskflare-job-{message.id}")

    def _measure(self, started: float, ended: int) -> None:
        """After a claim: how many jobs end during one claim round trip, from the rate
        at which jobs ended since the previous claim started and this claim's latency."""
        now = time.monotonic()
        if self._last is not None and self.cap and not self.fixed:
            since, ended_then = self._last
            rate = (self.ended - ended_then) / max(now - since, 1e-6)
            self.per_trip = 0.5 * self.per_trip + 0.5 * rate * (now - started)
        self._last = (started, ended)

    async def run(self) -> None:
        """Claim and start jobs until the worker stops; then hand back buffered jobs.

        A claim made right after a change woke the fetcher, or right after a claim that
        took jobs, expects work: it is the claim alone (see
        `ClaimParams.describe_empty`), which keeps the pickup of a new job short and
        cheap; only when it takes nothing is the queue described. Other claims (the
        first, after an idle timeout) describe an empty queue in the same statement: an
        idle worker sends one statement per idle wait."""
        await self._claim_loop()
        if self.buffer:  # claimed but never started: back to the queue, attempt uncounted
            claimed, self.buffer = list(self.buffer), deque()
            await release(self.state, self.spec.name, claimed)

    async def _claim_loop(self) -> None:
        state, spec = self.state, self.spec
        topic = ready_topic(spec.name)
        failures = [0]
        expected = False
        while not state.stop.is_set():
            self._dispatch()
            if state.slots.free(spec.name) <= 0 and not self.wants_claim():
                if self.buffer:
                    self.room.clear()
                    if not await state.until_stopped(self.room.wait()):
                        return
                    continue
                if not await state.until_stopped(state.slots.wait(spec.name)):
                    return
                await asyncio.sleep(0)  # let jobs ending in the same tick free their slots too
                continue
            taken = state.slots.take(spec.name, MAX_JOB_CLAIM)
            more = self.target() - len(self.buffer)
            limit = taken + max(0, min(more, MAX_JOB_CLAIM - taken))
            seq = state.backend.change_seq(topic)
            done_seq = state.backend.change_seq(DONE_TOPIC)
            params = self._params(limit, expected=expected)
            started, ended = time.monotonic(), self.ended
            result = await state.claim(params, spec.name, failures)
            claimed = [] if result is None else result.messages
            state.slots.give_back(spec.name, taken - min(len(claimed), taken))
            self.backlog = len(claimed) == limit  # a full claim: more may be waiting
            # After a claim that took jobs the next one is the claim alone, as after a
            # wake-up: describing the queue in the same statement was most of the
            # database's work for a pickup (planned anew each time), and after the last
            # job the queue is described only when that claim takes nothing.
            expected = bool(claimed)
            if result is None:
                continue
            self._measure(started, ended)
            if claimed:
                state.held.add(spec.name, claimed[0].lease_id, len(claimed))
                for message in claimed[:taken]:
                    state.start(self._run_job(message), f"taskflare-job-{message.id}")
                self.buffer.extend(claimed[taken:])
                # The jobs' handlers start before the next claim is sent: sending it
                # first put a database round trip's send in front of every pickup.
                await asyncio.sleep(0)
                continue
            ready = result.ready
            if ready is None and not params.describe_empty:
                ready = await ready_info(state, spec.name, limit, self.types)
            wait = idle_wait(ready, spec, state.idle_wait, fill=False)
            if wait <= 0:
                continue
            if self.limits and (ready is None or ready.next_available_at is not None):
                # A job ending anywhere may free a concurrency slot that holds a job back;
                # with nothing held back or delayed (no next time to look), it frees none.
                changes = {topic: seq, DONE_TOPIC: done_seq}
                await state.until_stopped(wait_for_any(state.backend, changes, wait))
            else:
                await state.until_stopped(state.backend.wait_for_change(topic, seq, wait))
            expected = state.backend.change_seq(topic) != seq  # woken by new work

    async def _run_job(self, message: ClaimedMessage, *, cancelled: bool = False) -> None:
        end = _JobEnd(self, message, cancelled)
        try:
            await self.state.jobs.run(self.spec, message, end, cancelled=cancelled)
        finally:
            end.release()  # run raised before deciding (a bug): the slot is not lost


class _JobEnd:
    """What a job's end does in its producer, once: free its slot and hand its outcome to
    the buffer (whose write then ends its lease). Called by the job runner when the job
    ends or when it gives up on a handler that ignores its cancellation."""

    __slots__ = ("message", "producer", "released")

    def __init__(self, producer: JobProducer, message: ClaimedMessage, cancelled: bool) -> None:
        self.producer = producer
        self.message = message
        self.released = cancelled  # a cancelled buffered job ran without a slot

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.producer.ended += 1
            self.producer.state.slots.give_back(self.producer.spec.name)

    def __call__(self, report: JobReport) -> None:
        self.release()
        producer, message = self.producer, self.message
        state, queue = producer.state, producer.spec.name
        hooks = state.jobs.registry.hooks

        def stored(result: SettleResult) -> None:
            state.held.done(queue, message.lease_id)
            state.stats.record(queue, result, [message.id], report.duration)
            log_outcome(message, queue, report, result)
            if hooks.listeners:
                emit_outcome(hooks, message, queue, report, result)

        state.buffer.submit(report.settlement, stored)


async def ready_info(
    state: WorkerState, queue: str, limit: int, types: tuple[str, ...] | None
) -> ReadyInfo | None:
    """What `queue` holds, after a claim that expected work took nothing (None: the
    database could not say; the fetcher then sleeps its idle wait)."""
    try:
        return await state.backend.queue_ready_info(ReadyInfoParams(queue, limit, types))
    except Exception as exc:
        log.warning("queue %r: cannot look at the queue (%s)", queue, exc)
        return None


async def wait_for_any(backend: Backend, changes: dict[str, int], timeout: float) -> bool:
    """Sleep until any of these topics moves past its number, or `timeout` passes."""
    waits = [
        asyncio.ensure_future(backend.wait_for_change(t, since, timeout))
        for t, since in changes.items()
    ]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return any(task.result() for task in done)


async def release(state: WorkerState, queue: str, claimed: list[ClaimedMessage]) -> None:
    """Hand claimed-but-unstarted messages back, their attempt uncounted."""
    refs = [LeaseRef(c.id, c.lease_id) for c in claimed]
    try:
        count = await state.backend.message_release_many(ReleaseParams(refs))
        log.info("queue %r: handed back %d unstarted messages", queue, count)
    except Exception as exc:
        log.warning("queue %r: could not hand back unstarted messages (%s)", queue, exc)
    for message in claimed:  # a job queue's buffer may hold jobs of several claims
        state.held.done(queue, message.lease_id)
