"""The worker: one fetcher per queue → executor → outcome buffer, plus lease services.

Each fetcher claims a batch (one statement), waits for a free slot (the worker's
`concurrency` and the queue's `max_concurrency`), and starts the batch as a task; so at
most one claimed batch per queue waits for a slot. Stopping is two-phase: stop claiming
and hand back claimed-but-unstarted batches (their attempt uncounted), let running
batches finish within the grace period, then cancel the rest and record their outcomes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..backends.base import Backend, ClaimedMessage, ClaimParams, LeaseRef, WorkerReport
from ..errors import InvalidQueueConfig
from ..ids import uuid7
from ..queue import Queue
from ..scheduler import CronScheduler
from .executor import BatchReport, _CancelledWithReport, execute_batch
from .job_executor import JobRunner
from .services import (
    CancelWatcher,
    LeaseHeartbeat,
    LeaseRescuer,
    PeriodicService,
    Pruner,
    ServiceConfig,
    WorkerReporter,
)
from .settle import SettleBuffer

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("taskflare.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker runs: which queues, how many batches at once, how long to wait on stop."""

    queues: tuple[str, ...] = ()
    concurrency: int = 10
    shutdown_grace: float = 30.0
    idle_wait: float = 1.0
    # Claims in flight per queue while it has a backlog: a second claim hides the database
    # round trip of the first (measured: PostgreSQL drain +30-50%, jobs +35%; SQLite even
    # to +20%). Job fetchers take a slot before claiming, so this never claims ahead.
    fetchers_per_queue: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise InvalidQueueConfig(f"concurrency must be an integer, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise InvalidQueueConfig(f"concurrency must be at least 1, got {self.concurrency}")
        if isinstance(self.fetchers_per_queue, bool) or not 1 <= self.fetchers_per_queue <= 16:
            raise InvalidQueueConfig(
                f"fetchers_per_queue must be 1..16, got {self.fetchers_per_queue!r}"
            )
        if self.shutdown_grace < 0:
            raise InvalidQueueConfig(f"shutdown_grace must be >= 0, got {self.shutdown_grace}")


DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class WorkerStats:
    """Counters of what a worker did, per queue (read by `dev`, `drain` and /metrics)."""

    batches: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    # Handler durations per queue: cumulative-free bucket counts (last = +Inf) and sum.
    durations: dict[str, list[int]] = field(default_factory=dict)
    duration_sum: dict[str, float] = field(default_factory=dict)

    def record(self, queue: str, report: BatchReport, delivered: int) -> None:
        """Add one batch's outcomes."""
        self.batches[queue] += 1
        self.delivered[queue] += delivered
        self.acked[queue] += len(report.settlement.acks) + len(report.settlement.completes)
        self.retried[queue] += len(report.settlement.retries)
        self.failed[queue] += len(report.settlement.fails)
        self.cancelled[queue] += len(report.settlement.cancels)
        buckets = self.durations.setdefault(queue, [0] * (len(DURATION_BUCKETS) + 1))
        buckets[bisect.bisect_left(DURATION_BUCKETS, report.duration)] += 1
        self.duration_sum[queue] = self.duration_sum.get(queue, 0.0) + report.duration

    def to_json(self) -> str:
        """The counters as JSON, for the worker's periodic report."""
        names = ("batches", "delivered", "acked", "retried", "failed", "cancelled")
        return orjson.dumps(
            {
                "counters": {name: dict(getattr(self, name)) for name in names},
                "durations": {
                    "buckets": list(DURATION_BUCKETS),
                    "counts": self.durations,
                    "sum": dict(self.duration_sum),
                },
            }
        ).decode()


def select_queues(app: App, names: Sequence[str]) -> dict[str, Queue]:
    """The queues a worker consumes: those named (each must have a consumer), else all with one."""
    if names:
        chosen = {name: app.get_queue(name) for name in names}
        missing = [n for n, q in chosen.items() if q.consumer_spec is None and not q.job_types]
        if missing:
            raise InvalidQueueConfig(f"queue(s) {', '.join(missing)} have no consumer")
        return chosen
    return {n: q for n, q in app.queues.items() if q.consumer_spec is not None or q.job_types}


class Worker:
    """Consumes an app's queues until `stop()` is called (or SIGTERM/SIGINT via the CLI)."""

    def __init__(self, app: App, config: WorkerConfig | None = None) -> None:
        self.app = app
        self.config = config or WorkerConfig()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid7()[-6:]}"
        self.queues = select_queues(app, self.config.queues)
        self.stats = WorkerStats()
        self._held: dict[str, set[str]] = {name: set() for name in self.queues}
        self._running: set[asyncio.Task[None]] = set()
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend: Backend | None = None
        self._settle: SettleBuffer | None = None
        self._thread_pool: ThreadPoolExecutor | None = None
        self._global_slots: asyncio.Semaphore | None = None
        self._queue_slots: dict[str, asyncio.Semaphore | None] = {}
        self._jobs: JobRunner | None = None
        self._backlog: dict[str, asyncio.Event] = {}
        self._started_at = time.time()

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop gracefully; safe from any thread, twice, or before start."""
        # Remembered for a run() that has not set up its loop yet, so the stop is not lost.
        self._stop_requested = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def _setup(self) -> Backend:
        self._loop = asyncio.get_running_loop()
        self._started_at = time.time()
        self._stop_event = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        backend = await self.app.backend()
        self._backend = backend
        self._settle = SettleBuffer(backend)
        self._thread_pool = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix="taskflare-handler"
        )
        self._jobs = JobRunner(self.app, backend, self._thread_pool, self.id)
        self._global_slots = asyncio.Semaphore(self.config.concurrency)
        self._queue_slots = {
            name: asyncio.Semaphore(q.config.max_concurrency) if q.config.max_concurrency else None
            for name, q in self.queues.items()
        }
        return backend

    async def run(self) -> None:
        """Run until stopped; raise if a background duty died unexpectedly."""
        if not self.queues:
            raise InvalidQueueConfig("this app has no queue with a consumer to run")
        backend = await self._setup()
        assert self._stop_event is not None
        timeouts = [q.config.visibility_timeout for q in self.queues.values()]
        heartbeat = LeaseHeartbeat(
            backend,
            self.queues,
            lambda: self._held,
            ServiceConfig(min(max(min(timeouts) / 3, 0.05), 10.0)),
        )
        rescuer = LeaseRescuer(
            backend, self.queues, ServiceConfig(min(max(min(timeouts) / 2, 0.1), 15.0))
        )
        job_queues = {name for name, q in self.queues.items() if q.job_types}
        reporter = WorkerReporter(backend, self._report, ServiceConfig(5.0))
        services: list[PeriodicService] = [
            heartbeat,
            rescuer,
            Pruner(backend, self.app.retention),
            reporter,
        ]
        if job_queues:
            assert self._jobs is not None
            services.append(
                CancelWatcher(
                    backend, job_queues, lambda: self._held, self._jobs.cancel, ServiceConfig(0.25)
                )
            )
        for service in services:
            service.start()
        scheduler = CronScheduler(self.app, backend)
        scheduler.start()
        fetchers = [
            asyncio.create_task(self._fetch_loop(q, primary=n == 0), name=f"taskflare-fetch-{name}")
            for name, q in self.queues.items()
            for n in range(self.config.fetchers_per_queue)
        ]
        log.info(
            "worker %s started on %s: queues %s, concurrency %d",
            self.id,
            backend.url_for_logs,
            ", ".join(self.queues),
            self.config.concurrency,
        )
        stop_waiter = asyncio.create_task(self._stop_event.wait())
        watched: list[asyncio.Task[Any]] = [stop_waiter, *fetchers]
        watched += [s.task for s in services if s.task is not None]
        if scheduler.task is not None:
            watched.append(scheduler.task)
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        crashed = [t for t in done if t is not stop_waiter and t.exception() is not None]
        for task in crashed:
            log.error("worker duty %s died: %r; stopping", task.get_name(), task.exception())
        self._stop_event.set()
        stop_waiter.cancel()
        await scheduler.stop()
        await self._shutdown(fetchers)
        await self.app.background.drain()
        for service in services:
            await service.stop()
        with contextlib.suppress(Exception):
            await reporter.run_once()
        log.info("worker %s stopped", self.id)
        if crashed:
            exc = crashed[0].exception()
            assert exc is not None
            raise exc

    async def _shutdown(self, fetchers: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*fetchers, return_exceptions=True)
        if self._running:
            log.info(
                "waiting up to %ss for %d running batches",
                self.config.shutdown_grace,
                len(self._running),
            )
            _, pending = await asyncio.wait(set(self._running), timeout=self.config.shutdown_grace)
            if pending:
                log.warning("grace period over: cancelling %d batches", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        assert self._settle is not None
        await self._settle.drain()
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=False, cancel_futures=True)

    def _report(self) -> WorkerReport:
        return WorkerReport(
            id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            last_seen=time.time(),
            stats_json=self.stats.to_json(),
        )

    # -- fetching -----------------------------------------------------------------------

    def _claim_params(self, queue: Queue, *, fill: bool) -> ClaimParams:
        cfg = queue.config
        return ClaimParams(
            queue=queue.name,
            limit=cfg.max_batch_size,
            lease_id=uuid7(),
            owner=self.id,
            visibility_timeout=cfg.visibility_timeout,
            min_count=cfg.max_batch_size if fill else 1,
            max_wait=cfg.max_batch_timeout if fill else 0.0,
        )

    async def _until_stopped(self, awaitable: Awaitable[Any]) -> bool:
        """Await `awaitable` unless a stop comes first; True if it completed."""
        assert self._stop_event is not None
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stop_event.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        return True

    async def _fetch_loop(self, queue: Queue, *, primary: bool = True) -> None:
        """Claim and dispatch batches of one queue until stopped.

        The primary fetcher of a queue always runs; extra ones only while the queue has
        a backlog (the last claim came back full), so an idle queue costs one fetcher's
        polling, not several.

        Message queues claim first and then wait for a slot: one batch is ready to start
        the moment a slot frees (and is handed back untouched on stop). Job queues wait
        for a slot first and claim whatever is ready then, without waiting for a batch
        to fill, so a high-priority job never queues behind a batch claimed in advance.
        """
        assert self._backend is not None and self._stop_event is not None
        backend = self._backend
        jobs = bool(queue.job_types)
        backlog = self._backlog.setdefault(queue.name, asyncio.Event())
        failures = 0
        while not self._stop_event.is_set():
            if not primary and not await self._until_stopped(backlog.wait()):
                return
            if jobs and not await self._acquire_slots(queue):
                return
            since = backend.change_seq
            try:
                claimed = await backend.message_claim_many(self._claim_params(queue, fill=not jobs))
                wait = 0.0 if claimed or not primary else await self._idle_wait(queue)
                if failures:
                    log.warning("queue %r: database reachable again", queue.name)
                failures = 0
            except Exception as exc:
                if jobs:
                    self._release_slots(queue)
                failures += 1
                wait = min(0.1 * 2**failures, 5.0)
                log.warning("queue %r: cannot claim (%s); retrying in %.1fs", queue.name, exc, wait)
                await self._until_stopped(asyncio.sleep(wait))
                continue
            if len(claimed) >= queue.config.max_batch_size:
                backlog.set()
            else:
                backlog.clear()
            if claimed:
                self._held[queue.name].add(claimed[0].lease_id)
                if jobs or await self._acquire_slots(queue):
                    self._start(queue, claimed)
                else:
                    await self._release(queue, claimed)
                continue
            if jobs:
                self._release_slots(queue)
            if wait > 0 and primary:
                await self._until_stopped(backend.wait_for_change(since, wait))

    async def _idle_wait(self, queue: Queue) -> float:
        """How long to sleep before the next claim of a queue that had nothing to hand out."""
        assert self._backend is not None
        cfg = queue.config
        info = await self._backend.queue_ready_info(queue.name, cfg.max_batch_size)
        idle = self.config.idle_wait
        if info.paused:
            return idle
        if info.ready_count >= cfg.max_batch_size:
            return 0.0
        if info.oldest_available_at is not None:
            due = info.oldest_available_at + cfg.max_batch_timeout - info.now
            return min(max(due, 0.001), idle)
        if info.next_available_at is not None:
            return min(max(info.next_available_at - info.now, 0.001), idle)
        return idle

    async def _acquire_slots(self, queue: Queue) -> bool:
        """Take the queue's slot and a worker slot; False (holding none) if a stop came first."""
        assert self._global_slots is not None
        queue_slots = self._queue_slots[queue.name]
        if queue_slots is not None and not await self._until_stopped(queue_slots.acquire()):
            return False
        if not await self._until_stopped(self._global_slots.acquire()):
            if queue_slots is not None:
                queue_slots.release()
            return False
        return True

    def _release_slots(self, queue: Queue) -> None:
        assert self._global_slots is not None
        self._global_slots.release()
        queue_slots = self._queue_slots[queue.name]
        if queue_slots is not None:
            queue_slots.release()

    def _start(self, queue: Queue, claimed: list[ClaimedMessage]) -> None:
        task = asyncio.create_task(self._run_batch(queue, claimed))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _release(self, queue: Queue, claimed: list[ClaimedMessage]) -> None:
        assert self._backend is not None
        refs = [LeaseRef(c.id, c.lease_id) for c in claimed]
        try:
            count = await self._backend.message_release_many(refs)
            log.info("queue %r: handed back %d unstarted messages", queue.name, count)
        except Exception as exc:
            log.warning("queue %r: could not hand back unstarted messages (%s)", queue.name, exc)
        self._held[queue.name].discard(claimed[0].lease_id)

    # -- running ------------------------------------------------------------------------

    async def _run_batch(self, queue: Queue, claimed: list[ClaimedMessage]) -> None:
        try:
            report = await self._execute(queue, claimed)
        except _CancelledWithReport as cancelled:
            report = cancelled.report
        finally:
            self._release_slots(queue)
        await self.record(queue, claimed, report)

    async def record(
        self, queue: Queue, claimed: list[ClaimedMessage], report: BatchReport
    ) -> None:
        """Store a batch's outcomes (shielded from cancellation) and count them."""
        assert self._settle is not None
        await asyncio.shield(self._settle.settle(report.settlement))
        self._held[queue.name].discard(claimed[0].lease_id)
        self.stats.record(queue.name, report, len(claimed))

    # -- in-process draining (taskflare.testing) ----------------------------------------

    async def drain_once(self, queue: Queue) -> int:
        """Claim whatever is ready now (ignoring the batch timeout), run and record it."""
        if self._backend is None:
            await self._setup()
        assert self._backend is not None and self._thread_pool is not None
        claimed = await self._backend.message_claim_many(self._claim_params(queue, fill=False))
        if not claimed:
            return 0
        self._held[queue.name].add(claimed[0].lease_id)
        report = await self._execute(queue, claimed)
        await self.record(queue, claimed, report)
        return len(claimed)

    async def _execute(self, queue: Queue, claimed: list[ClaimedMessage]) -> BatchReport:
        """Jobs go to the job runner; plain messages to the queue's batch consumer."""
        assert self._thread_pool is not None and self._jobs is not None
        if queue.job_types:
            return await self._jobs.execute(queue, claimed)
        return await execute_batch(queue, claimed, self._thread_pool)

    def close_pool(self) -> None:
        """Release the handler threads used by `drain_once`."""
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=False)
