"""What every `taskflare` command shares: the Typer app, options, errors, output."""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import Progress

from ..app import App
from ..backends.url import hide_credentials, redact_url, resolve_database_url
from ..errors import DatabaseNotFound, TaskflareError, UnknownQueue
from ..loader import load_object

T = TypeVar("T")

cli = typer.Typer(
    name="taskflare",
    help=(
        "Background jobs with Cloudflare Queues semantics: queues, jobs, cron, HTTP API.\n\n"
        "Example: taskflare worker myapp:app --concurrency 20"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Flags:
    """Global options set by the top-level callback."""

    debug = False
    # How to name the right database, said when a command finds none (`DatabaseNotFound`).
    no_database_hint = ""


AppArg = Annotated[str, typer.Argument(help="The app, as 'module:attr' or 'path/file.py:attr'.")]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="TASKFLARE_DATABASE_URL",
        help="Database URL (default: $TASKFLARE_DATABASE_URL, then sqlite:///taskflare.db).",
        show_envvar=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
# The commands that follow until Ctrl-C print JSON Lines: one compact document a line.
JsonLinesOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document a line, JSON Lines (for scripts)."),
]
WatchJsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document (for scripts); with --watch, one a line (JSON Lines).",
    ),
]


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr, one line an event; a `--log-level` not in `LOG_LEVELS` (any case)
    is a usage error (exit 2)."""
    if level.upper() not in LOG_LEVELS:
        raise fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {level!r}", 2)
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# The Python argument names an error may name, as the command line spells them.
CLI_NAMES = {
    "run_at": "--run-at",
    "delay_seconds": "--delay",
    "max_attempts": "--max-attempts",
    "priority": "--priority",
    "idempotency_key": "--idempotency-key",
    "correlation_id": "--correlation-id",
    "content_type": "--content-type",
    "rate_key": "--rate-key",
    "concurrency_key": "--concurrency-key",
    "shutdown_grace": "--shutdown-grace",
    "cancel_grace": "--cancel-grace",
    "concurrency": "--concurrency",
    "queues": "--queue",
    "max_age": "--max-age",
    "cursor": "--cursor",
    "limit": "--limit",
    "status": "--status",
}


def said(exc: BaseException) -> str:
    """An error's message naming options as the command line does (`--delay`)."""
    return exc.message_for(CLI_NAMES) if isinstance(exc, TaskflareError) else str(exc)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def load_failure(exc: TaskflareError) -> str:
    """The one line for an app or object that did not load: what the user's code raised
    and where, and how to see the whole traceback."""
    hint = " (run with --debug for the traceback)" if exc.__cause__ is not None else ""
    return f"{exc}{hint}"


def load_app(spec: str) -> App:
    """Import the app or exit with one clear line."""
    try:
        obj = load_object(spec)
    except TaskflareError as exc:
        if Flags.debug:
            raise
        raise fail(load_failure(exc)) from None
    if not isinstance(obj, App):
        raise fail(f"{spec!r} is a {type(obj).__name__}, not a taskflare App")
    return obj


class _PoolErrors(logging.Handler):
    """Keeps the connection pool's latest complaint instead of printing it.

    Without logging set up, Python prints each of the pool's retries ("error connecting
    in 'pool': ...", two lines each) on stderr; a command that only reads or changes
    state then fails with one line that ends with the last of them.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        first_line = (record.getMessage().splitlines() or [""])[0]
        self.last = hide_credentials(first_line.split("': ", 1)[-1]) or None


POOL_ERRORS = _PoolErrors()


# What a command that found no database says to do, after naming what it looked for.
POINT_AT_DATABASE = (
    "point at your app's database with --database-url URL or TASKFLARE_DATABASE_URL "
    "(taskflare worker, serve, dev and migrate create a new one)"
)
POINT_APP_AT_DATABASE = (
    "the app's URL (App(url), default TASKFLARE_DATABASE_URL) must name your database "
    "(taskflare worker, serve, dev and migrate create a new one)"
)


def state_app(database_url: str | None) -> App:
    """An App with no declarations, for commands that only read or change stored state.

    It never creates a database: a missing SQLite file or PostgreSQL schema (a command
    run in another folder, a mistyped path) is `DatabaseNotFound`, which `run` reports
    with how to name the right one, instead of a new empty database that holds what the
    command wrote and that no worker reads.
    """
    Flags.no_database_hint = POINT_AT_DATABASE
    return App(resolve_database_url(database_url), create_database=False)


def existing_app(spec: str) -> App:
    """The app `spec` names, for a command that uses its database but is not one of
    those that create it (`worker`, `serve`, `dev`, `migrate`): see `state_app`."""
    app = load_app(spec)
    app.create_database = False
    Flags.no_database_hint = POINT_APP_AT_DATABASE
    return app


def run(app: App, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` on a fresh loop, close the app, and turn errors into one clear line."""

    async def main() -> T:
        try:
            return await work()
        finally:
            await app.close()

    pool_log = logging.getLogger("psycopg.pool")
    if not Flags.debug and POOL_ERRORS not in pool_log.handlers:
        pool_log.addHandler(POOL_ERRORS)
        pool_log.propagate = False
    try:
        return asyncio.run(main())
    except typer.Exit:
        raise
    except TaskflareError as exc:
        if Flags.debug:
            traceback.print_exc()
        reason = f" (last connection error: {POOL_ERRORS.last})" if POOL_ERRORS.last else ""
        if isinstance(exc, UnknownQueue) and " in " not in str(exc):  # which database
            reason = f" in {redact_url(app.database_url)}{reason}"
        if isinstance(exc, DatabaseNotFound) and Flags.no_database_hint:
            reason = f"{reason}; {Flags.no_database_hint}"
        raise fail(f"{said(exc)}{reason}") from None
    except (KeyboardInterrupt, typer.Abort):
        raise
    except Exception as exc:
        if Flags.debug:
            raise
        raise fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)") from None


def progress_bar(*, transient: bool = False) -> Progress:
    """A progress bar for long work, drawn on stderr and only on a terminal: stdout keeps
    only the command's result (an id, a summary line), so `$(taskflare ...)` and pipes
    read that alone."""
    console = Console(stderr=True)
    return Progress(console=console, transient=transient, disable=not console.is_terminal)


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def _print_version(value: bool) -> None:
    """Print `taskflare <version>` and exit, before any command runs (an eager option)."""
    if value:
        from .. import __version__

        typer.echo(f"taskflare {__version__}")
        raise typer.Exit()


@cli.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Background jobs with Cloudflare Queues semantics: queues, jobs, cron, HTTP API.

    Example: taskflare worker myapp:app --concurrency 20
    """
    Flags.debug = debug
