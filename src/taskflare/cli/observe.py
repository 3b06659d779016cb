"""`taskflare stats [--watch]` and `taskflare tail`: watch queues and jobs from a terminal."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape

from ..backends.base import JobEvent, JobEventCursor
from ..jobs import JobStatus
from ..tables import Column, fit_table
from .arguments import TextCommand
from .common import (
    DatabaseOpt,
    JsonLinesOpt,
    WatchJsonOpt,
    cli,
    fail,
    print_json,
    run,
    state_app,
)
from .queues import queue_table


def stats_view(document: dict[str, Any]) -> Group:
    """The `stats` document as tables for the terminal."""
    per_second = {q["name"]: q["processedPerSecond"] for q in document["queues"]}
    queues = queue_table(
        document["queues"], f"queues ({document['workers']} workers alive)", per_second
    )
    columns = [
        Column("", "name"),
        Column("total", "number"),
        *(Column(s.value, "number") for s in JobStatus),
        Column("completion", "number", rank=2),
        Column("failure", "number", rank=1),
    ]
    rows: list[list[str]] = []

    def row(label: str, counts: dict[str, Any]) -> list[str]:
        values = [str(counts[s.value]) for s in JobStatus]
        return [
            label,
            str(counts["total"]),
            *values,
            counts["completionRate"],
            counts["failureRate"],
        ]

    totals = document["jobs"]
    rows.append(row("all", totals))
    for name, counts in totals["byQueue"].items():
        rows.append(row(f"queue {escape(name)}", counts))
    for name, counts in totals["byType"].items():
        rows.append(row(f"type {escape(name)}", counts))
    jobs = fit_table("jobs", columns, rows)
    stamp = datetime.now(UTC).strftime("%H:%M:%S UTC")
    limits = document.get("limits") or []
    if not limits:
        return Group(queues, jobs, f"updated {stamp}")
    return Group(queues, jobs, limits_table(limits), f"updated {stamp}")


def limits_table(limits: list[dict[str, Any]]) -> Any:
    """Flow limits: what each allows, keys in use, running, waiting, recent start rate."""
    columns = [
        Column("limit", "name"),
        Column("allows", "name"),
        Column("keys", "number"),
        Column("running", "number"),
        Column("waiting", "number"),
        Column("started/s", "number"),
        Column("held until", "name", rank=1),
    ]
    rows = []
    for row in limits:
        scope = f"type {row['jobType']}" if row["jobType"] else f"queue {row['queue']}"
        if row["kind"] == "rate":
            allows = f"{row['rate']} burst {row['burst']:g}" + (" per key" if row["perKey"] else "")
        else:
            allows = f"{row['max']} at once" + (" per key" if row["perKey"] else "")
        rows.append(
            [
                escape(scope),
                allows,
                str(row["keys"]),
                str(row["running"]),
                str(row["waiting"]),
                f"{row['startedPerSecond']:g}",
                row["heldUntil"] or "-",
            ]
        )
    return fit_table("limits", columns, rows)


@cli.command(cls=TextCommand)
def stats(
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 1.0,
    database_url: DatabaseOpt = None,
    as_json: WatchJsonOpt = False,
) -> None:
    """Counts by queue and status, processing rates, oldest pending age.

    Each worker measures its own processing rate over its report interval (5 s) and
    stores it with its report; the rates shown are their sum over live workers, so they
    are right whenever they are read. With `--watch --json`, one JSON document a line
    each interval.
    Example: taskflare stats --watch
    """
    app = state_app(database_url)

    if not watch:
        document = run(app, app.read.stats)
        if as_json:
            print_json(document)
        else:
            Console().print(stats_view(document))
        return

    async def follow() -> None:
        with Live(stats_view(await app.read.stats()), refresh_per_second=4, screen=False) as live:
            while True:
                await asyncio.sleep(interval)
                live.update(stats_view(await app.read.stats()))

    async def follow_json() -> None:
        """`--watch --json`: one compact document a line, every interval (JSON Lines)."""
        while True:
            typer.echo(orjson.dumps(await app.read.stats()).decode())
            await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        run(app, follow_json if as_json else follow)


def event_line(event: JobEvent) -> str:
    """One line per event, like `wrangler tail`."""
    stamp = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%S.%f")[:-3]
    parts = [stamp, f"{event.kind:<9}", event.type or "?", event.job_id, f"queue={event.queue}"]
    if event.kind != "enqueued":
        parts.append(f"attempt={event.attempt}")
    if event.duration is not None:
        parts.append(f"{event.duration * 1000:.1f}ms")
    if event.error:
        parts.append(f"error={event.error.splitlines()[-1][:120]}")
    return "  ".join(parts)


# The kinds of event `tail` shows: an enqueue, a start, and every outcome an attempt can
# record in a job's history (`lost`: its worker died; `snoozed`: its handler snoozed it).
EVENT_KINDS = (
    "enqueued",
    "started",
    "completed",
    "retried",
    "failed",
    "cancelled",
    "lost",
    "snoozed",
)


def event_matches(event: JobEvent, queue: str | None, type: str | None, status: str | None) -> bool:
    """Whether an event passes the `tail` filters."""
    if queue and event.queue != queue:
        return False
    if type and event.type != type:
        return False
    return not status or event.kind == status


@cli.command(cls=TextCommand)
def tail(
    queue: Annotated[str | None, typer.Option(help="Only jobs on this queue.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only events of this kind: enqueued, started, completed, retried, "
            "failed, cancelled, lost or snoozed."
        ),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 0.25,
    database_url: DatabaseOpt = None,
    as_json: JsonLinesOpt = False,
) -> None:
    """Follow job events live, one line each, until Ctrl-C (like `wrangler tail`).

    Example: taskflare tail --type send-email --status failed
    """
    if status is not None and status.lower() not in EVENT_KINDS:
        # Otherwise it matches no event: the command would wait for ever, showing nothing.
        raise fail(f"--status must be one of {', '.join(EVENT_KINDS)}, got {status!r}", 2)
    status = None if status is None else status.lower()
    app = state_app(database_url)

    async def follow() -> None:
        cursor = await app.read.job_event_start()
        starts = StartsShown(cursor.enqueued_after)
        while True:
            events = await app.read.job_events(cursor, 500)
            for event in events:
                cursor = _advance(cursor, event)
                for shown in starts.complete(event):
                    if not event_matches(shown, queue, type, status):
                        continue
                    if as_json:
                        typer.echo(orjson.dumps(_event_dict(shown)).decode())
                    else:
                        typer.echo(event_line(shown))
            if not events:
                await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        run(app, follow)


class StartsShown:
    """Makes sure every attempt `tail` reports has its `started` line.

    The feed sees a start only while the job is running; an attempt that starts and
    finishes between two polls would show only its outcome. Its `started` line is then
    made from the attempt's start time (outcome time minus duration), just before it.
    """

    def __init__(self, since: float) -> None:
        self.since = since
        self._shown: set[tuple[str, int]] = set()

    def complete(self, event: JobEvent) -> list[JobEvent]:
        """`event`, preceded by its attempt's missed `started` event if there is one."""
        key = (event.job_id, event.attempt)
        if event.kind == "started":
            self._shown.add(key)
            return [event]
        if event.kind == "enqueued" or event.duration is None:
            return [event]
        if key in self._shown:
            self._shown.discard(key)
            return [event]
        start = event.at - event.duration
        if start < self.since:  # it started before this tail did
            return [event]
        missed = JobEvent("started", start, event.job_id, event.type, event.queue, event.attempt)
        return [missed, event]


def _advance(cursor: JobEventCursor, event: JobEvent) -> JobEventCursor:
    if event.kind == "enqueued":
        return JobEventCursor(
            max(cursor.enqueued_after, event.at), cursor.started_after, cursor.attempt_after
        )
    if event.kind == "started":
        return JobEventCursor(
            cursor.enqueued_after, max(cursor.started_after, event.at), cursor.attempt_after
        )
    return JobEventCursor(
        cursor.enqueued_after, cursor.started_after, max(cursor.attempt_after, event.seq)
    )


def _event_dict(event: JobEvent) -> dict[str, Any]:
    return {
        "event": event.kind,
        "at": datetime.fromtimestamp(event.at, UTC).isoformat().replace("+00:00", "Z"),
        "jobId": event.job_id,
        "type": event.type,
        "queue": event.queue,
        "attempt": event.attempt,
        "durationMs": None if event.duration is None else round(event.duration * 1000, 3),
        "error": event.error,
    }
