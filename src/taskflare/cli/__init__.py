"""The `taskflare` command line: one module per group of commands."""

from __future__ import annotations

import sys
import traceback

import typer

from ..errors import TaskflareError
from . import (  # noqa: F401  (registers the commands)
    cron,
    jobs,
    namespaces,
    observe,
    queues,
    run,
    wrangler,
)
from .common import Flags, cli

__all__ = ["cli", "main"]


def main(args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Entry point of the `taskflare` executable (`args`: the command line after the
    program's name, default `sys.argv[1:]`; `prog_name`: how help and errors name it)."""
    try:
        cli(args=args, prog_name=prog_name)
    except TaskflareError as exc:
        if Flags.debug:
            traceback.print_exc()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
