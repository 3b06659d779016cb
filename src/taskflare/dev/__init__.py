"""`taskflare dev`: a worker, an example producer and a live console summary in one process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..app import App
from ..errors import TaskflareError
from ..loader import describe_raised
from ..raised import is_stop
from ..worker import DEFAULT_CONCURRENCY, Worker, WorkerConfig
from .view import ViewConsole, logs_through, run_view

if TYPE_CHECKING:
    from ..web.security import HttpSecurity

Producer = Callable[[App], Awaitable[Any]]


class ProducerFailed(TaskflareError):
    """The producer given to `taskflare dev` raised; its error was printed and dev stopped."""


@dataclass(frozen=True, slots=True)
class ApiAddress:
    """Where `taskflare dev` serves the HTTP API."""

    host: str = "127.0.0.1"
    port: int = 8000
    security: HttpSecurity | None = None  # default: HttpSecurity.from_env()


async def serve_api(
    app: App, address: ApiAddress, stop: asyncio.Event, listener: socket.socket | None = None
) -> None:
    """Serve the HTTP API on this loop until `stop` is set (signals stay with the worker).

    `listener`: a socket already bound to the address (see `web.listen.bind_listener`).
    """
    import uvicorn

    from ..web import create_api
    from ..web.security import HttpSecurity, uvicorn_options

    security = address.security or HttpSecurity.from_env(bind_host=address.host)
    config = uvicorn.Config(
        create_api(app, security=security),
        host=address.host,
        port=address.port,
        log_level="warning",
        lifespan="off",
        **uvicorn_options(security),
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.ensure_future(server.serve([listener] if listener is not None else None))
    await stop.wait()
    server.should_exit = True
    await serving


def _tell_failure(console: ViewConsole, exc: BaseException, *, debug: bool) -> None:
    """Print what the producer raised above the live view (its traceback with `debug`)."""
    console.print(
        f"error: producer failed: {describe_raised(exc)}",
        style="red",
        markup=False,
        highlight=False,
    )
    if debug:
        console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    else:
        console.print(
            "(run with --debug for the traceback; stopping)", markup=False, highlight=False
        )


def run_dev(
    app: App,
    producer: Producer | None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    duration: float | None = None,
    api: ApiAddress | None = None,
    debug: bool = False,
) -> None:
    """Run until Ctrl-C (or `duration` seconds): worker, cron scheduler, API, live summary.

    The API's port is bound first: when it is taken, `AddressUnavailable` is raised before
    the worker has claimed anything. A producer that raises is loud: its error (one line
    with where it was raised; the traceback too with `debug`) is printed above the live
    view, the worker stops gracefully, and `ProducerFailed` is raised.
    """
    from ..web.listen import bind_listener, bound_port

    listener = bind_listener(api.host, api.port) if api is not None else None
    worker = Worker(app, WorkerConfig(concurrency=concurrency))
    console = ViewConsole()
    if api is not None and listener is not None:
        console.print(f"HTTP API on http://{api.host}:{bound_port(listener)} (docs at /docs)")
        console.print(f"Dashboard on http://{api.host}:{bound_port(listener)}/dashboard/")

    failures: list[BaseException] = []

    async def produce(run_producer: Producer) -> None:
        try:
            await run_producer(app)
        except BaseException as exc:  # `SystemExit` too: the producer's failure, told as one
            if is_stop(exc):
                raise
            failures.append(exc)
            _tell_failure(console, exc, debug=debug)
            worker.stop()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        if duration is not None:
            loop.call_later(duration, worker.stop)
        extras = [asyncio.ensure_future(run_view(app, worker, console, stop))]
        if api is not None:
            extras.append(asyncio.ensure_future(serve_api(app, api, stop, listener)))
        producing = asyncio.ensure_future(produce(producer)) if producer is not None else None
        try:
            await worker.run()
        finally:
            stop.set()
            if producing is not None:
                producing.cancel()
                await asyncio.gather(producing, return_exceptions=True)
            await asyncio.gather(*extras, return_exceptions=True)
            await app.close()

    try:
        with logs_through(console):
            asyncio.run(main())
    finally:
        if listener is not None:
            listener.close()
    if failures:
        raise ProducerFailed(f"producer failed: {describe_raised(failures[0])}")
