"""Check what a wrangler file declares the way `App.use_wrangler` declares it: every bad
value, with where the file sets it (`queues.consumers[0].max_batch_size: ...`). One code
path for `use_wrangler` and `taskflare wrangler check`."""

from __future__ import annotations

from ..cron import CronSchedule, InvalidCronExpression
from ..errors import InvalidQueueConfig
from ..wrangler import WranglerConfig
from .queues import QueueConfig


def wrangler_problems(config: WranglerConfig) -> list[str]:
    """One line per value `App.use_wrangler` would refuse: `key path: why`; empty if none."""
    problems: list[str] = []
    for queue in config.queues:
        where = queue.paths.get("queue", queue.name)
        bad = False
        for setting, value in queue.settings.items():
            try:
                QueueConfig.create(queue.name, **{setting: value})
            except InvalidQueueConfig as exc:
                bad = True
                at = queue.paths.get(setting, where)
                # The file gives milliseconds, QueueConfig (and its message) seconds.
                unit = " (in seconds: visibility_timeout_ms / 1000)" if at.endswith("_ms") else ""
                problems.append(f"{at}: {exc}{unit}")
        if not bad:  # the name, and settings that only clash together
            try:
                QueueConfig.create(queue.name, **queue.settings)
            except InvalidQueueConfig as exc:
                problems.append(f"{where}: {exc}")
    for index, expression in enumerate(config.crons):
        try:
            CronSchedule.parse(expression)
        except InvalidCronExpression as exc:
            problems.append(f"{config.crons_at}[{index}]: {exc}")
    return problems
