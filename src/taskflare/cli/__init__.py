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

try:  # recent Typer vendors click: its commands raise its own copy of click's errors
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover  (a Typer that uses click itself)
    from click.exceptions import (  # type: ignore[no-redef,assignment,unused-ignore]
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

__all__ = ["cli", "main"]


def main(args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Entry point of the `taskflare` executable (`args`: the command line after the
    program's name, default `sys.argv[1:]`; `prog_name`: how help and errors name it)."""
    try:
        code = cli(args=args, prog_name=prog_name, standalone_mode=False)
    except TaskflareError as exc:
        if Flags.debug:
            traceback.print_exc()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except NoArgsIsHelpError as exc:  # `taskflare jobs`: the group's help
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:
        typer.secho(f"error: {usage_error(exc)}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # a question answered no, or Ctrl-D at a prompt
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def usage_error(exc: ClickException) -> str:
    """Click's error (an unknown option, a missing argument, a value out of range) as the
    one line every other failure is, with where to find the command's usage; click's own
    form is four lines (usage, hint, blank line, error)."""
    message = " ".join(exc.format_message().split())
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    if ctx is None:
        return message
    return f"{message} (usage: {ctx.command_path} --help)"
