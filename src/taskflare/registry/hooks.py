"""Hooks around execution: middleware that wraps every handler call, and listeners of
lifecycle events.

Middleware is what Dramatiq's middleware and an ASGI middleware are: an async function
that receives what is about to run and a `call_next` to run it, and returns (or raises)
what the handler did, so it can open a database session per job, time the call or report
its error:

    @app.middleware
    async def session_per_job(call: HandlerCall, call_next: CallNext) -> Any:
        async with Session() as session:
            with bind(session):
                return await call_next()

Listeners observe what happened, as Celery's signals do: `enqueued`, `started`,
`succeeded`, `retried`, `failed`, `dead_lettered` and `cancelled`, for jobs and for
messages (one event per job or message), each fired once the change is stored:

    @app.on("failed")
    def report(event: LifecycleEvent) -> None:
        sentry_sdk.capture_message(f"{event.type} {event.id}: {event.error}")

A listener's exception is logged and ignored; an async listener runs as its own task, so
a slow one never holds back the worker. A middleware's exception is the handler call's
exception (the job is retried or failed by its usual rules): no hook can lose a job.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidHook
from ..raised import is_stop
from .tracing import Tracing

log = logging.getLogger("taskflare.hooks")

EVENTS = (
    "enqueued",
    "started",
    "succeeded",
    "retried",
    "failed",
    "dead_lettered",
    "cancelled",
)

CallNext = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HandlerCall:
    """One handler call as a middleware sees it.

    `kind`: "job" (one job: `type`, `job_id`, `attempt`, `payload` the handler gets) or
    "batch" (a message batch: `message_ids`, `attempt` the highest of its messages,
    `payload` the `MessageBatch`). `queue`: the queue it came from.
    """

    kind: Literal["job", "batch"]
    queue: str
    attempt: int
    payload: Any
    type: str | None = None
    job_id: str | None = None
    correlation_id: str | None = None
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """Something that happened to one job or message, once it is stored.

    `name`: one of `EVENTS`. `kind`: "job" or "message". `id`: the job's or message's
    id. `attempt`: the delivery it concerns (0 for `enqueued`). `error`: for `retried`,
    `failed` and `dead_lettered`. `delay_seconds`: for `retried`. `dead_letter_queue`: for
    `dead_lettered`. `duration`: seconds the handler ran, for outcomes.
    """

    name: str
    kind: Literal["job", "message"]
    queue: str
    id: str
    attempt: int
    type: str | None = None
    correlation_id: str | None = None
    error: str | None = None
    delay_seconds: float | None = None
    dead_letter_queue: str | None = None
    duration: float | None = None


Middleware = Callable[[HandlerCall, CallNext], Awaitable[Any]]
Listener = Callable[[LifecycleEvent], Any]


class Hooks:
    """The middleware and listeners of one app, in the order they were added."""

    def __init__(self) -> None:
        self.middleware: list[Middleware] = []
        self.listeners: dict[str, list[Listener]] = {}
        # Spans around sends and deliveries, once `taskflare.otel` instruments the app.
        self.tracing: Tracing | None = _every_app.tracing
        self._tasks: set[asyncio.Task[Any]] = set()
        _every_app.hooks.add(self)

    def add_middleware(self, fn: Middleware) -> Middleware:
        """Wrap every handler call in `fn` (the first added is the outermost).

        Raises `InvalidHook` unless `fn` is an async function of two arguments."""
        if not inspect.iscoroutinefunction(fn):
            raise InvalidHook(
                f"middleware must be an async function (call, call_next) -> result; got {fn!r}"
            )
        self.middleware.append(fn)
        return fn

    def add_listener(self, event: str, fn: Listener) -> Listener:
        """Call `fn(event)` after each `event` (sync, or async: run as a task).

        Raises `InvalidHook` for an unknown event name or a non-callable."""
        check_event(event)
        if not callable(fn):
            raise InvalidHook(f"a listener must be callable; got {fn!r}")
        self.listeners.setdefault(event, []).append(fn)
        return fn

    def wants(self, event: str) -> bool:
        """Whether anyone listens to `event` (check before building the event)."""
        return event in self.listeners

    async def call(self, call: HandlerCall, handler: CallNext) -> Any:
        """Run `handler` inside every middleware."""
        chain = handler
        for middleware in reversed(self.middleware):
            chain = _bind(middleware, call, chain)
        return await chain()

    def emit(self, event: LifecycleEvent) -> None:
        """Tell the listeners of `event.name`; their errors are logged, never raised."""
        for listener in self.listeners.get(event.name, ()):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(_guarded(result))
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
            except BaseException as exc:  # `SystemExit` too: a listener never stops a worker
                if is_stop(exc):
                    raise
                log.exception("a %r listener raised (the %s goes on)", event.name, event.kind)

    def enqueued(self, kind: Literal["job", "message"], messages: Sequence[Any]) -> None:
        """`enqueued` for each of `messages` just stored (objects with `id`, `queue`,
        `type` and `correlation_id`, as `NewMessage` has); nothing when no one listens."""
        if "enqueued" in self.listeners:
            self.emit_all(
                [
                    LifecycleEvent(
                        "enqueued",
                        kind,
                        m.queue,
                        m.id,
                        0,
                        type=m.type,
                        correlation_id=m.correlation_id,
                    )
                    for m in messages
                ]
            )

    def emit_all(self, events: Sequence[LifecycleEvent]) -> None:
        """`emit` each of `events`."""
        for event in events:
            self.emit(event)

    async def drain(self, limit: float | None = None, *, cancel_grace: float = 5.0) -> None:
        """Wait for the async listeners still running (at shutdown): at most `limit`
        seconds (None: no limit), then cancel them and wait up to `cancel_grace` seconds
        more; listeners that ignore their cancellation are left behind, with a warning."""
        pending = {t for t in self._tasks if not t.done()}
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=limit)
        if not pending:
            return
        log.warning(
            "stopping %d async lifecycle listeners still running after %ss", len(pending), limit
        )
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=cancel_grace)
        if stuck:
            log.warning(
                "%d async lifecycle listeners ignored their cancellation for %gs; leaving "
                "them behind",
                len(stuck),
                cancel_grace,
            )
            self._tasks -= stuck

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an async lifecycle listener raised: %r", task.exception())


async def _guarded(listening: Awaitable[Any]) -> Any:
    """An async listener's run, whose `SystemExit` or `KeyboardInterrupt` is logged like
    any error: raised out of its task, asyncio would stop the whole process with it."""
    try:
        return await listening
    except BaseException as exc:
        if is_stop(exc):
            raise
        log.error("an async lifecycle listener raised: %r", exc)
        return None


class _EveryApp:
    """The hooks of every app of this process, for a tracer installed on all of them."""

    def __init__(self) -> None:
        self.hooks: weakref.WeakSet[Hooks] = weakref.WeakSet()
        self.tracing: Tracing | None = None


_every_app = _EveryApp()


def set_tracing_everywhere(tracing: Tracing | None) -> None:
    """Install `tracing` on every app of this process, present and future (None: remove
    the one installed this way; an app's own tracer, set on its hooks, is left alone)."""
    previous = _every_app.tracing
    _every_app.tracing = tracing
    for hooks in list(_every_app.hooks):
        if hooks.tracing is None or hooks.tracing is previous:
            hooks.tracing = tracing


def check_event(event: str) -> None:
    """Raise `InvalidHook` unless `event` is one of `EVENTS`."""
    if event not in EVENTS:
        raise InvalidHook(f"no lifecycle event {event!r}; the events are {', '.join(EVENTS)}")


def _bind(middleware: Middleware, call: HandlerCall, inner: CallNext) -> CallNext:
    async def next_() -> Any:
        return await middleware(call, inner)

    return next_
