"""The narrow handle producers hold instead of the whole `App`.

`Queue`, `Job` and the job client need two things: the backend (opened on first use)
and a way to run a coroutine from synchronous code (the `*_sync` twins). `App`
provides both; so can a test double.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from .backends.base import Backend

T = TypeVar("T")


class Storage(Protocol):
    """The backend, and the bridge from blocking code to the async API."""

    async def backend(self) -> Backend:
        """The app's backend, opened on first use."""
        ...

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` to completion from code that is not async."""
        ...
