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


def is_stop(exc: BaseException) -> bool:
    """Whether `exc`, caught around user code in the current task, is that task being
    stopped (re-raise it) rather than the code's failure (record or log it)."""
    if isinstance(exc, GeneratorExit):
        return True
    if not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a thread's own code raised it
        return False
    return task is None or task.cancelling() > 0


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
