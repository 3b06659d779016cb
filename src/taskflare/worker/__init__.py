"""The worker runtime: fetch, run, decide, settle, and keep leases alive."""

from .batch_runner import DEFAULT_CANCEL_GRACE
from .runtime import DEFAULT_CONCURRENCY, Worker, WorkerConfig, WorkerHost
from .stats import WorkerStats

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_CONCURRENCY",
    "Worker",
    "WorkerConfig",
    "WorkerHost",
    "WorkerStats",
]
