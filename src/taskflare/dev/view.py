"""The live view of `taskflare dev`: queues and jobs, redrawn in place, with log lines
printed above it instead of through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..app import App
from ..backends.url import redact_url
from ..jobs import JobStatus
from ..tables import Column, fit_table
from ..worker import Worker

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOB_STATES = [s.value for s in JobStatus]


def queue_table(worker: Worker, counts: dict[str, dict[str, int]], elapsed: float) -> Table:
    """One row per queue: what is waiting, and what this worker did with it."""
    acked = sum(worker.stats.acked.values())
    rate = acked / elapsed if elapsed > 0 else 0.0
    url = redact_url(str(getattr(worker.app, "database_url", "?")))
    columns = [
        Column("queue", "id"),
        Column("ready", "number"),
        Column("leased", "number"),
        Column("failed", "number"),
        Column("delivered", "number", rank=2),
        Column("acked", "number"),
        Column("retried", "number", rank=1),
        Column("gave up", "number", rank=1),
    ]
    stats = worker.stats
    rows = []
    for name in sorted(set(counts) | set(worker.queues)):
        by_state = counts.get(name, {})
        rows.append(
            [
                escape(name),
                *(str(by_state.get(state, 0)) for state in ("ready", "leased", "failed")),
                *(
                    str(c[name])
                    for c in (stats.delivered, stats.acked, stats.retried, stats.failed)
                ),
            ]
        )
    return fit_table(
        f"taskflare dev: {url} | {elapsed:.0f}s | {rate:.1f} acks/s",
        columns,
        rows,
        caption="ready/leased/failed: stored now; delivered..gave up: this worker so far",
    )


def job_table(counts: list[dict[str, Any]]) -> Table | None:
    """Stored jobs by type (and queue) and status; None when there are none."""
    by_type: dict[tuple[str, str], dict[str, int]] = {}
    for row in counts:
        key = (str(row["type"]), str(row["queue"]))
        by_type.setdefault(key, {})[row["status"]] = int(row["count"])
    if not by_type:
        return None
    columns = [
        Column("job type", "id"),
        Column("queue", "name", rank=2),
        *(Column(state, "number", rank=1 if state == "cancelled" else 0) for state in JOB_STATES),
    ]
    rows = [
        [escape(type_), escape(queue), *(str(states.get(s, 0)) for s in JOB_STATES)]
        for (type_, queue), states in sorted(by_type.items())
    ]
    return fit_table("jobs (stored now)", columns, rows)


class ViewConsole(Console):
    """A `Console` whose prints are one at a time across threads.

    Rich's live view is not thread-safe (Textualize/rich#1530): a print works out how far
    up to move the cursor from the height of the view on screen, then writes. When the
    view is redrawn at another height in between (by another thread), the move is wrong
    by the difference and erases log lines above the view. Here every print, and every
    redraw of a `LiveView` on this console, holds `output_lock` from start to end.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_lock = threading.RLock()

    def print(self, *objects: Any, **kwargs: Any) -> None:
        with self.output_lock:
            super().print(*objects, **kwargs)


class LiveView:
    """A live view redrawn only when `update` is called (no refresh thread of its own),
    each draw holding the console's `output_lock`: the lock is always taken before
    Rich's own, so a log line printed from any thread lands whole above the view."""

    def __init__(self, console: ViewConsole) -> None:
        self.console = console
        self._live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveView:
        with self.console.output_lock:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.console.output_lock:
            self._live.stop()

    def update(self, renderable: RenderableType) -> None:
        """Draw `renderable` in place of the view's previous drawing."""
        with self.console.output_lock:
            self._live.update(renderable, refresh=True)


class ConsoleLogHandler(logging.Handler):
    """Writes log records through the live view's console, so they scroll above the view
    (a handler writing to stderr itself would be drawn over by the next refresh)."""

    def __init__(self, console: Console, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.console = console
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            style = "red" if record.levelno >= logging.ERROR else None
            self.console.print(Text(line, style=style or ""), soft_wrap=True, highlight=False)
        except Exception:  # a log line must never stop the view
            self.handleError(record)


@contextlib.contextmanager
def logs_through(console: Console, level: int = logging.WARNING) -> Iterator[None]:
    """While active, the root logger writes only through `console` (its other stream
    handlers are set aside and put back after)."""
    root = logging.getLogger()
    streams = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    for handler in streams:
        root.removeHandler(handler)
    ours = ConsoleLogHandler(console, level)
    root.addHandler(ours)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(ours)
        for handler in streams:
            root.addHandler(handler)


async def run_view(app: App, worker: Worker, console: ViewConsole, stop: asyncio.Event) -> None:
    """Redraw the queue and job tables twice a second until `stop` is set, then once more:
    the view left on the terminal shows what was stored when the worker stopped."""
    started = time.monotonic()

    async def draw(live: LiveView) -> None:
        counts = {q["name"]: q["depth"] for q in await app.read.queues()}
        parts: list[Table] = [queue_table(worker, counts, time.monotonic() - started)]
        jobs = job_table(await app.read.job_counts())
        if jobs is not None:
            parts.append(jobs)
        live.update(Group(*parts))

    with LiveView(console) as live:
        while not stop.is_set():
            await draw(live)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
        with contextlib.suppress(Exception):  # the database may be what stopped the worker
            await draw(live)
