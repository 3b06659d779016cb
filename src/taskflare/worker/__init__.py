"""The worker runtime: fetch, run, decide, settle, and keep leases alive."""

from .runtime import DEFAULT_CONCURRENCY, Worker, WorkerConfig, WorkerHost
from .stats import WorkerStats

__all__ = ["DEFAULT_CONCURRENCY", "Worker", "WorkerConfig", "WorkerHost", "WorkerStats"]
