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

from ..app import App
from ..backends.url import hide_credentials, redact_url, resolve_database_url
from ..errors import TaskflareError, UnknownQueue
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


def state_app(database_url: str | None, *, reading: bool = False) -> App:
    """An App with no declarations, for commands that only read or change stored state.

    `reading`: the command only reads, so it never creates a database (a mistyped SQLite
    path or PostgreSQL schema is an error, not a new empty database).
    """
    return App(resolve_database_url(database_url), create_database=not reading)


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
        raise fail(f"{said(exc)}{reason}") from None
    except (KeyboardInterrupt, typer.Abort):
        raise
    except Exception as exc:
        if Flags.debug:
            raise
        raise fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)") from None


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
