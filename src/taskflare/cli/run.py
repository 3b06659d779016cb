"""The `taskflare` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import orjson
import typer

from .app import App
from .backends import open_backend, redact_url, resolve_database_url
from .errors import TaskflareError
from .loader import load_object
from .worker import Worker, WorkerConfig

cli = typer.Typer(
    name="taskflare",
    help=(
        "Background jobs with Cloudflare Queues semantics.\n\n"
        "Example: taskflare worker myapp:app --concurrency 20"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

AppArg = Annotated[str, typer.Argument(help="The app, as 'module:attr' or 'path/file.py:attr'.")]


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr, one line an event."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and exit with `code`."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def load_app(spec: str) -> App:
    """Import the app or exit with one clear line."""
    try:
        obj = load_object(spec)
    except TaskflareError as exc:
        raise fail(str(exc)) from None
    if not isinstance(obj, App):
        raise fail(f"{spec!r} is a {type(obj).__name__}, not a taskflare App")
    return obj


def run_worker(worker: Worker, *extra: Any) -> None:
    """Run `worker` (plus any extra coroutines) until SIGTERM/SIGINT, then stop gracefully."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        tasks = [asyncio.ensure_future(coro) for coro in extra]
        try:
            await worker.run()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await worker.app.close()

    asyncio.run(main())


@cli.command()
def worker(
    app: AppArg,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Consume only this queue (repeatable)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Batches running at once.")
    ] = 10,
    shutdown_grace: Annotated[
        float, typer.Option(help="Seconds running batches get to finish on SIGTERM.")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a worker that consumes the app's queues.

    Example: taskflare worker myapp:app --queue emails --concurrency 20
    """
    setup_logging(log_level)
    application = load_app(app)
    try:
        config = WorkerConfig(
            queues=tuple(queue or ()), concurrency=concurrency, shutdown_grace=shutdown_grace
        )
        the_worker = Worker(application, config)
        run_worker(the_worker)
    except TaskflareError as exc:
        raise fail(str(exc)) from None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@cli.command()
def serve(
    app: AppArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback address without an API token.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Serve the HTTP API (jobs, queues, pull consumers, webhooks, /metrics) with uvicorn.

    Example: TASKFLARE_API_TOKEN=s3cret taskflare serve myapp:app --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from .web import Tokens, create_api

    setup_logging(log_level)
    application = load_app(app)
    tokens = Tokens.from_env()
    if host not in LOOPBACK_HOSTS and not tokens.enabled and not insecure:
        raise fail(
            f"refusing to listen on {host} without an API token: set TASKFLARE_API_TOKEN "
            "(or pass --insecure)",
            code=2,
        )
    try:
        api = create_api(application, tokens)
    except TaskflareError as exc:
        raise fail(str(exc)) from None
    uvicorn.run(api, host=host, port=port, log_level=log_level.lower(), access_log=False)


@cli.command()
def migrate(
    database_url: Annotated[
        str | None,
        typer.Argument(help="Database URL (default: $TASKFLARE_DATABASE_URL, then SQLite)."),
    ] = None,
) -> None:
    """Apply pending schema migrations (safe to run twice, and from two processes at once).

    Example: taskflare migrate postgresql://postgres@127.0.0.1/app
    """
    url = resolve_database_url(database_url)

    async def run() -> list[int]:
        backend = open_backend(url)
        try:
            return await backend.migrate()
        finally:
            await backend.close()

    try:
        applied = asyncio.run(run())
    except TaskflareError as exc:
        raise fail(str(exc)) from None
    if applied:
        typer.echo(f"{redact_url(url)}: applied migrations {', '.join(map(str, applied))}")
    else:
        typer.echo(f"{redact_url(url)}: schema is up to date")


@cli.command()
def dev(
    app: AppArg,
    producer: Annotated[
        str | None,
        typer.Option(
            help="An 'async def f(app)' to run beside the worker (default: the app "
            "module's 'producer', if any)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 10,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP API port.")] = 8000,
    api: Annotated[bool, typer.Option(help="Serve the HTTP API on 127.0.0.1.")] = True,
) -> None:
    """Run worker, cron scheduler, HTTP API, example producer and a live summary in one process.

    Example: taskflare dev examples/quickstart.py:app
    """
    from .dev import ApiAddress, run_dev

    setup_logging("WARNING")
    application = load_app(app)
    produce = None
    spec = producer or f"{app.partition(':')[0]}:producer"
    try:
        produce = load_object(spec)
    except TaskflareError:
        if producer:
            raise fail(f"cannot load producer {producer!r}") from None
    try:
        run_dev(
            application,
            produce,
            concurrency=concurrency,
            duration=duration,
            api=ApiAddress(port=port) if api else None,
        )
    except TaskflareError as exc:
        raise fail(str(exc)) from None


cron_cli = typer.Typer(
    help="Cron triggers. Example: taskflare cron list myapp:app", no_args_is_help=True
)
cli.add_typer(cron_cli, name="cron")


@cron_cli.command("list")
def cron_list(
    app: AppArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Show each trigger, its next three run times and its last run's outcome.

    Example: taskflare cron list myapp:app
    """
    from .cron_report import cron_rows, print_cron_table

    application = load_app(app)
    try:
        rows = asyncio.run(_closing(application, cron_rows(application)))
    except TaskflareError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        print_cron_table(rows)


@cron_cli.command("trigger")
def cron_trigger(app: AppArg, name: Annotated[str, typer.Argument(help="Trigger name.")]) -> None:
    """Fire a trigger once now (like Cloudflare's /__scheduled?cron=); a worker runs it.

    Example: taskflare cron trigger myapp:app daily-cleanup
    """
    from .scheduler import fire_now

    application = load_app(app)
    try:
        job_id = asyncio.run(_closing(application, fire_now(application, name)))
    except TaskflareError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"cron {name!r} fired: job {job_id}")


async def _closing(app: App, coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    finally:
        await app.close()


def main() -> None:
    """Entry point of the `taskflare` executable."""
    if os.environ.get("TASKFLARE_DEBUG"):
        cli()
        return
    try:
        cli()
    except TaskflareError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
