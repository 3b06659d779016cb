"""`JobContext`: what a running job can ask of taskflare (progress, cancellation, `once`)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

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

    async def progress(self, value: float, note: str | None = None) -> None:
        """Record progress from 0 to 1 (with an optional note of up to 1000 characters).

        Raises `ValueError` for a value outside 0..1, `InvalidMessage` for a bad note.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"progress must be a number from 0 to 1, got {value!r}")
        if note is not None:
            if not isinstance(note, str):
                raise TypeError(f"progress note must be a string, got {type(note).__name__}")
            check_text(note, "progress note", max_length=1000)
        await self._backend.job_progress(
            JobProgressParams(self.job_id, self._lease_id, float(value), note)
        )

    async def once(self, key: str, fn: Callable[[], Any], ttl: float = 86_400) -> tuple[Any, bool]:
        """Run `fn` once per `key` within `ttl` seconds across all workers.

        Returns `(result, cached)`: the JSON result of `fn` and whether it came from an
        earlier run. If `fn` raises, or returns what JSON cannot hold (`InvalidResult`
        naming where: a NaN at `result.score`), nothing is stored and the error
        propagates, so a later call (a retry of this job) runs it again. Concurrent
        callers wait for the one running it.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("once() needs a non-empty string key")
        check_text(key, "once key", max_length=1000)
        owner = f"{self.job_id}:{self.attempt}"
        backend = self._backend

        async def try_claim() -> tuple[OnceState, Any] | None:
            claim = await backend.once_claim(OnceClaimParams(key, owner, ONCE_LEASE_SECONDS))
            if claim.state is OnceState.DONE:
                assert claim.result is not None
                return (OnceState.DONE, orjson.loads(claim.result))
            if claim.state is OnceState.CLAIMED:
                return (OnceState.CLAIMED, None)
            return None

        state, value = await poll_until(try_claim, None, f"once({key!r})")
        if state is OnceState.DONE:
            return value, True
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            data = encode_json(result, "result", InvalidResult, context=f"once({key!r}): ")
        except BaseException:
            await asyncio.shield(backend.once_abandon(OnceAbandonParams(key, owner)))
            raise
        await backend.once_finish(OnceFinishParams(key, owner, data, ttl))
        return result, False
