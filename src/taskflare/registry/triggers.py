"""Cron trigger declarations: `@app.cron(...)`, and the job each tick runs as.

Each tick becomes a job of type `cron:<name>` on the trigger's queue, so it has retries,
status and history; the worker's cron scheduler decides when a tick is due.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..cron import CronSchedule, InvalidCronExpression
from ..errors import InvalidMessage
from ..numeric import as_float
from ..text import check_name

CRON_JOB_PREFIX = "cron:"
DEFAULT_CRON_QUEUE = "default"

CronHandler = Callable[["ScheduledEvent"], Any]


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """What a cron handler receives: the expression, the trigger's name and the tick's time."""

    cron: str
    name: str
    scheduled_time: datetime


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """A declared trigger: its schedule, the queue its ticks run on, and its misfire
    grace (seconds after a tick within which a late tick still runs)."""

    name: str
    schedule: CronSchedule
    queue: str
    misfire_grace: float
    handler: CronHandler
    max_attempts: int = 3

    @classmethod
    def create(
        cls,
        expression: str,
        handler: CronHandler,
        *,
        name: str | None,
        tz: str,
        queue: str | None,
        misfire_grace: float,
        max_attempts: int,
    ) -> CronTrigger:
        """Validate a trigger; `InvalidCronExpression` names what is wrong."""
        schedule = CronSchedule.parse(expression, tz)
        schedule.next_after(datetime.now(UTC))  # an expression that never fires fails here
        if isinstance(misfire_grace, bool) or not isinstance(misfire_grace, (int, float)):
            raise InvalidCronExpression(f"misfire_grace must be seconds, got {misfire_grace!r}")
        misfire_grace = as_float(misfire_grace)  # an int past a float's range: no limit
        if math.isnan(misfire_grace):  # NaN compares false to every lateness: no tick would run
            raise InvalidCronExpression("misfire_grace must be seconds, got nan")
        if misfire_grace < 0:
            raise InvalidCronExpression(f"misfire_grace must be >= 0 seconds, got {misfire_grace}")
        trigger_name = name or getattr(handler, "__name__", None) or expression
        try:  # the name is in its job type, `cron:<name>`, a key like any job type's
            check_name(trigger_name, f"cron name {trigger_name!r}", max_length=195)
        except InvalidMessage as exc:
            raise InvalidCronExpression(str(exc)) from None
        return cls(
            trigger_name,
            schedule,
            queue or DEFAULT_CRON_QUEUE,
            float(misfire_grace),
            handler,
            max_attempts,
        )

    @property
    def job_type(self) -> str:
        """The job type its ticks run as."""
        return CRON_JOB_PREFIX + self.name

    def tick_payload(self, tick: datetime) -> dict[str, Any]:
        """The payload of the job that runs `tick`."""
        return {
            "cron": self.schedule.expression,
            "name": self.name,
            "scheduled_time": tick.isoformat(),
        }

    def tick_handler(self) -> Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]:
        """The job handler that runs a tick: it calls the trigger's handler with its event."""
        handler = self.handler

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

        run_tick.__qualname__ = f"cron tick of {self.name}"
        return run_tick
