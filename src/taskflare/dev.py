"""`taskflare dev`: a worker, an example producer and a live console summary in one process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .app import App
from .backends.url import redact_url
from .worker import DEFAULT_CONCURRENCY, Worker, WorkerConfig

if TYPE_CHECKING:
    from .web.security import HttpSecurity

Producer = Callable[[App], Awaitable[Any]]


def summary_table(worker: Worker, counts: dict[str, dict[str, int]], elapsed: float) -> Table:
    """One row per queue: what is waiting, and what this worker did with it."""
    acked = sum(worker.stats.acked.values())
    rate = acked / elapsed if elapsed > 0 else 0.0
    table = Table(
        title=f"taskflare dev: {redact_url(app_url(worker))} | {elapsed:.0f}s | {rate:.1f} acks/s",
        caption="ready/leased/failed: stored now; delivered..gave up: this worker so far",
    )
    for column in (
        "queue",
        "ready",
        "leased",
        "failed",
        "delivered",
        "acked",
        "retried",
        "gave up",
    ):
        table.add_column(column, justify="left" if column == "queue" else "right")
    stats = worker.stats
    for name in sorted(set(counts) | set(worker.queues)):
        by_state = counts.get(name, {})
        table.add_row(
            name,
            *(str(by_state.get(state, 0)) for state in ("ready", "leased", "failed")),
            *(str(c[name]) for c in (stats.delivered, stats.acked, stats.retried, stats.failed)),
        )
    return table


def app_url(worker: Worker) -> str:
    """The database URL of the worker's app."""
    return str(getattr(worker.app, "database_url", "?"))


async def _summary(app: App, worker: Worker, console: Console, stop: asyncio.Event) -> None:
    started = time.monotonic()
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            counts = {q["name"]: q["depth"] for q in await app.read.queues()}
            live.update(summary_table(worker, counts, time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


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

    from .web import create_api
    from .web.security import HttpSecurity, uvicorn_options

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


def run_dev(
    app: App,
    producer: Producer | None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    duration: float | None = None,
    api: ApiAddress | None = None,
) -> None:
    """Run until Ctrl-C (or `duration` seconds): worker, cron scheduler, API, live summary.

    The API's port is bound first: when it is taken, `AddressUnavailable` is raised before
    the worker has claimed anything.
    """
    from .web.listen import bind_listener, bound_port

    listener = bind_listener(api.host, api.port) if api is not None else None
    worker = Worker(app, WorkerConfig(concurrency=concurrency))
    console = Console()
    if api is not None and listener is not None:
        console.print(f"HTTP API on http://{api.host}:{bound_port(listener)} (docs at /docs)")
        console.print(f"Dashboard on http://{api.host}:{bound_port(listener)}/dashboard/")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        if duration is not None:
            loop.call_later(duration, worker.stop)
        extras = [asyncio.ensure_future(_summary(app, worker, console, stop))]
        if api is not None:
            extras.append(asyncio.ensure_future(serve_api(app, api, stop, listener)))
        producing = asyncio.ensure_future(producer(app)) if producer is not None else None
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
        asyncio.run(main())
    finally:
        if listener is not None:
            listener.close()
