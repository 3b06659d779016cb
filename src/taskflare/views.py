"""JSON views of stored state, shared by the HTTP API and the CLI's `--json` output."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from .app import App
from .backends.base import MessageRecord, QueueCounts
from .encoding import JSON, TEXT
from .messages import timestamp_from_epoch
from .queue import Queue


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with a Z."""
    if epoch is None:
        return None
    return timestamp_from_epoch(epoch).isoformat().replace("+00:00", "Z")


def render_body(record: MessageRecord) -> Any:
    """A stored body for admin JSON: JSON as is, text as a string, bytes base64."""
    if record.content_type == JSON:
        return orjson.loads(record.body)
    if record.content_type == TEXT:
        return bytes(record.body).decode("utf-8", "replace")
    return base64.b64encode(record.body).decode()


def message_dict(record: MessageRecord) -> dict[str, Any]:
    """A stored message for admin JSON."""
    return {
        "id": record.id,
        "queue": record.queue,
        "state": record.state,
        "body": render_body(record),
        "contentType": record.content_type,
        "attempts": record.attempts,
        "createdAt": iso(record.created_at),
        "availableAt": iso(record.available_at),
        "lastError": record.last_error,
        "originQueue": record.origin_queue,
        "originId": record.origin_id,
    }


def queue_dict(app: App, counts: QueueCounts) -> dict[str, Any]:
    """A queue's depth by state, oldest pending age, pause flag and consumer settings."""
    declared = app.queues.get(counts.name)
    settings = orjson.loads(counts.settings_json) if counts.settings_json else None
    if declared is not None:
        settings = orjson.loads(declared.config.to_json())
    age = None
    if counts.oldest_ready_at is not None:
        age = round(max(time.time() - counts.oldest_ready_at, 0.0), 3)
    return {
        "name": counts.name,
        "paused": counts.paused,
        "depth": {s: counts.by_state.get(s, 0) for s in ("ready", "leased", "failed")}
        | {k: v for k, v in counts.by_state.items() if k not in ("ready", "leased", "failed")},
        "oldestPendingAgeSeconds": age,
        "settings": settings,
        "consumer": _consumer_kind(declared),
    }


def _consumer_kind(queue: Queue | None) -> str | None:
    if queue is None:
        return None
    if queue.job_types:
        return "jobs"
    return "worker" if queue.consumer_spec is not None else None
