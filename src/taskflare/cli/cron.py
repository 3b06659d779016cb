"""`taskflare cron`: list triggers and fire one now."""

from __future__ import annotations

from typing import Annotated

import typer

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
    from ..cron_report import cron_rows, print_cron_table

    application = load_app(app)
    rows = run(application, lambda: cron_rows(application))
    if as_json:
        print_json(rows)
    else:
        print_cron_table(rows)


@cron_cli.command("trigger")
def cron_trigger(app: AppArg, name: Annotated[str, typer.Argument(help="Trigger name.")]) -> None:
    """Fire a trigger once now (like Cloudflare's /__scheduled?cron=); a worker runs it.

    Example: taskflare cron trigger myapp:app daily-cleanup
    """
    from ..scheduler import fire_now

    application = load_app(app)
    job_id = run(application, lambda: fire_now(application, name))
    typer.echo(f"cron {name!r} fired: job {job_id}")
