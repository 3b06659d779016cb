"""How long finished work is kept (the worker's `Pruner` service applies it)."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished rows are kept, and how the pruner deletes them.

    `completed` [s]: completed jobs (default 7 days); `failed` [s]: failed and cancelled
    jobs and failed queue messages (default 30 days); `None` keeps them for ever.
    `interval` [s] between pruner passes; `chunk_size` rows deleted per transaction;
    `max_chunks_per_run` chunks per pass at most.
    """

    completed: float | None = 7 * DAY
    failed: float | None = 30 * DAY
    interval: float = 60.0
    chunk_size: int = 1000
    max_chunks_per_run: int = 20
