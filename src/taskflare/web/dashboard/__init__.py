"""The web dashboard: see and repair queues, jobs, cron triggers and workers in a browser."""

from .site import create_dashboard

__all__ = ["create_dashboard"]
