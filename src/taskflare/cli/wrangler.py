"""`taskflare wrangler check`: what a Cloudflare wrangler file declares for taskflare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import TaskflareError
from ..registry.wrangler_check import wrangler_problems
from ..wrangler import load_wrangler
from .arguments import TextCommand
from .common import JsonOpt, cli, fail, print_json, said

wrangler_cli = typer.Typer(
    help="Cloudflare wrangler.toml / wrangler.jsonc files. "
    "Example: taskflare wrangler check wrangler.jsonc --env production",
    no_args_is_help=True,
)
cli.add_typer(wrangler_cli, name="wrangler")


@wrangler_cli.command("check", cls=TextCommand)
def wrangler_check(
    file: Annotated[Path, typer.Argument(help="wrangler.toml, wrangler.json or wrangler.jsonc")],
    env: Annotated[
        str | None, typer.Option("--env", help="Read this environment (env.NAME).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the queues, consumer settings and cron triggers `App.use_wrangler` would
    declare from FILE, and every key it does not support, with why. Each value
    `use_wrangler` would refuse is an `error:` line with its key path (exit 1).

    Example: taskflare wrangler check wrangler.jsonc --env production
    """
    try:
        config = load_wrangler(file, env)
    except TaskflareError as exc:
        raise fail(said(exc)) from None
    problems = wrangler_problems(config)  # what `App.use_wrangler` would refuse
    if as_json:
        print_json(config.to_dict() | {"errors": problems})
        if problems:
            raise typer.Exit(1)
        return
    typer.echo(f"{file}{f' (env {env})' if env else ''}:")
    for queue in config.queues:
        settings = ", ".join(f"{k}={v!r}" for k, v in queue.settings.items())
        consumer = {"worker": "consumer", "http_pull": "HTTP pull consumer"}.get(
            queue.consumer or "", "no consumer (produced to)"
        )
        binding = f", binding {queue.binding}" if queue.binding else ""
        typer.echo(
            f"  queue {queue.name}: {consumer}{binding}{'; ' + settings if settings else ''}"
        )
    for expression in config.crons:
        typer.echo(f"  cron {expression}")
    if not config.queues and not config.crons:
        typer.echo("  no queues and no cron triggers")
    for line in config.unsupported:
        typer.echo(f"  not used: {line}")
    for problem in problems:
        typer.secho(f"error: {file}: {problem}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
