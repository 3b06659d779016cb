"""What user code raised: that code's failure, or the worker stopping it.

User code (a job handler, a consumer, a middleware, a listener, a `wait_until` task, a
`dev` producer) may raise any `BaseException`: a library calling `sys.exit()` or
argparse given bad input raises `SystemExit`, code may raise `KeyboardInterrupt` or
`asyncio.CancelledError` itself. Left to propagate, asyncio re-raises `SystemExit` and
`KeyboardInterrupt` out of the event loop, so the whole process exits at once, and a
`CancelledError` looks like the worker's own shutdown. Each is that code's failure
instead. Two are not, and must propagate: `GeneratorExit` (a coroutine being closed)
and a `CancelledError` while the current task has a cancel request pending (the
worker's shutdown, a requested job cancel, a timeout). The worker's own stop comes
through signal handlers on its loop (`worker.stop`), never as an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def is_stop(exc: BaseException, task: asyncio.Task[Any] | None = None) -> bool:
    """Whether `exc`, caught around user code in the current task, is that task being
    stopped (re-raise it) rather than the code's failure (record or log it).

    `task`: the task running the code, when the caller knows it. A `GeneratorExit`
    caught while that very task runs was raised by the code itself (a coroutine is
    closed only while it is suspended, never while its task runs it): a failure like
    any other. It used to propagate, killing the job's runner and leaving the job
    `processing` with no history."""
    if isinstance(exc, GeneratorExit):
        return task is None or _current_task() is not task
    if not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a thread's own code raised it
        return False
    return task is None or task.cancelling() > 0


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def message_of(exc: BaseException) -> str:
    """`str(exc)`, or `<exception str() failed>` (the traceback module's words) when the
    exception's own `__str__` raises: user code's exception classes may be broken, and
    recording the failure must not fail in turn (the job stayed `processing`)."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def describe(exc: BaseException) -> str:
    """`exc` as one line of error text: its type and message (`SystemExit: 3`), the type
    alone when it has no message (`KeyboardInterrupt`); a `CancelledError` user code
    raised of its own says so, lest it read as a cancel or a shutdown."""
    name, text = type(exc).__name__, message_of(exc)
    if isinstance(exc, asyncio.CancelledError) and not text:
        text = "raised by the code itself (no cancel was requested; the worker was not stopping)"
    return f"{name}: {text}" if text else name


class RaisedInThread(Exception):
    """Carries out of a worker thread what its code raised that asyncio cannot take:
    `StopIteration` cannot be set on a future (asyncio logs a `TypeError` and the
    awaiting job or batch waited for ever, `processing`), and a `GeneratorExit` thrown
    into the awaiting coroutine closes it instead of reaching its `except`."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(describe(original))
        self.original = original


def call_carrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a worker thread, its `StopIteration` or `GeneratorExit`
    carried as `RaisedInThread` (`raised_by` gives it back)."""
    try:
        return fn(*args, **kwargs)
    except (StopIteration, GeneratorExit) as exc:
        raise RaisedInThread(exc) from exc


def raised_by(exc: BaseException) -> BaseException:
    """What user code raised: `exc`, or what a `RaisedInThread` carries."""
    return exc.original if isinstance(exc, RaisedInThread) else exc
