"""`taskflare cron`: list triggers and fire one now."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..tables import Column, fit_table, short_time
from .common import AppArg, JsonOpt, cli, load_app, print_json, run

cron_cli = typer.Typer(
    help="Cron triggers. Example: taskflare cron list myapp:app", no_args_is_help=True
)
cli.add_typer(cron_cli, name="cron")


@cron_cli.command("list")
def cron_list(
    app: AppArg,
    as_json: JsonOpt = False,
) -> None:
    """Show each trigger, its next three run times and its last run's outcome.

    Example: taskflare cron list myapp:app
    """
    application = load_app(app)
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


@cron_cli.command("trigger")
def cron_trigger(app: AppArg, name: Annotated[str, typer.Argument(help="Trigger name.")]) -> None:
    """Fire a trigger once now (like Cloudflare's /__scheduled?cron=); a worker runs it.

    Example: taskflare cron trigger myapp:app daily-cleanup
    """
    application = load_app(app)
    job_id = run(application, lambda: application.jobs.fire_cron(name))
    typer.echo(f"cron {name!r} fired: job {job_id}")
