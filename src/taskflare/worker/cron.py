"""The cron scheduler: enqueues each due tick of every trigger; one per worker, all cooperating.

A unique row per trigger and tick decides which scheduler enqueues it, so each tick runs
once however many workers there are. Ticks found late are handled by one misfire rule,
whether the scheduler just started or fell behind while running (a suspended laptop, a
frozen process, a clock jump): the latest late tick runs if it is within the trigger's
`misfire_grace` seconds, every other late tick is recorded as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from ..backends.base import Backend, CronNameParams, CronTick, CronTickRecordParams, NewMessage
from ..registry import Registry
from ..registry.triggers import CronTrigger

log = logging.getLogger("taskflare.cron")

MAX_MISSED_TICKS = 10_000
# Skipped ticks recorded one row each; beyond this, only counted in the log line.
MAX_SKIPPED_ROWS = 100
# A tick this late is a misfire, even for a trigger with no grace: the scheduler's own
# wake-up jitter is not a misfire.
ON_TIME = 1.0


class JobPreparer(Protocol):
    """What the scheduler needs to build a tick's job (the app's job client)."""

    def prepare_job(self, type: str, payload: Any) -> NewMessage:
        """Validate and build the job (nothing stored)."""
        ...


class CronScheduler:
    """Enqueues each due tick of every trigger."""

    name = "cron-scheduler"

    def __init__(self, registry: Registry, backend: Backend, jobs: JobPreparer) -> None:
        self.registry = registry
        self.backend = backend
        self.jobs = jobs
        self._cursor: dict[str, datetime] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running loop, for the worker to watch."""
        return self._task

    def start(self) -> None:
        """Start the loop (once; only when there are triggers)."""
        if self._task is None and self.registry.cron_triggers:
            self._task = asyncio.create_task(self._loop(), name="taskflare-cron-scheduler")

    async def stop(self) -> None:
        """Stop; safe twice and before start."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def run_once(self, now: datetime) -> None:
        """Enqueue (or skip, by the misfire rule) every tick due by `now` not handled yet."""
        for trigger in self.registry.cron_triggers.values():
            cursor = self._cursor.get(trigger.name)
            if cursor is None:
                last = await self.backend.cron_last_tick(CronNameParams(trigger.name))
                cursor = now if last is None else datetime.fromtimestamp(last, UTC)
            due = trigger.schedule.between(cursor, now, MAX_MISSED_TICKS)
            if due:
                await self._handle(trigger, due, now)
                self._cursor[trigger.name] = due[-1]
            else:
                self._cursor[trigger.name] = cursor

    async def _handle(self, trigger: CronTrigger, due: list[datetime], now: datetime) -> None:
        latest = due[-1]
        late = (now - latest).total_seconds()
        runs = late <= max(trigger.misfire_grace, ON_TIME)
        skipped = due[:-1] if runs else due
        for tick in skipped[-MAX_SKIPPED_ROWS:]:
            await self.backend.cron_tick_record(
                CronTickRecordParams(CronTick(trigger.name, tick.timestamp(), "skipped"))
            )
        if skipped:
            log.warning(
                "cron %r: %d ticks missed (the scheduler was not running or fell behind) "
                "were skipped%s",
                trigger.name,
                len(skipped),
                "; the latest runs now" if runs else "",
            )
        if runs:
            await self._enqueue(trigger, latest)

    async def _enqueue(self, trigger: CronTrigger, tick: datetime) -> None:
        job = self.jobs.prepare_job(trigger.job_type, trigger.tick_payload(tick))
        won = await self.backend.cron_tick_record(
            CronTickRecordParams(CronTick(trigger.name, tick.timestamp(), "enqueued"), job)
        )
        if won:
            log.info("cron %r: tick %s enqueued as job %s", trigger.name, tick.isoformat(), job.id)

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest next tick over all triggers."""
        times = [
            t.schedule.next_after(self._cursor.get(t.name, now))
            for t in self.registry.cron_triggers.values()
        ]
        return min(times) if times else None

    async def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await self.run_once(datetime.now(UTC))
                failures = 0
                due = self.next_due(datetime.now(UTC))
                wait = 1.0 if due is None else (due - datetime.now(UTC)).total_seconds()
                wait = min(max(wait, 0.0), 60.0)
            except Exception as exc:
                failures += 1
                wait = min(0.5 * 2**failures, 30.0)
                log.warning("cron scheduler: %s; retrying in %.1fs", exc, wait)
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see ChangeSignal.wait
                async with asyncio.timeout(wait):
                    await self._stop.wait()
