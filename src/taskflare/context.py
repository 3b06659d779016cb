"""`JobContext`: what a running job can ask of taskflare (progress, cancellation, `once`).

A plain `def` handler runs in a worker thread, where nothing can be awaited: there
`ctx.progress(...)` is called without `await` and blocks until stored, and
`ctx.once_sync(...)` stands for `await ctx.once(...)` (RQ's `save_meta()` and Celery's
`update_state()` are blocking calls too). Before, a thread's `ctx.progress(0.5)` made a
coroutine that never ran: the progress was lost without a word.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

import orjson

from .backends.base import (
    Backend,
    JobProgressParams,
    OnceAbandonParams,
    OnceClaimParams,
    OnceFinishParams,
    OnceState,
)
from .encoding import encode_json
from .errors import InvalidResult
from .flow import Snooze
from .text import check_text
from .waiting import poll_until

ONCE_LEASE_SECONDS = 900.0
T = TypeVar("T")


class _Stored:
    """What `progress` returns once it has stored the value from a worker thread: an
    awaitable that is already done (so `await ctx.progress(...)` works there too)."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator: nothing to wait for


def _loop_here() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class JobContext:
    """Handed to a job handler as its second argument."""

    def __init__(
        self,
        *,
        backend: Backend,
        job_id: str,
        type: str,
        queue: str,
        attempt: int,
        max_attempts: int,
        correlation_id: str | None,
        lease_id: str,
        worker_id: str,
    ) -> None:
        self.job_id = job_id
        self.type = type
        self.queue = queue
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.correlation_id = correlation_id
        self.worker_id = worker_id
        self._backend = backend
        self._lease_id = lease_id
        self._cancelled = False
        # The worker's loop, where a plain `def` handler's thread sends its calls.
        self._loop = _loop_here()

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id!r}, attempt={self.attempt})"

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this job (async handlers are also cancelled)."""
        return self._cancelled

    def mark_cancelled(self) -> None:
        """Called by the worker when a cancellation request arrives."""
        self._cancelled = True

    def snooze(self, seconds: float) -> Snooze:
        """`return ctx.snooze(30)`: run this job again in 30 s without spending an attempt
        (the same as `raise Snooze(30)`). `TypeError`/`ValueError` for a bad delay."""
        return Snooze(seconds)

    def progress(self, value: float, note: str | None = None) -> Awaitable[None]:
        """Record progress from 0 to 1 (with an optional note of up to 1000 characters):
        `await ctx.progress(0.5)` in an async handler; `ctx.progress(0.5)` in a plain
        `def` handler, which blocks until it is stored.

        Raises `ValueError` for a value outside 0..1, `InvalidMessage` for a bad note.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"progress must be a number from 0 to 1, got {value!r}")
        if note is not None:
            if not isinstance(note, str):
                raise TypeError(f"progress note must be a string, got {type(note).__name__}")
            check_text(note, "progress note", max_length=1000)
        params = JobProgressParams(self.job_id, self._lease_id, float(value), note)
        store = self._store_progress(params)
        if _loop_here() is not None:
            return store
        self._from_thread(store)
        return _Stored()

    async def _store_progress(self, params: JobProgressParams) -> None:
        await self._backend.job_progress(params)

    def _from_thread(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the worker's loop from a handler's thread; wait for its result."""
        loop = self._loop
        if loop is None or loop.is_closed():
            work.close()
            raise RuntimeError("this job context has no running worker loop to call")
        return asyncio.run_coroutine_threadsafe(work, loop).result()

    def once(
        self, key: str, fn: Callable[[], Any], ttl: float = 86_400
    ) -> Coroutine[Any, Any, tuple[Any, bool]]:
        """Run `fn` once per `key` within `ttl` seconds across all workers.

        Returns `(result, cached)`: the JSON result of `fn` and whether it came from an
        earlier run. If `fn` raises, or returns what JSON cannot hold (`InvalidResult`
        naming where: a NaN at `result.score`), nothing is stored and the error
        propagates, so a later call (a retry of this job) runs it again. Concurrent
        callers wait for the one running it. Awaited in an async handler; a plain `def`
        handler calls `once_sync` (`RuntimeError` saying so if it calls this).
        """
        _check_once_key(key)
        if _loop_here() is None:
            raise RuntimeError(
                "ctx.once() is awaited in async handlers; in a plain def handler call "
                "ctx.once_sync(key, fn, ttl)"
            )
        return self._once(key, fn, ttl)

    def once_sync(self, key: str, fn: Callable[[], Any], ttl: float = 86_400) -> tuple[Any, bool]:
        """`once` for a plain `def` handler: `fn` runs in the handler's own thread, the
        claim and the stored result go through the worker's loop. Same result and errors;
        `RuntimeError` when called on an event loop (await `once` there)."""
        _check_once_key(key)
        if _loop_here() is not None:
            raise RuntimeError("ctx.once_sync() blocks; in an async handler await ctx.once()")
        owner = self._once_owner()
        state, value = self._from_thread(self._once_claim(key, owner))
        if state is OnceState.DONE:
            return value, True
        try:
            result = fn()
            data = _once_data(key, result)
        except BaseException:
            self._from_thread(self._backend.once_abandon(OnceAbandonParams(key, owner)))
            raise
        self._from_thread(self._backend.once_finish(OnceFinishParams(key, owner, data, ttl)))
        return result, False

    def _once_owner(self) -> str:
        return f"{self.job_id}:{self.attempt}"

    async def _once_claim(self, key: str, owner: str) -> tuple[OnceState, Any]:
        """Wait until `key` is this caller's to run (CLAIMED) or has a result (DONE)."""
        backend = self._backend

        async def try_claim() -> tuple[OnceState, Any] | None:
            claim = await backend.once_claim(OnceClaimParams(key, owner, ONCE_LEASE_SECONDS))
            if claim.state is OnceState.DONE:
                assert claim.result is not None
                return (OnceState.DONE, orjson.loads(claim.result))
            if claim.state is OnceState.CLAIMED:
                return (OnceState.CLAIMED, None)
            return None

        return await poll_until(try_claim, None, f"once({key!r})")

    async def _once(self, key: str, fn: Callable[[], Any], ttl: float) -> tuple[Any, bool]:
        owner = self._once_owner()
        backend = self._backend
        state, value = await self._once_claim(key, owner)
        if state is OnceState.DONE:
            return value, True
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            data = _once_data(key, result)
        except BaseException:
            await asyncio.shield(backend.once_abandon(OnceAbandonParams(key, owner)))
            raise
        await backend.once_finish(OnceFinishParams(key, owner, data, ttl))
        return result, False


def _once_data(key: str, result: Any) -> bytes:
    """`once`'s result as stored (`InvalidResult` naming where JSON cannot hold it)."""
    return encode_json(result, "result", InvalidResult, context=f"once({key!r}): ")


def _check_once_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("once() needs a non-empty string key")
    check_text(key, "once key", max_length=1000)
