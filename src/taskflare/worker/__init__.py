"""The worker runtime: fetch, execute, settle, and keep leases alive."""

from .runtime import Worker, WorkerConfig, WorkerStats

__all__ = ["Worker", "WorkerConfig", "WorkerStats"]
