"""`python manage.py taskflare <command> ...`: the `taskflare` command line, run on the
app built from `settings.TASKFLARE` (see `taskflare --help` for the commands)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from .....backends.url import DATABASE_URL_ENV
from .....cli import main
from ....commandline import with_app
from ...conf import get_app

BOOT = "taskflare.integrations.django.boot:app"
PROG = "python manage.py taskflare"


def run(args: list[str]) -> None:
    """Run `taskflare <args>` with the project's app given to the commands that take
    one, and its database to every other; exits (`SystemExit`) with the command's code."""
    os.environ[DATABASE_URL_ENV] = get_app().database_url  # and to worker subprocesses
    main(with_app(args, BOOT), prog_name=PROG)


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = "Run a taskflare command (worker, serve, dev, jobs, queues, ...) on this project."

    def run_from_argv(self, argv: list[str]) -> None:
        # Every argument after `taskflare`, --help included, is taskflare's.
        run(argv[2:])

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="A taskflare command line.")

    def handle(self, *args: Any, **options: Any) -> None:  # call_command("taskflare", ...)
        run([str(arg) for arg in args])
