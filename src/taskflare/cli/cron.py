"""`taskflare cron`: list triggers and fire one now."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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


@cron_cli.command("trigger")
def cron_trigger(app: AppArg, name: Annotated[str, typer.Argument(help="Trigger name.")]) -> None:
    """Fire a trigger once now (like Cloudflare's /__scheduled?cron=); a worker runs it.

    Example: taskflare cron trigger myapp:app daily-cleanup
    """
    application = load_app(app)
    job_id = run(application, lambda: application.jobs.fire_cron(name))
    typer.echo(f"cron {name!r} fired: job {job_id}")
