"""`taskflare cron`: list triggers, fire one now, check an expression."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape

from ..cron import MACROS, CronSchedule, InvalidCronExpression
from ..tables import Column, fit_table, short_time
from .arguments import TextCommand
from .common import AppArg, JsonOpt, cli, existing_app, fail, print_json, run

cron_cli = typer.Typer(
    help="Cron triggers. Example: taskflare cron list myapp:app", no_args_is_help=True
)
cli.add_typer(cron_cli, name="cron")


@cron_cli.command("list", cls=TextCommand)
def cron_list(
    app: AppArg,
    as_json: JsonOpt = False,
) -> None:
    """Show each trigger, its next three run times and its last run's outcome.

    Example: taskflare cron list myapp:app
    """
    application = existing_app(app)
    rows = run(application, application.read.cron)
    if as_json:
        print_json(rows)
    else:
        print_cron_table(rows)


def print_cron_table(rows: list[dict[str, Any]]) -> None:
    """Render the cron rows as a table on the terminal."""
    columns = [
        Column("name", "id"),
        Column("cron", "word"),
        Column("tz", "word", rank=2),
        Column("next (UTC)", "word", rank=1),
        Column("last run", "text", rank=3),
    ]
    cells = []
    for row in rows:
        last = row["last"]
        cells.append(
            [
                escape(row["name"]),
                escape(row["cron"]),
                escape(row["tz"]),
                "\n".join(short_time(t)[5:16] for t in row["next"]),  # 11-30 09:30
                f"{short_time(last['scheduledTime'])}: {last['outcome']}" if last else "never",
            ]
        )
    Console().print(fit_table("cron triggers", columns, cells))


@cron_cli.command("trigger", cls=TextCommand)
def cron_trigger(
    app: AppArg,
    name: Annotated[str, typer.Argument(help="Trigger name, or the expression of one trigger.")],
) -> None:
    """Fire a trigger once now (like Cloudflare's /__scheduled?cron=); a worker runs it.

    Example: taskflare cron trigger myapp:app daily-cleanup
    """
    application = existing_app(app)

    async def work() -> tuple[str, str]:
        trigger = application.registry.cron_trigger(name)
        return trigger.name, await application.jobs.fire_cron(trigger.name)

    fired, job_id = run(application, work)
    typer.echo(f"cron {fired!r} fired: job {job_id}")


WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def weekday_notes(expression: str) -> list[str]:
    """For each weekday number in `expression`'s day-of-week field: what it means here
    (0 or 7 = Sunday, as Unix cron) when Cloudflare's numbering (1 = Sunday) differs."""
    parts = expression.split()
    if len(parts) not in (5, 6):
        return []
    weekdays = re.sub(r"[#/]\d+", "", parts[-1])  # not the week of `1#2`, nor a step
    notes = []
    for number in sorted({int(n) for n in re.findall(r"\d+", weekdays)}):
        if 1 <= number <= 7:
            here, there = WEEKDAY_NAMES[number % 7], WEEKDAY_NAMES[number - 1]
            notes.append(f"day-of-week {number} is {here} here; on Cloudflare it is {there}")
    return notes


@cron_cli.command("check", cls=TextCommand)
def cron_check(
    expression: Annotated[str, typer.Argument(help="A cron expression, e.g. '0 18 * * 5L'.")],
    tz: Annotated[str, typer.Option("--tz", help="Time zone of the schedule.")] = "UTC",
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=100)] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Check a cron expression and print its next runs (in UTC and in --tz).

    Weekday numbers follow Unix cron (0 or 7 = Sunday, 1 = Monday); Cloudflare numbers
    them 1 (Sunday) to 7: the output says when a number means another day there.

    Example: taskflare cron check "0 9 * * 1#2" --tz Europe/Paris
    """
    try:
        schedule = CronSchedule.parse(expression, tz)
        runs = schedule.upcoming(datetime.now(UTC), count)  # or: it never fires
    except InvalidCronExpression as exc:
        raise fail(str(exc), 2) from None
    notes = weekday_notes(MACROS.get(expression.strip().lower(), expression))
    if as_json:
        print_json(
            {
                "expression": expression,
                "tz": tz,
                "next": [iso_utc(t) for t in runs],
                "notes": notes,
            }
        )
        return
    zone = ZoneInfo(tz)
    typer.echo(f"{expression} ({tz}): next {count} runs")
    for moment in runs:
        local = moment.astimezone(zone)
        where = "" if tz == "UTC" else f"  {local:%Y-%m-%d %H:%M:%S %Z} ({tz})"
        typer.echo(f"  {moment:%a %Y-%m-%d %H:%M:%S} UTC{where}")
    for note in notes:
        typer.echo(f"note: {note}")


def iso_utc(moment: datetime) -> str:
    """`2026-11-30T09:00:00Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
