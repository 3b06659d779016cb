"""A worker's background duties, each a small service with `run_once()` and one loop.

- `LeaseHeartbeat` extends the leases of everything this worker holds, so a live
  worker's deliveries are never handed to someone else however long they run.
- `LeaseRescuer` settles deliveries whose lease expired (their worker died): retried,
  or failed and dead-lettered once out of attempts, by the outcome policy.
- `CancelWatcher` notices cancellation requests for the jobs this worker runs (woken by
  the backend's `cancel` signal, with a slow poll as a fallback).
- `Pruner` deletes finished rows past retention, in bounded chunks.
- `StatisticsKeeper` refreshes the planner's statistics of the message table when a
  burst has left them far behind (PostgreSQL; autovacuum may wait a minute).
- `WorkerReporter` writes this worker's heartbeat row and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping

from ..backends.base import (
    CANCEL_TOPIC,
    Backend,
    CancelRequestedParams,
    LeaseExtendParams,
    PruneParams,
    StatsAddParams,
    StatsMinute,
    StatsPruneParams,
    WorkerReport,
)
from ..portal import Portal
from ..registry import QueueSpec
from ..registry.hooks import Hooks
from ..retention import Retention
from .leases import HeldLeases
from .rescue import rescue_expired
from .stats import WorkerStats

log = logging.getLogger("taskflare.worker")

# The stored per-minute history is kept this long [s] (the dashboard shows 24 h)...
HISTORY_SECONDS = 25 * 3600.0
# ...and each worker prunes what is older this often [s].
HISTORY_PRUNE_INTERVAL = 600.0


class PeriodicService:
    """Runs `run_once()` every `interval` seconds until stopped; errors are logged, not fatal."""

    name = "service"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def run_once(self) -> None:
        """One pass of the service's duty."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"taskflare-{self.name}")

    async def stop(self) -> None:
        """Stop the loop; safe twice and before start."""
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running loop, for the worker to watch."""
        return self._task

    async def pause(self, seconds: float) -> None:
        """Sleep between passes (returns early on stop)."""
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: see ChangeSignal.wait
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await self.run_once()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("%s failed (%s); will try again", self.name, exc)
            await self.pause(self.interval * (min(2**failures, 16) if failures else 1))


class LeaseHeartbeat(PeriodicService):
    """Extends the visibility timeout of every lease the worker holds.

    It runs on the worker's event loop, which an `async def` handler can block (a
    blocking call, CPU-bound work): then no pass runs, the leases expire while their
    handler still runs, and another worker delivers the same messages again (BullMQ's
    "could not renew lock", Celery's and Sidekiq's double runs). So a guard thread,
    with its own loop and connection, watches the loop: when it has not run for an
    interval it extends the held leases itself, for up to `STALL_LIMIT` seconds of one
    stall (a loop stuck for good then lets its leases lapse, as a dead worker's do).
    """

    name = "lease-heartbeat"
    STALL_LIMIT = 900.0  # Cloudflare's wall-clock limit of a consumer invocation

    def __init__(
        self, backend: Backend, queues: Mapping[str, QueueSpec], held: HeldLeases, interval: float
    ) -> None:
        super().__init__(interval)
        self._backend = backend
        self._queues = queues
        self._held = held
        self._beat = time.monotonic()
        self._guard_stop = threading.Event()
        self._guard: threading.Thread | None = None
        self._guard_portal: Portal | None = None

    async def run_once(self) -> None:
        """Extend each queue's held leases by its visibility timeout."""
        await self._extend()

    async def _extend(self) -> None:
        for queue, lease_ids in self._held.by_queue().items():
            timeout = self._queues[queue].config.visibility_timeout
            await self._backend.lease_extend_many(LeaseExtendParams(lease_ids, timeout))

    def start(self) -> None:
        """Start the loop and its guard thread (once)."""
        super().start()
        if self._guard is None:
            self._tick()
            self._guard = threading.Thread(
                target=self._watch, name="taskflare-lease-guard", daemon=True
            )
            self._guard.start()

    async def stop(self) -> None:
        """Stop the loop and the guard; safe twice and before start."""
        self._guard_stop.set()
        await super().stop()
        guard, self._guard = self._guard, None
        if guard is not None:
            await asyncio.to_thread(guard.join)

    def _tick(self) -> None:
        """On the worker's loop, every half interval: the loop runs."""
        self._beat = time.monotonic()
        if not self._guard_stop.is_set():
            asyncio.get_running_loop().call_later(self.interval / 2, self._tick)

    def _watch(self) -> None:
        """The guard thread: extend the held leases while the worker's loop is stalled
        (checked every half interval, so they are extended before they can run out)."""
        try:
            while not self._guard_stop.wait(self.interval / 2):
                stalled = time.monotonic() - self._beat
                if self.interval < stalled < self.STALL_LIMIT and self._held.by_queue():
                    self._extend_from_guard(stalled)
        finally:
            portal, self._guard_portal = self._guard_portal, None
            if portal is not None:  # its loop's connections are dropped when the app closes
                portal.stop()

    def _extend_from_guard(self, stalled: float) -> None:
        if self._guard_portal is None:
            self._guard_portal = Portal("taskflare-lease-guard-loop")
            log.warning(
                "the worker's event loop has not run for %.1f s (a blocking call in an "
                "async handler?); extending its leases from a guard thread",
                stalled,
            )
        try:
            self._guard_portal.run(self._extend())
        except Exception as exc:  # the next pass tries again
            log.warning("%s guard failed (%s); will try again", self.name, exc)


class LeaseRescuer(PeriodicService):
    """Settles deliveries whose lease expired because their worker is gone."""

    name = "lease-rescuer"

    def __init__(
        self,
        backend: Backend,
        queues: Mapping[str, QueueSpec],
        interval: float,
        hooks: Hooks | None = None,
        stats: WorkerStats | None = None,
    ):
        super().__init__(interval)
        self._backend = backend
        self._queues = queues
        self._hooks = hooks
        self._stats = stats

    async def run_once(self) -> None:
        """One rescue pass over every queue this worker consumes; its outcomes go to the
        app's lifecycle listeners (`hooks`), the jobs log and the worker's counters."""
        for spec in self._queues.values():
            result = await rescue_expired(self._backend, spec, self._hooks)
            if self._stats is not None:
                self._stats.record_rescued(
                    spec.name, result.requeued, result.failed - result.cancelled, result.cancelled
                )
            if result.requeued or result.failed:
                log.warning(
                    "queue %r: %d deliveries with expired leases requeued, %d failed "
                    "(their worker stopped or lost contact)",
                    spec.name,
                    result.requeued,
                    result.failed,
                )


class CancelWatcher(PeriodicService):
    """Notices cancellation requests for the jobs this worker is running."""

    name = "cancel-watcher"

    def __init__(
        self,
        backend: Backend,
        held_jobs: Callable[[], list[str]],
        on_cancel: Callable[[list[str]], None],
        interval: float,
    ) -> None:
        super().__init__(interval)
        self._backend = backend
        self._held_jobs = held_jobs
        self._on_cancel = on_cancel
        self._seq = backend.change_seq(CANCEL_TOPIC)

    async def run_once(self) -> None:
        """Ask which running jobs were cancelled, and cancel them here."""
        self._seq = self._backend.change_seq(CANCEL_TOPIC)
        leases = self._held_jobs()
        if leases:
            cancelled = await self._backend.job_cancel_requested(CancelRequestedParams(leases))
            if cancelled:
                self._on_cancel(cancelled)

    async def pause(self, seconds: float) -> None:
        """Sleep until a cancellation is requested anywhere (or the fallback poll is due)."""
        stopping = asyncio.ensure_future(self._stop.wait())
        signalled = asyncio.ensure_future(
            self._backend.wait_for_change(CANCEL_TOPIC, self._seq, seconds)
        )
        await asyncio.wait({stopping, signalled}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopping, signalled):
            task.cancel()
        await asyncio.gather(stopping, signalled, return_exceptions=True)


class StatisticsKeeper(PeriodicService):
    """Asks the backend to refresh stale planner statistics, at start and then periodically."""

    name = "statistics"

    def __init__(self, backend: Backend, interval: float) -> None:
        super().__init__(interval)
        self._backend = backend

    async def run_once(self) -> None:
        """One check (and an ANALYZE when the statistics are far behind)."""
        if await self._backend.refresh_statistics():
            log.debug("refreshed the planner statistics of the message table")


class Pruner(PeriodicService):
    """Deletes finished rows past retention in bounded chunks."""

    name = "pruner"

    def __init__(self, backend: Backend, retention: Retention) -> None:
        super().__init__(retention.interval)
        self._backend = backend
        self._retention = retention

    async def run_once(self) -> None:
        """Prune up to `max_chunks_per_run` chunks."""
        await self.prune()

    async def prune(self) -> int:
        """Prune up to `max_chunks_per_run` chunks; return how many rows were deleted."""
        r = self._retention
        now = time.time()
        params = PruneParams(
            completed_before=now - r.completed if r.completed is not None else float("-inf"),
            failed_before=now - r.failed if r.failed is not None else float("-inf"),
            limit=r.chunk_size,
        )
        total = 0
        for _ in range(r.max_chunks_per_run):
            deleted = await self._backend.job_prune(params)
            total += deleted
            if deleted < r.chunk_size:
                break
        if total:
            log.info("pruned %d finished jobs and messages past retention", total)
        return total


class WorkerReporter(PeriodicService):
    """Writes this worker's heartbeat row and counters, for /metrics and admin tools."""

    name = "worker-reporter"

    def __init__(
        self,
        backend: Backend,
        report: Callable[[], WorkerReport],
        interval: float,
        minutes: Callable[[], list[StatsMinute]] | None = None,
    ) -> None:
        super().__init__(interval)
        self._backend = backend
        self._report = report
        self._minutes = minutes
        self._pruned_at = 0.0

    async def run_once(self) -> None:
        """Upsert the report; add this worker's per-minute deltas to the stored history
        and, every few minutes, prune history older than `HISTORY_SECONDS`."""
        await self._backend.worker_report(self._report())
        if self._minutes is None:
            return
        minutes = self._minutes()
        if minutes:
            await self._backend.stats_add(StatsAddParams(minutes))
        now = time.time()
        if now - self._pruned_at >= HISTORY_PRUNE_INTERVAL:
            self._pruned_at = now
            await self._backend.stats_prune(StatsPruneParams(now - HISTORY_SECONDS))
