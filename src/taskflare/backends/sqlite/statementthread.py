"""The one thread that runs a SQLite connection's statements, called from any event loop.

`asyncio.run_in_executor` over a one-worker `ThreadPoolExecutor` did the same with two
futures per call (a `concurrent.futures.Future`, with its condition variable, chained to
an asyncio one) and a work item; a call here is one asyncio future and one queue entry,
and the result is set on the caller's loop by `call_soon_threadsafe`. That halved the
cost of the hop, which every statement (an enqueue included) pays.

Calls run one at a time in the order submitted. A call whose caller was cancelled before
it started does not run (as a queued executor call did not). Calls submitted before
`stop` still run; so do those pending at interpreter exit (the thread is drained then,
as `ThreadPoolExecutor` drains its workers).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]

_live: weakref.WeakSet[StatementThread] = weakref.WeakSet()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the caller's loop: deliver the outcome unless the caller gave up meanwhile."""
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class StatementThread:
    """Runs submitted callables on one thread (started on first use), in order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn`; the future (of the running loop) gets its result or exception.

        Raises `RuntimeError` when the thread was stopped."""
        if self._thread is None:
            self._start()
        if self._stopped:
            raise RuntimeError("the statement thread is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                thread.start()
                self._thread = thread
                _live.add(self)

    def stop(self, *, wait: bool = False) -> None:
        """Let the thread finish what was submitted, then end (no new calls)."""
        self._stopped = True
        self._queue.put(None)
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        get = self._queue.get
        while True:
            call = get()
            if call is None:
                return
            loop, future, fn = call
            del call
            if future.cancelled():
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # delivered to the caller, as an executor does
                error = exc
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed
                loop.call_soon_threadsafe(_settle, future, result, error)
            del loop, future, fn, result, error


@atexit.register
def _drain_at_exit() -> None:
    for thread in list(_live):
        thread.stop(wait=True)
