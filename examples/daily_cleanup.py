"""A nightly cleanup as a cron trigger: expired sessions and 30-day-old activity logs are
deleted every night at midnight UTC.

Every worker runs the scheduler and each tick runs once however many workers there are.
The tick is a job (type `cron:daily-cleanup`), so a failure is retried and each run has a
status and history. `event.scheduled_time` is the midnight the run is for, so a late run
(a retry, or a catch-up after downtime) still cleans relative to its own day.

Run it:

    taskflare worker examples/daily_cleanup.py:app
    taskflare cron list examples/daily_cleanup.py:app
    taskflare cron trigger examples/daily_cleanup.py:app daily-cleanup   # run it now
"""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import timedelta

from taskflare import App, ScheduledEvent

log = logging.getLogger("cleanup")

app = App()  # $TASKFLARE_DATABASE_URL, else sqlite:///taskflare.db
APP_DB = os.environ.get("APP_DB", "app.db")
KEEP_ACTIVITY = timedelta(days=30)


def create_tables(db: sqlite3.Connection) -> None:
    """The app's own tables (times are epoch seconds)."""
    db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, expires_at REAL)")
    db.execute("CREATE TABLE IF NOT EXISTS activity_logs (id INTEGER PRIMARY KEY, created_at REAL)")


@app.cron("0 0 * * *", name="daily-cleanup", misfire_grace=6 * 3600)
def daily_cleanup(event: ScheduledEvent) -> dict[str, int]:
    """Delete what expired before the tick. Idempotent: running a tick twice is harmless."""
    now = event.scheduled_time.timestamp()
    with sqlite3.connect(APP_DB, timeout=30) as db:
        create_tables(db)
        sessions = db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,)).rowcount
        logs = db.execute(
            "DELETE FROM activity_logs WHERE created_at < ?",
            (now - KEEP_ACTIVITY.total_seconds(),),
        ).rowcount
    log.info("daily cleanup for %s: %d sessions, %d logs", event.scheduled_time, sessions, logs)
    return {"sessions": sessions, "activity_logs": logs}
