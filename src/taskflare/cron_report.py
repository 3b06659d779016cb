"""What `taskflare cron list` shows: each trigger, its next runs and its last outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .app import App


async def cron_rows(app: App, upcoming: int = 3) -> list[dict[str, Any]]:
    """One row per trigger, with field names matching the JSON output."""
    backend = await app.backend()
    now = datetime.now(UTC)
    rows = []
    for trigger in app.cron_triggers.values():
        recent = await backend.cron_recent(trigger.name, 1)
        last: dict[str, Any] | None = None
        if recent:
            tick = recent[0]
            outcome = tick.status
            if tick.job_id:
                job = await app.get_job(tick.job_id)
                outcome = job.status.value if job else "pruned"
            last = {
                "scheduledTime": datetime.fromtimestamp(tick.tick, UTC).isoformat(),
                "outcome": outcome,
                "jobId": tick.job_id,
            }
        rows.append(
            {
                "name": trigger.name,
                "cron": trigger.schedule.expression,
                "tz": trigger.schedule.tz,
                "queue": trigger.queue,
                "next": [t.isoformat() for t in trigger.schedule.upcoming(now, upcoming)],
                "last": last,
            }
        )
    return rows


def print_cron_table(rows: list[dict[str, Any]]) -> None:
    """Render the rows as a table on the terminal."""
    table = Table(title="cron triggers")
    for column in ("name", "cron", "tz", "next runs (UTC)", "last run"):
        table.add_column(column)
    for row in rows:
        last = row["last"]
        table.add_row(
            row["name"],
            row["cron"],
            row["tz"],
            "\n".join(t.replace("+00:00", "Z") for t in row["next"]),
            f"{last['scheduledTime']}: {last['outcome']}" if last else "never",
        )
    Console().print(table)
