"""Commands that run code: worker (and its supervisor), serve, dev, migrate."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from ..app import App
from ..backends.opener import open_backend
from ..backends.url import database_shown, redact_url, resolve_database_url
from ..errors import AppLoadError, InvalidWorkerConfig, TaskflareError
from ..loader import load_object
from ..worker import DEFAULT_CONCURRENCY, Worker, WorkerConfig
from .arguments import TextCommand
from .common import AppArg, Flags, cli, fail, load_app, load_failure, said, setup_logging
from .health import WorkerCommand


def run_worker(app: App, worker: Worker) -> None:
    """Run `worker` until SIGTERM/SIGINT, then stop gracefully and exit.

    Every outcome is written before this returns. A plain-`def` handler still running in
    its thread after the grace period cannot be interrupted; the process then exits
    without waiting for it (its job was already recorded as retried or failed).
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        finally:
            await app.close()

    asyncio.run(main())
    if any(t.name.startswith("taskflare-handler") for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@cli.command(cls=WorkerCommand)
def worker(
    app: AppArg,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Consume only this queue (repeatable)."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            help="Handlers running at once: jobs, and message batches (all queues together).",
        ),
    ] = DEFAULT_CONCURRENCY,
    shutdown_grace: Annotated[
        float, typer.Option(help="Seconds running batches get to finish on SIGTERM.")
    ] = 30.0,
    processes: Annotated[
        int,
        typer.Option(min=1, max=256, help="Run this many worker processes under a supervisor."),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a worker that consumes the app's queues (or N of them, supervised).

    Example: taskflare worker myapp:app --queue emails --concurrency 20 --processes 4

    Probe: taskflare worker health myapp:app (exit 1 when the heartbeat is stale;
    taskflare worker health --help).
    """
    setup_logging(log_level)
    try:  # checked here, not in each of N children
        config = WorkerConfig(
            queues=tuple(queue or ()), concurrency=concurrency, shutdown_grace=shutdown_grace
        )
    except InvalidWorkerConfig as exc:
        raise fail(said(exc), 2) from None
    application = load_app(app)
    if processes > 1:
        from ..supervisor import Supervisor, SupervisorConfig

        try:
            application.registry.runnable(tuple(queue or ()))  # fail here, not in N children
        except TaskflareError as exc:
            raise fail(said(exc)) from None
        args = [app, "--concurrency", str(concurrency), "--shutdown-grace", str(shutdown_grace)]
        args += ["--log-level", log_level]
        for name in queue or ():
            args += ["--queue", name]
        supervisor = Supervisor(args, SupervisorConfig(processes, stop_timeout=shutdown_grace + 30))
        raise typer.Exit(asyncio.run(supervisor.run()))
    try:
        the_worker = Worker(application, config)
        run_worker(application, the_worker)
    except TaskflareError as exc:
        raise fail(said(exc)) from None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

AllowedHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        help="Also answer requests whose Host is this name or name:port (repeatable; "
        "'*' turns the check off). Adds to $TASKFLARE_ALLOWED_HOSTS (comma-separated).",
    ),
]
AllowedOriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-origin",
        help="Let pages from this scheme://host[:port] send POST/PUT/PATCH/DELETE "
        "(repeatable; '*' for any). Adds to $TASKFLARE_ALLOWED_ORIGINS (comma-separated).",
    ),
]
PublicDocsOpt = Annotated[
    bool,
    typer.Option(
        "--public-docs",
        help="Serve /docs, /redoc and /openapi.json without a token "
        "(also $TASKFLARE_PUBLIC_DOCS=1).",
    ),
]


@cli.command(cls=TextCommand)
def serve(
    app: AppArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8000,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback address without an API token.")
    ] = False,
    allowed_host: AllowedHostOpt = None,
    allowed_origin: AllowedOriginOpt = None,
    public_docs: PublicDocsOpt = False,
    # Defaults (None here) are security.py's: the web stack is imported only to serve.
    timeout_header: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Seconds a client has to send its request line and headers [10]."
        ),
    ] = None,
    timeout_body: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds a client has to send a request body [30]."),
    ] = None,
    limit_concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Connections at once; a request over it is answered 503 [1000]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Serve the HTTP API (jobs, queues, pull consumers, webhooks, /metrics) and the web
    dashboard (/dashboard/) with uvicorn.

    Example: TASKFLARE_API_TOKEN=s3cret taskflare serve myapp:app --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from ..web import Tokens, create_api
    from ..web.security import (
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_HEADER_TIMEOUT,
        DEFAULT_LIMIT_CONCURRENCY,
        HttpSecurity,
        uvicorn_options,
    )

    setup_logging(log_level)
    application = load_app(app)
    try:
        tokens = Tokens.from_env()
    except TaskflareError as exc:
        raise fail(str(exc), 2) from None
    if host not in LOOPBACK_HOSTS and not tokens.enabled and not insecure:
        raise fail(
            f"refusing to listen on {host} without an API token: set TASKFLARE_API_TOKEN "
            "(or pass --insecure)",
            code=2,
        )
    if host not in LOOPBACK_HOSTS:
        for name, length in tokens.short():
            logging.getLogger("taskflare.http").warning(
                "%s is %d characters long: on %s anyone who reaches the port can try to "
                "guess it; use a long random value (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')",
                name,
                length,
                host,
            )
    try:
        security = HttpSecurity.from_env(
            bind_host=host,
            allowed_hosts=allowed_host or (),
            allowed_origins=allowed_origin or (),
            public_docs=public_docs,
            header_timeout=timeout_header or DEFAULT_HEADER_TIMEOUT,
            body_timeout=timeout_body or DEFAULT_BODY_TIMEOUT,
            limit_concurrency=limit_concurrency or DEFAULT_LIMIT_CONCURRENCY,
        )
        api = create_api(application, tokens, security)
    except (TaskflareError, ValueError) as exc:
        raise fail(said(exc)) from None
    from ..web.listen import bind_listener, bound_port

    try:
        listener = bind_listener(host, port)
    except TaskflareError as exc:
        raise fail(said(exc)) from None
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("taskflare.http").info(
        "serving %s on %s:%d: database %s; %s; docs %s; dashboard at http://%s:%d/dashboard/",
        app,
        host,
        bound_port(listener),
        database_shown(application.database_url),
        "token required" if tokens.enabled else "no token (open to this machine)",
        "public" if security.public_docs or not tokens.enabled else "need a token",
        shown,
        bound_port(listener),
    )
    config = uvicorn.Config(
        api,
        host=host,
        port=bound_port(listener),
        log_level=log_level.lower(),
        access_log=False,
        **uvicorn_options(security),
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    if not server.started:  # uvicorn logged why (the app's startup failed)
        raise typer.Exit(3)


@cli.command(cls=TextCommand)
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
        raise fail(said(exc)) from None
    if applied:
        typer.echo(f"{redact_url(url)}: applied migrations {', '.join(map(str, applied))}")
    else:
        typer.echo(f"{redact_url(url)}: schema is up to date")


@cli.command(cls=TextCommand)
def dev(
    app: AppArg,
    producer: Annotated[
        str | None,
        typer.Option(
            help="An 'async def f(app)' to run beside the worker (default: the app "
            "module's 'producer', if any)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = DEFAULT_CONCURRENCY,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="HTTP API port (0: any free port).")
    ] = 8000,
    api: Annotated[bool, typer.Option(help="Serve the HTTP API on 127.0.0.1.")] = True,
    allowed_host: AllowedHostOpt = None,
    allowed_origin: AllowedOriginOpt = None,
    public_docs: PublicDocsOpt = False,
) -> None:
    """Run worker, cron scheduler, HTTP API, example producer and a live summary in one process.

    Example: taskflare dev examples/quickstart.py:app
    """
    from ..dev import ApiAddress, ProducerFailed, run_dev
    from ..web.security import HttpSecurity

    setup_logging("WARNING")
    application = load_app(app)
    if duration is not None and not 0 < duration < math.inf:
        raise fail(f"--duration must be > 0 seconds, got {duration:g}", 2)
    produce = None
    spec = producer or f"{app.partition(':')[0]}:producer"
    try:
        produce = load_object(spec)
    except AppLoadError as exc:
        if Flags.debug and producer:
            raise
        if producer or exc.__cause__ is not None:  # the default one failed, not missing
            raise fail(f"cannot load producer {spec!r}: {load_failure(exc)}") from None
    if produce is not None and not callable(produce):
        raise fail(f"producer {spec!r} is a {type(produce).__name__}, not a function")
    try:
        security = HttpSecurity.from_env(
            bind_host=ApiAddress().host,
            allowed_hosts=allowed_host or (),
            allowed_origins=allowed_origin or (),
            public_docs=public_docs,
        )
        run_dev(
            application,
            produce,
            concurrency=concurrency,
            duration=duration,
            api=ApiAddress(port=port, security=security) if api else None,
            debug=Flags.debug,
        )
    except ProducerFailed:
        raise typer.Exit(1) from None  # its error is printed above the live view
    except (TaskflareError, ValueError) as exc:
        raise fail(said(exc)) from None
