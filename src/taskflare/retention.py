"""How long finished work is kept (the worker's `Pruner` service applies it)."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """Completed jobs are kept `completed` seconds (7 days), failed and cancelled ones
    (and failed queue messages) `failed` seconds (30 days); `None` keeps them forever."""

    completed: float | None = 7 * DAY
    failed: float | None = 30 * DAY
    interval: float = 60.0
    chunk_size: int = 1000
    max_chunks_per_run: int = 20
