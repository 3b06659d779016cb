"""Structured log lines about jobs: one JSON object a line on the `taskflare.jobs` logger.

Every line names the event (`enqueued`, `started`, `completed`, `retried`, `failed`,
`lost`, `cancelled`) and the job (id, type, queue, attempt, correlation id); payloads are
never logged. What goes wrong is a WARNING (`failed`, `retried`, `lost`), a cancel is
INFO, and the events every successful job has (`enqueued`, `started`, `completed`) are
DEBUG, so a busy worker at the default INFO level writes nothing per successful job
(as Sidekiq and Oban keep per-job lines out of their default level).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

log = logging.getLogger("taskflare.jobs")

LEVELS = {
    "failed": logging.WARNING,
    "retried": logging.WARNING,
    "lost": logging.WARNING,
    "cancelled": logging.INFO,
    "snoozed": logging.INFO,
    "enqueued": logging.DEBUG,
    "started": logging.DEBUG,
    "completed": logging.DEBUG,
}


def wanted(event: str) -> bool:
    """Whether a line for `event` would be written (check before building its fields)."""
    return log.isEnabledFor(LEVELS.get(event, logging.INFO))


def log_event(event: str, **fields: Any) -> None:
    """Log one job event as a JSON line (skipped cheaply when its level is off)."""
    level = LEVELS.get(event, logging.INFO)
    if log.isEnabledFor(level):
        log.log(level, orjson.dumps({"event": event, **fields}).decode())
