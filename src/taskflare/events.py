"""Structured log lines about jobs: one JSON object a line on the `taskflare.jobs` logger.

Every line names the event (`enqueued`, `started`, `completed`, `retried`, `failed`,
`cancelled`) and the job (id, type, queue, attempt, correlation id); payloads are never
logged. `failed` and `retried` are warnings, the rest info.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

log = logging.getLogger("taskflare.jobs")

WARNING_EVENTS = frozenset({"failed", "retried"})


def log_event(event: str, **fields: Any) -> None:
    """Log one job event as a JSON line (skipped cheaply when the level is off)."""
    level = logging.WARNING if event in WARNING_EVENTS else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, orjson.dumps({"event": event, **fields}).decode())
