"""The outcome buffer: outcomes that end close together are written in one transaction.

Each finished batch or job hands its settlement to the buffer and waits until it is
stored. While one write is in flight, newly finished outcomes queue up; the next write
takes them all (River's batch completer does the same). A write the database cannot
take because it is unreachable is retried with backoff (the heartbeat keeps the leases
alive meanwhile); a write it *refuses* (a value it cannot store) is split until the
refused outcome is found, which is then stored as a failure with a cleaned error, so
one bad outcome never holds back the others, nor shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

from ..backends.base import (
    Backend,
    CancelOutcome,
    CompleteOutcome,
    FailOutcome,
    LeaseRef,
    RetryOutcome,
    Settlement,
    SettleResult,
)
from ..errors import BackendUnavailable, StorageRejected
from ..text import clean_text

log = logging.getLogger("taskflare.worker")

MAX_BACKOFF = 5.0


@dataclass(slots=True)
class _Pending:
    """A settlement waiting for the next write, and who hears what became of it: an
    awaiting caller (`done`) or a callback (`then`)."""

    settlement: Settlement
    done: asyncio.Future[SettleResult] | None = None
    then: Callable[[SettleResult], None] | None = None

    def resolve(self, result: SettleResult) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(result)
        if self.then is not None:
            try:
                self.then(result)
            except Exception:  # bookkeeping after the write; the outcome itself is stored
                log.exception("after recording an outcome")

    def abandon(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.cancel()


class OutcomeBuffer:
    """Group-commits the settlements of concurrent batches and jobs."""

    def __init__(self, backend: Backend, *, max_backoff: float = MAX_BACKOFF) -> None:
        self._backend = backend
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._max_backoff = max_backoff
        self._give_up_at: float | None = None

    async def settle(self, settlement: Settlement) -> SettleResult:
        """Queue `settlement` for the next write and wait until it is stored.

        Returns what the write did (message id → resulting state; ids missing had lost
        their lease). Shielded: a caller cancelled meanwhile does not cancel the write.
        """
        if not settlement:
            return SettleResult()
        done: asyncio.Future[SettleResult] = asyncio.get_running_loop().create_future()
        self._queue(_Pending(settlement, done=done))
        return await asyncio.shield(done)

    def submit(self, settlement: Settlement, then: Callable[[SettleResult], None]) -> None:
        """Queue `settlement` for the next write and return at once; `then(result)` runs
        once it is stored (not at all if the worker is torn down first). The cheap path
        for one job's outcome: no future or task per job."""
        if not settlement:
            then(SettleResult())
            return
        self._queue(_Pending(settlement, then=then))

    def _queue(self, item: _Pending) -> None:
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="taskflare-settle")

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued settlement has been written; after `timeout` seconds of
        failed writes (database down at shutdown), give up on what is left: those leases
        expire and the rescuer of another worker redelivers them."""
        if timeout is not None:
            self._give_up_at = time.monotonic() + timeout
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        taken: list[_Pending] = []
        try:
            while self._pending:
                taken, self._pending = self._pending, []
                result = await self._write(merge([p.settlement for p in taken]))
                for p in taken:
                    p.resolve(result)
                taken = []
        except BaseException:
            # Cancelled (the loop is closing) or broken: no waiter may wait for ever.
            for p in [*taken, *self._pending]:
                p.abandon()
            self._pending = []
            raise

    async def _write(self, merged: Settlement) -> SettleResult:
        delay = 0.05
        while True:
            try:
                return await self._backend.message_settle_many(merged)
            except StorageRejected as exc:
                return await self._isolate(merged, exc)
            except BackendUnavailable as exc:
                if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                    log.error(
                        "giving up on %d outcomes (%s): their leases will expire and another "
                        "worker will deliver them again",
                        merged.size,
                        exc,
                    )
                    return SettleResult()
                log.warning(
                    "could not record %d outcomes (%s); retrying in %.2fs", merged.size, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
            except Exception as exc:  # not the database being away: retrying cannot help
                return await self._isolate(merged, StorageRejected(f"{type(exc).__name__}: {exc}"))

    async def _isolate(self, merged: Settlement, exc: StorageRejected) -> SettleResult:
        """Split a refused write until the refused outcomes are found; store each of those
        as a failure whose error says why (or, if even that is refused, leave it to the
        lease rescuer)."""
        parts = split(merged)
        if len(parts) == 1:
            return await self._replace_refused(merged, exc)
        states: dict[str, str] = {}
        for part in parts:
            try:
                result = await self._write(part)
            except Exception as inner:  # a part that cannot be written at all
                log.error("could not record an outcome: %s", inner)
                continue
            states.update(result.states)
        return SettleResult(states)

    async def _replace_refused(self, single: Settlement, exc: StorageRejected) -> SettleResult:
        reason = clean_text(f"the database refused this outcome: {exc}")[:2000]
        failed = as_failure(single, reason)
        log.error("%s; recording it as failed instead", reason)
        if failed is None:
            return SettleResult()
        try:
            return await self._backend.message_settle_many(failed)
        except Exception as again:
            log.error(
                "could not record the failure either (%s); the lease will expire and the "
                "rescuer will retry or fail it",
                again,
            )
            return SettleResult()


def merge(settlements: Sequence[Settlement]) -> Settlement:
    """One settlement holding every outcome of `settlements`."""
    if len(settlements) == 1:
        return settlements[0]
    return Settlement(
        **{f.name: [o for s in settlements for o in getattr(s, f.name)] for f in fields(Settlement)}
    )


def split(settlement: Settlement) -> list[Settlement]:
    """Settlements of one delivery each (its outcome with its attempt records), or the
    halves of a larger one; a single delivery comes back as itself."""
    ids = [o.id for name in _OUTCOMES for o in getattr(settlement, name)]
    if len(ids) <= 1:
        return [settlement]
    half = set(ids[: len(ids) // 2])
    return [_select(settlement, half, keep=True), _select(settlement, half, keep=False)]


_OUTCOMES = ("acks", "retries", "fails", "completes", "cancels")


def _select(settlement: Settlement, ids: set[str], *, keep: bool) -> Settlement:
    chosen = {
        name: [o for o in getattr(settlement, name) if (o.id in ids) == keep] for name in _OUTCOMES
    }
    attempts = [a for a in settlement.attempts if (a.job_id in ids) == keep]
    return Settlement(attempts=attempts, **chosen)


def as_failure(single: Settlement, reason: str) -> Settlement | None:
    """The outcome of one delivery turned into a failure with `reason` (values that the
    database may have refused, results and handler errors, are dropped; a failure keeps
    its dead-letter queue)."""
    outcome: LeaseRef | RetryOutcome | FailOutcome | CompleteOutcome | CancelOutcome | None = None
    for name in _OUTCOMES:
        found = getattr(single, name)
        if found:
            outcome = found[0]
    if outcome is None or outcome.lease_id is None:
        return None
    attempts = [replace(a, outcome="failed", error=reason, traceback=None) for a in single.attempts]
    if isinstance(outcome, FailOutcome):
        # The delivery was failing anyway: it still goes to its dead-letter queue.
        fail = replace(outcome, error=reason)
    else:
        fail = FailOutcome(outcome.id, outcome.lease_id, reason)
    return Settlement(fails=[fail], attempts=attempts)
