"""`wait_until`: best-effort work that runs after the caller moves on, and its ASGI integration.

Like Cloudflare's `ctx.waitUntil()`: the work runs concurrently in this process; its
errors are logged with a traceback and never raised to the caller; on shutdown the
worker (or server) waits for what is still pending up to a limit, then logs and cancels
what it abandons. Nothing is stored, so a crash loses it: when the work must happen, pass
`durable=True` (the function must be a registered job) and it becomes a job instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any

from .errors import InvalidConfig
from .numeric import as_float
from .raised import call_carrying, is_stop

log = logging.getLogger("taskflare.background")

DEFAULT_DRAIN_LIMIT = 30.0


async def _guarded(awaitable: Awaitable[Any], label: str) -> None:
    try:
        await awaitable
    except BaseException as exc:
        # `SystemExit` or `KeyboardInterrupt` too: raised out of its task, asyncio would
        # stop the whole process (worker or web server) with it.
        if is_stop(exc):
            raise
        log.exception("wait_until task %s failed", label)


def _label(awaitable: object) -> str:
    name = getattr(awaitable, "__qualname__", None)  # a coroutine's is its function's
    if isinstance(name, str) and name:
        return name
    code = getattr(awaitable, "cr_code", None)
    return getattr(code, "co_qualname", None) or type(awaitable).__name__


def _is_async_callable(fn: Any) -> bool:
    """An `async def` function, a partial of one, or an object whose `__call__` is one."""
    call = None
    if not inspect.isroutine(fn):
        owner = next((k for k in type(fn).__mro__ if "__call__" in k.__dict__), None)
        call = owner.__dict__["__call__"] if owner is not None else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class BackgroundTasks:
    """The pending `wait_until` tasks of one app, on whichever loop they were started."""

    def __init__(self, drain_limit: float = DEFAULT_DRAIN_LIMIT) -> None:
        if (
            isinstance(drain_limit, bool)
            or not isinstance(drain_limit, (int, float))
            or not 0 <= as_float(drain_limit) < math.inf
        ):
            raise InvalidConfig(
                f"wait_until_limit must be a finite number of seconds >= 0, got {drain_limit!r}"
            )
        self.drain_limit = float(drain_limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def start(self, awaitable: Awaitable[Any], loop: asyncio.AbstractEventLoop) -> None:
        """Start `awaitable` on `loop` (thread-safe) and keep track of it."""

        def create() -> None:
            label = _label(awaitable)
            coro: Coroutine[Any, Any, None] = _guarded(awaitable, label)
            task = loop.create_task(coro, name=label)
            with self._lock:
                self._tasks.add(task)
            task.add_done_callback(self._discard)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            create()
        else:
            loop.call_soon_threadsafe(create)

    def _discard(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.discard(task)

    @property
    def pending(self) -> int:
        """How many tasks have not finished."""
        with self._lock:
            return len(self._tasks)

    async def drain(self, limit: float | None = None) -> int:
        """Wait up to `limit` seconds for this loop's tasks, including those they start
        meanwhile (a title generator that then invalidates a cache); cancel the rest;
        return how many were cancelled."""
        loop = asyncio.get_running_loop()
        mine = self._pending_on(loop)
        if not mine:
            return 0
        timeout = self.drain_limit if limit is None else limit
        log.info("waiting up to %ss for %d wait_until tasks", timeout, len(mine))
        deadline = loop.time() + timeout
        started = set(mine)
        while mine:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(mine, timeout=remaining)
            mine = self._pending_on(loop)
            started |= mine
        for task in mine:
            log.warning("abandoning wait_until task %s after %ss", task.get_name(), timeout)
            task.cancel()
        if mine:
            log.warning(
                "abandoned %d of %d wait_until tasks still running after %ss",
                len(mine),
                len(started),
                timeout,
            )
            await asyncio.gather(*mine, return_exceptions=True)
        return len(mine)

    def _pending_on(self, loop: asyncio.AbstractEventLoop) -> set[asyncio.Task[None]]:
        with self._lock:
            return {t for t in self._tasks if t.get_loop() is loop and not t.done()}


def to_awaitable(
    fn_or_awaitable: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[Any]:
    """`wait_until(coro)` or `wait_until(fn, *args)`: the awaitable to run."""
    if inspect.isawaitable(fn_or_awaitable):
        if args or kwargs:
            raise TypeError("wait_until(awaitable) takes no extra arguments")
        return fn_or_awaitable
    if not callable(fn_or_awaitable):
        raise TypeError(f"wait_until needs an awaitable or a function, got {fn_or_awaitable!r}")
    if _is_async_callable(fn_or_awaitable):
        result: Awaitable[Any] = fn_or_awaitable(*args, **kwargs)
        return result

    async def call_in_thread() -> Any:
        outcome = await asyncio.to_thread(call_carrying, fn_or_awaitable, *args, **kwargs)
        if inspect.isawaitable(outcome):
            # `lambda: send(x)` and other plain functions that return a coroutine: its
            # work is the point, so it runs here (it used to be dropped unawaited).
            outcome = await outcome
        return outcome

    coro = call_in_thread()
    name = getattr(fn_or_awaitable, "__qualname__", None) or type(fn_or_awaitable).__name__
    coro.__qualname__ = str(name)  # type: ignore[attr-defined]  # logs name the caller's function
    return coro
