"""Run the `taskflare` command line for a framework (`manage.py taskflare`): the app is
the framework's, so it is added to the command lines of the commands that take one."""

from __future__ import annotations

from typing import Any

import typer

from ..cli import cli
from ..cli.health import WorkerCommand


def with_app(args: list[str], app_spec: str) -> list[str]:
    """`args` with `app_spec` inserted after the command's name when that command takes
    the app as its first argument (`worker`, `serve`, `dev`, `cron list`, ...).

    `["worker", "-c", "4"]` -> `["worker", app_spec, "-c", "4"]`; `["jobs", "list"]`
    and `["--help"]` are returned unchanged."""
    command: Any = typer.main.get_command(cli)
    context = typer.Context(command)
    position = 0
    # Typer's commands are click's (vendored by recent Typer): a group has subcommands.
    while hasattr(command, "get_command") and position < len(args):
        if args[position].startswith("-"):  # a global flag (--debug)
            position += 1
            continue
        found = command.get_command(context, args[position])
        if found is None:
            return args  # an unknown command: taskflare says so
        command, position = found, position + 1
    if hasattr(command, "get_command"):
        return args
    if isinstance(command, WorkerCommand) and args[position : position + 1] == ["health"]:
        position += 1  # `worker health [APP]`: the probe takes the app after its name
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if not arguments or arguments[0].name != "app":
        return args
    return [*args[:position], app_spec, *args[position:]]
