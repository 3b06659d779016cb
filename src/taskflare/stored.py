"""`StoredMessage`: a message as it sits in the database, for inspection and admin tools."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .backends.base import MessageRecord
from .encoding import decode_body
from .messages import timestamp_from_epoch


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored message: its state (`ready`, `leased`, `failed`, ...), body and history."""

    id: str
    queue: str
    state: str
    body: Any
    content_type: str
    attempts: int
    created_at: datetime
    available_at: datetime
    last_error: str | None
    origin_queue: str | None
    origin_id: str | None

    @classmethod
    def from_record(cls, record: MessageRecord) -> StoredMessage:
        """Decode a backend record (a body that cannot be decoded is shown as raw bytes)."""
        try:
            body = decode_body(record.body, record.content_type)
        except Exception:
            body = bytes(record.body)
        return cls(
            id=record.id,
            queue=record.queue,
            state=record.state,
            body=body,
            content_type=record.content_type,
            attempts=record.attempts,
            created_at=timestamp_from_epoch(record.created_at),
            available_at=timestamp_from_epoch(record.available_at),
            last_error=record.last_error,
            origin_queue=record.origin_queue,
            origin_id=record.origin_id,
        )
