"""A worker's background duties, each a small service with `run_once()` and one loop.

- `LeaseHeartbeat` extends the leases of everything this worker holds, so a live
  worker's messages are never handed to someone else however long they run.
- `LeaseRescuer` returns messages whose worker died (lease expired) to their queue, or
  fails them (and dead-letters them) once they are out of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..backends.base import Backend, PruneParams, RescueParams, WorkerReport
from ..queue import Queue
from ..retention import Retention

log = logging.getLogger("taskflare.worker")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How often a service runs."""

    interval: float


class PeriodicService:
    """Runs `run_once()` every `interval` seconds until stopped; errors are logged, not fatal."""

    name = "service"

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
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

    async def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await self.run_once()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("%s failed (%s); will try again", self.name, exc)
            wait = self.config.interval * (min(2**failures, 16) if failures else 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)


class LeaseHeartbeat(PeriodicService):
    """Extends the visibility timeout of every lease the worker holds."""

    name = "lease-heartbeat"

    def __init__(
        self,
        backend: Backend,
        queues: Mapping[str, Queue],
        held: Callable[[], Mapping[str, set[str]]],
        config: ServiceConfig,
    ) -> None:
        super().__init__(config)
        self._backend = backend
        self._queues = queues
        self._held = held

    async def run_once(self) -> None:
        """Extend each queue's held leases by its visibility timeout."""
        for queue_name, lease_ids in list(self._held().items()):
            if lease_ids:
                timeout = self._queues[queue_name].config.visibility_timeout
                await self._backend.lease_extend_many(sorted(lease_ids), timeout)


class LeaseRescuer(PeriodicService):
    """Requeues (or fails) messages whose lease expired because their worker is gone."""

    name = "lease-rescuer"

    def __init__(self, backend: Backend, queues: Mapping[str, Queue], config: ServiceConfig):
        super().__init__(config)
        self._backend = backend
        self._queues = queues

    async def run_once(self) -> None:
        """One rescue pass over every queue this worker consumes."""
        for queue in self._queues.values():
            cfg = queue.config
            result = await self._backend.lease_rescue_expired(
                RescueParams(queue.name, cfg.max_attempts, cfg.dead_letter_queue)
            )
            if result.requeued or result.failed:
                log.warning(
                    "queue %r: %d messages with expired leases requeued, %d failed "
                    "(their worker stopped or lost contact)",
                    queue.name,
                    result.requeued,
                    result.failed,
                )


class CancelWatcher(PeriodicService):
    """Notices cancellation requests for the jobs this worker is running."""

    name = "cancel-watcher"

    def __init__(
        self,
        backend: Backend,
        job_queues: set[str],
        held: Callable[[], Mapping[str, set[str]]],
        on_cancel: Callable[[list[str]], None],
        config: ServiceConfig,
    ) -> None:
        super().__init__(config)
        self._backend = backend
        self._job_queues = job_queues
        self._held = held
        self._on_cancel = on_cancel

    async def run_once(self) -> None:
        """Ask which running jobs were cancelled, and cancel them here."""
        held = self._held()
        leases = [lease for name in self._job_queues for lease in held.get(name, ())]
        if leases:
            cancelled = await self._backend.job_cancel_requested(leases)
            if cancelled:
                self._on_cancel(cancelled)


class Pruner(PeriodicService):
    """Deletes finished rows past retention in bounded chunks."""

    name = "pruner"

    def __init__(self, backend: Backend, retention: Retention) -> None:
        super().__init__(ServiceConfig(retention.interval))
        self._backend = backend
        self._retention = retention

    async def run_once(self) -> int:  # type: ignore[override]
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
        self, backend: Backend, report: Callable[[], WorkerReport], config: ServiceConfig
    ) -> None:
        super().__init__(config)
        self._backend = backend
        self._report = report

    async def run_once(self) -> None:
        """Upsert the report."""
        await self._backend.worker_report(self._report())
