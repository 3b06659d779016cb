"""The worker runtime: fetch, run, decide, settle, and keep leases alive."""

from .runtime import Worker, WorkerConfig, WorkerHost
from .stats import WorkerStats

__all__ = ["Worker", "WorkerConfig", "WorkerHost", "WorkerStats"]
