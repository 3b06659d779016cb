"""A private event loop on a daemon thread, so synchronous code can call the async API.

The sync twins (`send_sync`, ...) submit their coroutine here and block on the result.
That works from plain scripts, from Django/Flask views, and from the thread pool of a
running event loop alike, because the caller's own loop (if any) is never touched.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("taskflare.portal")

# Seconds the exit hook gives `at_exit` (closing connection pools) before giving up.
EXIT_TIMEOUT = 5.0


class Portal:
    """Runs coroutines on its own loop thread and hands back their results."""

    def __init__(
        self,
        name: str = "taskflare-portal",
        at_exit: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """`at_exit`: run on the loop when the interpreter exits with the loop still
        running (a script that never called `close_sync`, say after an error), so that
        what it holds (a connection pool's tasks) is closed rather than destroyed
        pending; bounded by `EXIT_TIMEOUT` seconds."""
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._at_exit = at_exit
        ref = weakref.ref(self)

        def exit_hook() -> None:  # holds the portal weakly: an unused App can be freed
            portal = ref()
            if portal is not None:
                portal._close_at_exit()

        self._exit_hook = exit_hook

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                        _finish(loop)
                    finally:
                        asyncio.set_event_loop(None)
                        loop.close()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
                atexit.register(self._exit_hook)
            return self._loop

    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's loop, started if needed (for work that outlives the caller)."""
        return self._ensure_started()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the portal loop and return its result (re-raising its error)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync taskflare call cannot run on the portal's own thread")
        loop = self._ensure_started()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _close_at_exit(self) -> None:
        loop = self._loop
        if loop is not None and self._at_exit is not None:
            with contextlib.suppress(Exception):
                future = asyncio.run_coroutine_threadsafe(self._at_exit(), loop)
                future.result(timeout=EXIT_TIMEOUT)
        self.stop()

    def stop(self) -> None:
        """Stop the loop thread, ending what still runs on it as `asyncio.run` does (each
        task cancelled and waited for, up to `EXIT_TIMEOUT` seconds); safe to call twice
        and before start. A later call starts a new loop."""
        atexit.unregister(self._exit_hook)
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # closed already
                loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join(timeout=2 * EXIT_TIMEOUT)


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    """On a stopped loop: cancel the tasks left and wait for them (at most `EXIT_TIMEOUT`
    seconds), then finish async generators and the default executor, as `asyncio.run`
    does when its coroutine returns. Tasks left pending on a closed loop would be
    destroyed later by the garbage collector, with "Event loop is closed" errors."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=EXIT_TIMEOUT))
        for task in pending:
            log.warning("task %s did not end when cancelled; leaving it", task.get_name())
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("task %s ended with %r", task.get_name(), task.exception())

    async def finish() -> None:
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()

    with contextlib.suppress(TimeoutError):
        loop.run_until_complete(asyncio.wait_for(finish(), EXIT_TIMEOUT))
