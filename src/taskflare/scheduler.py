"""Cron triggers: `@app.cron(...)`, and the scheduler service every worker runs.

Each tick becomes a job (type `cron:<name>`) on the trigger's queue, so it has retries,
status and history. Every worker runs the scheduler; a unique row per trigger and tick
decides which one enqueues it, so each tick runs once however many workers there are.
On start, ticks missed while no worker ran are coalesced: the latest one runs once if
it is within `misfire_grace` seconds, and every other missed tick is recorded as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, CronTick, NewMessage
from .cron import CronSchedule, InvalidCronExpression

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("taskflare.cron")

CRON_JOB_PREFIX = "cron:"
MAX_MISSED_TICKS = 10_000


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """What a cron handler receives: the expression, the trigger's name and the tick's time."""

    cron: str
    name: str
    scheduled_time: datetime


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """A registered trigger."""

    name: str
    schedule: CronSchedule
    queue: str
    misfire_grace: float
    handler: Callable[[ScheduledEvent], Any]

    @property
    def job_type(self) -> str:
        """The job type its ticks run as."""
        return CRON_JOB_PREFIX + self.name


def register_cron(
    app: App,
    expression: str,
    handler: Callable[[ScheduledEvent], Any],
    *,
    name: str | None,
    tz: str,
    queue: str | None,
    misfire_grace: float,
    max_attempts: int,
) -> CronTrigger:
    """Validate a trigger, register its job type, and add it to the app."""
    schedule = CronSchedule.parse(expression, tz)
    schedule.next_after(datetime.now(UTC))  # an expression that never fires fails here
    trigger_name = name or getattr(handler, "__name__", None) or expression
    if trigger_name in app.cron_triggers:
        raise InvalidCronExpression(f"a cron trigger named {trigger_name!r} already exists")
    if isinstance(misfire_grace, bool) or not isinstance(misfire_grace, (int, float)):
        raise InvalidCronExpression(f"misfire_grace must be seconds, got {misfire_grace!r}")
    trigger = CronTrigger(trigger_name, schedule, queue or "default", float(misfire_grace), handler)

    async def run_tick(payload: dict[str, Any]) -> Any:
        event = ScheduledEvent(
            cron=payload["cron"],
            name=payload["name"],
            scheduled_time=datetime.fromisoformat(payload["scheduled_time"]),
        )
        result = handler(event)
        if inspect.isawaitable(result):
            result = await result
        return result

    app.job(trigger.job_type, queue=trigger.queue, max_attempts=max_attempts)(run_tick)
    return trigger


def tick_job(app: App, trigger: CronTrigger, tick: datetime) -> NewMessage:
    """The job that runs one tick."""
    payload = {
        "cron": trigger.schedule.expression,
        "name": trigger.name,
        "scheduled_time": tick.isoformat(),
    }
    return app.prepare_job(trigger.job_type, payload)


async def fire_now(app: App, name: str) -> str:
    """Run a trigger once now (like `/__scheduled?cron=`); return the job id."""
    trigger = app.cron_triggers.get(name)
    if trigger is None:
        known = ", ".join(sorted(app.cron_triggers)) or "none"
        raise InvalidCronExpression(f"no cron trigger named {name!r} (declared: {known})")
    now = datetime.now(UTC)
    job = tick_job(app, trigger, now)
    backend = await app.backend()
    await backend.cron_tick_record(CronTick(name, now.timestamp(), "manual"), job)
    return job.id


class CronScheduler:
    """Enqueues each due tick of every trigger; one per worker, all of them cooperating."""

    name = "cron-scheduler"

    def __init__(self, app: App, backend: Backend) -> None:
        self.app = app
        self.backend = backend
        self._cursor: dict[str, datetime] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running loop, for the worker to watch."""
        return self._task

    def start(self) -> None:
        """Start the loop (once)."""
        if self._task is None and self.app.cron_triggers:
            self._task = asyncio.create_task(self._loop(), name="taskflare-cron-scheduler")

    async def stop(self) -> None:
        """Stop; safe twice and before start."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def catch_up(self, now: datetime) -> None:
        """On start: coalesce ticks missed while no worker ran."""
        for trigger in self.app.cron_triggers.values():
            last = await self.backend.cron_last_tick(trigger.name)
            if last is None:
                self._cursor[trigger.name] = now
                continue
            since = datetime.fromtimestamp(last, UTC)
            missed = trigger.schedule.between(since, now, MAX_MISSED_TICKS)
            self._cursor[trigger.name] = missed[-1] if missed else since
            if not missed:
                continue
            latest = missed[-1]
            if (now - latest).total_seconds() <= trigger.misfire_grace:
                runnable, skipped = [latest], missed[:-1]
            else:
                runnable, skipped = [], missed
            for tick in skipped:
                await self.backend.cron_tick_record(
                    CronTick(trigger.name, tick.timestamp(), "skipped"), None
                )
            for tick in runnable:
                await self._enqueue(trigger, tick)
            if skipped:
                log.warning(
                    "cron %r: %d ticks missed while no worker ran were skipped%s",
                    trigger.name,
                    len(skipped),
                    "; the latest runs now" if runnable else "",
                )

    async def run_once(self, now: datetime) -> None:
        """Enqueue every tick due by `now` that this scheduler has not handled yet."""
        if not self._cursor:
            await self.catch_up(now)
        for trigger in self.app.cron_triggers.values():
            cursor = self._cursor.get(trigger.name, now)
            for tick in trigger.schedule.between(cursor, now, MAX_MISSED_TICKS):
                await self._enqueue(trigger, tick)
                self._cursor[trigger.name] = tick

    async def _enqueue(self, trigger: CronTrigger, tick: datetime) -> None:
        job = tick_job(self.app, trigger, tick)
        won = await self.backend.cron_tick_record(
            CronTick(trigger.name, tick.timestamp(), "enqueued"), job
        )
        if won:
            log.info("cron %r: tick %s enqueued as job %s", trigger.name, tick.isoformat(), job.id)

    def next_due(self) -> datetime | None:
        """The earliest next tick over all triggers."""
        times = [
            t.schedule.next_after(self._cursor.get(t.name, datetime.now(UTC)))
            for t in self.app.cron_triggers.values()
        ]
        return min(times) if times else None

    async def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await self.run_once(datetime.now(UTC))
                failures = 0
                due = self.next_due()
                wait = 1.0 if due is None else (due - datetime.now(UTC)).total_seconds()
                wait = min(max(wait, 0.0), 60.0)
            except Exception as exc:
                failures += 1
                wait = min(0.5 * 2**failures, 30.0)
                log.warning("cron scheduler: %s; retrying in %.1fs", exc, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
