"""The worker: fetchers per queue → runners → outcome buffer, plus its background services.

A worker takes an app's registry (what to run) and backend (where the work is); it
knows nothing of the app beyond that. Stopping is two-phase: stop claiming and hand
back claimed-but-unstarted batches (their attempt uncounted), let running batches and
jobs finish within the grace period, then cancel the rest, whose outcome (retried, or
failed when out of attempts: "the worker shut down") is written before `run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ..backends.base import (
    Backend,
    ClaimedMessage,
    ClaimParams,
    QueueDeclareParams,
    QueueSettings,
    WorkerReport,
)
from ..backends.url import database_shown
from ..background import BackgroundTasks
from ..errors import InvalidWorkerConfig
from ..ids import uuid7
from ..registry import JOBS, QueueSpec, Registry
from ..retention import Retention
from .batch_runner import (
    DEFAULT_CANCEL_GRACE,
    BatchShutdown,
    execute_batch,
    message_outcomes,
    record_batch,
)
from .cron import CronScheduler, JobPreparer
from .fetchers import JobProducer, MessageFetcher, WorkerState
from .job_runner import JobReport, JobRunner, emit_outcome, log_outcome
from .leases import HeldLeases
from .services import (
    CancelWatcher,
    LeaseHeartbeat,
    LeaseRescuer,
    PeriodicService,
    Pruner,
    StatisticsKeeper,
    WorkerReporter,
)
from .settle import OutcomeBuffer, merge
from .slots import Slots
from .stats import WorkerStats

log = logging.getLogger("taskflare.worker")

# How long outcomes may keep failing to be written at shutdown before the worker gives up
# on them (their leases expire and another worker delivers them again) [s].
SHUTDOWN_WRITE_LIMIT = 10.0
# Handlers a worker runs at once by default: River's default per queue, and what a
# worker ran before jobs held a slot each (10 batches of 10 jobs). Async handlers cost a
# task each; plain ones a thread, started only when needed.
DEFAULT_CONCURRENCY = 100
REPORT_INTERVAL = 5.0
# How often a worker checks whether the planner statistics need a refresh [s].
STATISTICS_INTERVAL = 15.0
CANCEL_POLL_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker runs.

    `queues`: the queues to consume (empty: every queue with a consumer or job types);
    `concurrency`: handlers running at once (a job, or a message batch, holds one slot;
    all queues together; default 100);
    `shutdown_grace` [s]: how long running handlers may finish after a stop request;
    `cancel_grace` [s]: how long a cancelled handler (past its timeout, a requested job
    cancel, past `shutdown_grace`) may take to stop before the worker gives up on it
    (records its outcome without it, frees its slot and lease, leaves it running
    detached; at shutdown, exits without it);
    `idle_wait` [s]: the longest an idle fetcher sleeps before looking again (it wakes
    at once on new work); `fetchers_per_queue`: claims in flight per message queue while
    it has a backlog; `prefetch`: the most jobs a job queue claims ahead of its free
    slots while it has a backlog (None: as many as end during four claim round trips,
    at most the queue's slots; 0: none, a job is claimed only for a free slot).
    """

    queues: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    shutdown_grace: float = 30.0
    cancel_grace: float = DEFAULT_CANCEL_GRACE
    idle_wait: float = 1.0
    # A second claim hides the database round trip of the first (measured: PostgreSQL
    # drain +30-50%; SQLite to +20%).
    fetchers_per_queue: int = 2
    prefetch: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise InvalidWorkerConfig(
                f"concurrency must be an integer, got {self.concurrency!r}", fields=("concurrency",)
            )
        if self.concurrency < 1:
            raise InvalidWorkerConfig(
                f"concurrency must be at least 1, got {self.concurrency}", fields=("concurrency",)
            )
        if isinstance(self.fetchers_per_queue, bool) or not 1 <= self.fetchers_per_queue <= 16:
            raise InvalidWorkerConfig(
                f"fetchers_per_queue must be 1..16, got {self.fetchers_per_queue!r}"
            )
        prefetch = self.prefetch
        if prefetch is not None and (
            isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
        ):
            raise InvalidWorkerConfig(
                f"prefetch must be a whole number >= 0 or None, got {prefetch!r}",
                fields=("prefetch",),
            )
        for name in ("shutdown_grace", "cancel_grace"):
            grace = getattr(self, name)
            if (
                isinstance(grace, bool)
                or not isinstance(grace, (int, float))
                or not 0 <= grace < math.inf
            ):
                raise InvalidWorkerConfig(
                    f"{name} must be a finite number of seconds >= 0, got {grace!r}",
                    fields=(name,),
                )
        if not isinstance(self.idle_wait, (int, float)) or not 0 < self.idle_wait <= 60:
            raise InvalidWorkerConfig(f"idle_wait must be 0-60 seconds, got {self.idle_wait!r}")


class WorkerHost(Protocol):
    """What a worker needs of an app: its declarations, storage, retention, background
    tasks, and a way to build a cron tick's job."""

    registry: Registry
    retention: Retention
    background: BackgroundTasks

    @property
    def jobs(self) -> JobPreparer:
        """The app's job client (builds the job of a cron tick)."""
        ...

    async def backend(self) -> Backend:
        """The app's backend, opened on first use."""
        ...


class Worker:
    """Consumes an app's queues until `stop()` is called (or SIGTERM/SIGINT via the CLI)."""

    def __init__(self, app: WorkerHost, config: WorkerConfig | None = None) -> None:
        self.app = app
        self.config = config or WorkerConfig()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid7()[-6:]}"
        self.queues: dict[str, QueueSpec] = app.registry.runnable(self.config.queues)
        self.stats = WorkerStats()
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: WorkerState | None = None
        self._producers: list[JobProducer] = []
        self._started_at = time.time()

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop gracefully; safe from any thread, twice, or before start."""
        self._stop_requested = True  # remembered for a run() that has not started yet
        loop, state = self._loop, self._state
        if loop is not None and state is not None:
            loop.call_soon_threadsafe(state.stop.set)

    async def _setup(self) -> WorkerState:
        if self._state is not None:
            return self._state
        self._loop = asyncio.get_running_loop()
        self._started_at = time.time()
        backend = await self.app.backend()
        registry = self.app.registry
        await backend.queue_declare_many(
            QueueDeclareParams(
                [QueueSettings(s.name, s.settings_json()) for s in registry.queues.values()]
            )
        )
        pool = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix="taskflare-handler"
        )
        abandoned: set[asyncio.Task[Any]] = set()
        grace = self.config.cancel_grace
        state = WorkerState(
            backend=backend,
            worker_id=self.id,
            slots=Slots(self.config.concurrency, self.queues),
            held=HeldLeases(),
            buffer=OutcomeBuffer(backend),
            pool=pool,
            stats=self.stats,
            jobs=JobRunner(
                registry, backend, pool, self.id, cancel_grace=grace, abandoned=abandoned
            ),
            idle_wait=self.config.idle_wait,
            cancel_grace=grace,
            abandoned=abandoned,
        )
        if self._stop_requested:
            state.stop.set()
        self._state = state
        return state

    def _services(self, state: WorkerState) -> list[PeriodicService]:
        timeouts = [q.config.visibility_timeout for q in self.queues.values()]
        backend = state.backend
        services: list[PeriodicService] = [
            LeaseHeartbeat(
                backend, self.queues, state.held, min(max(min(timeouts) / 3, 0.05), 10.0)
            ),
            LeaseRescuer(
                backend,
                self.queues,
                min(max(min(timeouts) / 2, 0.1), 15.0),
                self.app.registry.hooks,
                self.stats,
            ),
            Pruner(backend, self.app.retention),
            StatisticsKeeper(backend, STATISTICS_INTERVAL),
            WorkerReporter(backend, self._report, REPORT_INTERVAL, self.stats.take_minutes),
        ]
        job_queues = {name for name, q in self.queues.items() if q.kind == JOBS}
        if job_queues:
            services.append(
                CancelWatcher(
                    backend,
                    lambda: state.held.of(job_queues),
                    self._cancel,
                    CANCEL_POLL_INTERVAL,
                )
            )
        return services

    def _cancel(self, job_ids: list[str]) -> None:
        """Cancel these jobs, running or waiting in a buffer."""
        assert self._state is not None
        self._state.jobs.cancel(job_ids)
        for producer in self._producers:
            producer.cancel(job_ids)

    def _fetchers(self, state: WorkerState) -> list[asyncio.Task[None]]:
        tasks = []
        for name, spec in self.queues.items():
            if spec.kind == JOBS:
                types = self.app.registry.claim_types(spec)
                producer = JobProducer(state, spec, self.config.prefetch, types)
                self._producers.append(producer)
                loops = [producer.run()]
            else:
                backlog = asyncio.Event()
                loops = [
                    MessageFetcher(state, spec, backlog, primary=n == 0).run()
                    for n in range(self.config.fetchers_per_queue)
                ]
            tasks += [asyncio.create_task(c, name=f"taskflare-fetch-{name}") for c in loops]
        return tasks

    async def run(self) -> None:
        """Run until stopped; raise if a background duty died unexpectedly."""
        if not self.queues:
            raise InvalidWorkerConfig("this app has no queue with a consumer to run")
        state = await self._setup()
        services = self._services(state)
        for service in services:
            service.start()
        scheduler = CronScheduler(self.app.registry, state.backend, self.app.jobs)
        scheduler.start()
        fetchers = self._fetchers(state)
        log.info(
            "worker %s started on %s: queues %s, concurrency %d",
            self.id,
            database_shown(state.backend.url_for_logs),
            ", ".join(self.queues),
            self.config.concurrency,
        )
        stop_waiter = asyncio.create_task(state.stop.wait())
        watched: list[asyncio.Task[Any]] = [stop_waiter, *fetchers]
        watched += [s.task for s in services if s.task is not None]
        if scheduler.task is not None:
            watched.append(scheduler.task)
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Cancelled from outside (not a stop request): take everything down with it.
            for task in [*watched, *state.running]:
                task.cancel()
            await asyncio.gather(*watched, return_exceptions=True)
            if state.running:  # handlers that ignore their cancellation are left behind
                await asyncio.wait(state.running, timeout=self.config.cancel_grace)
            for service in services:
                await service.stop()
            raise
        crashed = [t for t in done if t is not stop_waiter and t.exception() is not None]
        for task in crashed:
            log.error("worker duty %s died: %r; stopping", task.get_name(), task.exception())
        state.stop.set()
        stop_waiter.cancel()
        await scheduler.stop()
        await self._shutdown(state, fetchers)
        grace = self.config.cancel_grace
        await self.app.background.drain(cancel_grace=grace)
        # Async lifecycle listeners still running get the handlers' grace period.
        await self.app.registry.hooks.drain(self.config.shutdown_grace, cancel_grace=grace)
        for service in services:
            await service.stop()
        with contextlib.suppress(Exception):  # stopped cleanly: no longer counted as alive
            await state.backend.worker_gone(self.id)
        log.info("worker %s stopped", self.id)
        if crashed:
            exc = crashed[0].exception()
            assert exc is not None
            raise exc

    async def _shutdown(self, state: WorkerState, fetchers: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*fetchers, return_exceptions=True)
        running = state.running - state.abandoned
        if running:
            log.info(
                "waiting up to %ss for %d running batches and jobs",
                self.config.shutdown_grace,
                len(running),
            )
            _, pending = await asyncio.wait(running, timeout=self.config.shutdown_grace)
            if pending:
                log.warning(
                    "grace period over: stopping %d batches and jobs (their outcome: retried, "
                    "or failed when out of attempts)",
                    len(pending),
                )
                for task in pending:
                    task.cancel()
                await self._give_up_on_stuck(state, pending)
        await state.buffer.drain(SHUTDOWN_WRITE_LIMIT)
        state.pool.shutdown(wait=False, cancel_futures=True)

    async def _give_up_on_stuck(
        self, state: WorkerState, cancelled: set[asyncio.Task[None]]
    ) -> None:
        """Wait `cancel_grace` for the cancelled batches and jobs to stop; give up on those
        whose code ignores its cancellation (asyncio cannot kill it): their outcomes are
        recorded as cut off by the shutdown, and `run` returns without them."""
        _, stuck = await asyncio.wait(cancelled, timeout=self.config.cancel_grace)
        if not stuck:
            return
        state.jobs.give_up(stuck)
        for task in stuck:
            watch = state.batches.get(task)
            if watch is not None:
                watch.give_up()
        rest = state.running - state.abandoned  # recording what was given up on
        if rest:
            await asyncio.wait(rest)

    def held_leases(self) -> dict[str, list[str]]:
        """The lease ids this worker holds now, by queue (for tests and diagnostics)."""
        return {} if self._state is None else self._state.held.by_queue()

    def _info(self) -> dict[str, object]:
        """What this worker serves, for its report (the dashboard's workers page)."""
        state = self._state
        running = 0 if state is None else len(state.running - state.abandoned)
        return {
            "queues": sorted(self.queues),
            "concurrency": self.config.concurrency,
            "inFlight": running,
        }

    def _report(self) -> WorkerReport:
        return WorkerReport(
            id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            last_seen=time.time(),
            stats_json=self.stats.to_json(info=self._info()),
        )

    # -- in-process draining (taskflare.testing) ----------------------------------------

    async def drain_once(self, queue: str) -> int:
        """Claim whatever is ready now on `queue` (ignoring the batch timeout), run it,
        record its outcomes; return how many deliveries ran."""
        state = await self._setup()
        spec = self.queues[queue]
        cfg = spec.config
        jobs = spec.kind == JOBS
        result = await state.backend.message_claim_many(
            ClaimParams(
                queue=queue,
                limit=cfg.max_batch_size,
                lease_id=uuid7(),
                owner=self.id,
                visibility_timeout=cfg.visibility_timeout,
                types=self.app.registry.claim_types(spec) if jobs else None,
                limits=spec.flow_limits() if jobs else (),
            )
        )
        claimed = result.messages
        if not claimed:
            return 0
        state.held.add(queue, claimed[0].lease_id, len(claimed))
        if jobs:
            reports = await self._run_jobs(state, spec, claimed)
            settled = await state.buffer.settle(merge([r.settlement for r in reports]))
            hooks = self.app.registry.hooks
            for message, report in zip(claimed, reports, strict=True):
                state.stats.record(queue, settled, [message.id], report.duration)
                log_outcome(message, queue, report, settled)
                if hooks.listeners:
                    emit_outcome(hooks, message, queue, report, settled)
        else:
            hooks = self.app.registry.hooks
            try:
                batch = await execute_batch(spec, claimed, state.pool, hooks, state.buffer)
            except BatchShutdown as shutdown:
                batch = shutdown.report
            settled = await record_batch(state.buffer, batch)
            state.stats.record(queue, settled, [c.id for c in claimed], batch.duration)
            if hooks.listeners:
                hooks.emit_all(message_outcomes(hooks, queue, claimed, batch, settled))
        state.held.done(queue, claimed[0].lease_id, len(claimed))
        return len(claimed)

    @staticmethod
    async def _run_jobs(
        state: WorkerState, spec: QueueSpec, claimed: list[ClaimedMessage]
    ) -> list[JobReport]:
        """Run these jobs at once; their reports (one given up on reports without it)."""
        loop = asyncio.get_running_loop()
        ends: list[asyncio.Future[JobReport]] = []
        for message in claimed:
            end: asyncio.Future[JobReport] = loop.create_future()
            task = asyncio.ensure_future(state.jobs.run(spec, message, _resolve(end)))
            task.add_done_callback(_unresolved(end))
            ends.append(end)
        return list(await asyncio.gather(*ends))

    def close_pool(self) -> None:
        """Release the handler threads used by `drain_once`."""
        if self._state is not None:
            self._state.pool.shutdown(wait=False)


def _resolve(end: asyncio.Future[JobReport]) -> Callable[[JobReport], None]:
    def finish(report: JobReport) -> None:
        if not end.done():
            end.set_result(report)

    return finish


def _unresolved(end: asyncio.Future[JobReport]) -> Callable[[asyncio.Task[None]], None]:
    """A job's task that ended without a report (cancelled, or a bug) ends its wait too."""

    def ended(task: asyncio.Task[None]) -> None:
        if end.done():
            return
        if task.cancelled():
            end.cancel()
        else:
            end.set_exception(task.exception() or RuntimeError("the job ended unreported"))

    return ended


def select_queues(registry: Registry, names: Sequence[str]) -> dict[str, QueueSpec]:
    """The queues a worker would consume (raises `InvalidWorkerConfig` for a queue without
    a consumer)."""
    return registry.runnable(names)
