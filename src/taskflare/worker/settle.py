"""The outcome buffer: batches that finish together are settled in one backend transaction.

While one settlement is being written, newly finished batches queue up; the next write
takes them all. A failed write (database down) is retried with backoff, never dropped:
until it lands, the heartbeat keeps the messages' leases alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from ..backends.base import Backend, Settlement, SettleResult

log = logging.getLogger("taskflare.worker")


@dataclass(slots=True)
class _Pending:
    settlement: Settlement
    done: asyncio.Future[SettleResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SettleBuffer:
    """Group-commits settlements from concurrent batches."""

    def __init__(self, backend: Backend, *, max_backoff: float = 5.0) -> None:
        self._backend = backend
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._max_backoff = max_backoff

    async def settle(self, settlement: Settlement) -> SettleResult:
        """Queue `settlement` for the next write and wait until it is stored."""
        item = _Pending(settlement)
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="taskflare-settle")
        return await asyncio.shield(item.done)

    async def _flush(self) -> None:
        while self._pending:
            taken, self._pending = self._pending, []
            merged = merge([p.settlement for p in taken])
            result = await self._write(merged)
            for p in taken:
                if not p.done.done():
                    p.done.set_result(result)

    async def _write(self, merged: Settlement) -> SettleResult:
        delay = 0.05
        while True:
            try:
                return await self._backend.message_settle_many(merged)
            except Exception as exc:
                log.warning(
                    "could not record %d outcomes (%s); retrying in %.2fs",
                    sum(len(getattr(merged, f.name)) for f in fields(Settlement)),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def drain(self) -> None:
        """Wait until every queued settlement has been written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)


def merge(settlements: Sequence[Settlement]) -> Settlement:
    """One settlement holding every outcome of `settlements`."""
    if len(settlements) == 1:
        return settlements[0]
    return Settlement(
        **{f.name: [o for s in settlements for o in getattr(s, f.name)] for f in fields(Settlement)}
    )
