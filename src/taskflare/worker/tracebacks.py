"""Tracebacks as a handler's author wants to read them: from their own code down.

An error raised in a handler travels up through taskflare's runner and asyncio (or the
thread pool) before it is recorded; those frames come first in a plain traceback and
say nothing about the bug. They are left out up to the first frame of other code; an
error raised inside taskflare itself keeps every frame.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import traceback
from types import TracebackType

_TASKFLARE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PLUMBING = tuple(
    folder + os.sep
    for folder in (
        os.path.dirname(asyncio.__file__),
        os.path.dirname(concurrent.futures.__file__),
        _TASKFLARE,
    )
)


def _is_plumbing(tb: TracebackType) -> bool:
    return tb.tb_frame.f_code.co_filename.startswith(_PLUMBING)


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of `exc`, starting at the first frame outside taskflare,
    asyncio and the thread pool (all frames when there is none)."""
    tb = exc.__traceback__
    while tb is not None and _is_plumbing(tb):
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))
