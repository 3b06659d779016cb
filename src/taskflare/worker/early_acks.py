"""Explicit acks recorded while the consumer still runs.

Cloudflare Queues: "Messages that are explicitly acknowledged will not be re-delivered,
even if your queue consumer fails on a subsequent message and/or fails to return
successfully" (batching-retries), and a failure there includes the invocation being
stopped for exceeding its limits. A worker holding a consumer's acks until the handler
returned would deliver them again after a kill -9; here each `ack()` / `ack_all()` is
written through the outcome buffer as soon as the event loop is free (the acks made in
one stretch of the handler's code share one write, and concurrent writes are grouped by
the buffer), and the batch's final settlement leaves those messages out.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from ..backends.base import ClaimedMessage, LeaseRef, SettleResult
from ..messages import Message
from ..policy import acked
from .settle import OutcomeBuffer


class EarlyAcks:
    """The acks of one batch's consumer, written before it returns.

    `note` may be called from any thread (a plain `def` consumer runs in the handler
    pool); the ids it was given are in `ids`, and `results()` waits for their writes.
    """

    def __init__(self, buffer: OutcomeBuffer, claimed: Sequence[ClaimedMessage]) -> None:
        self._buffer = buffer
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._claimed = claimed
        self._pending: list[str] = []
        self._writes: list[asyncio.Future[SettleResult]] = []
        self.ids: set[str] = set()

    def watch(self, messages: Sequence[Message[Any]]) -> None:
        """Have each of `messages` report its explicit ack here."""
        note = self.note
        for message in messages:
            message._on_ack = note

    def note(self, message: Message[Any]) -> None:
        """`message` was acked by the consumer: write it soon (from any thread)."""
        if threading.get_ident() == self._loop_thread:
            self._note(message.id)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to write
                self._loop.call_soon_threadsafe(self._note, message.id)

    def _note(self, message_id: str) -> None:
        if message_id in self.ids:
            return
        self.ids.add(message_id)
        self._pending.append(message_id)
        if len(self._pending) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send the acks noted so far to the outcome buffer (a no-op when none are)."""
        if not self._pending:
            return
        ids, self._pending = self._pending, []
        leases = {c.id: c.lease_id for c in self._claimed}
        settlement = acked([LeaseRef(i, leases[i]) for i in ids])
        self._writes.append(asyncio.ensure_future(self._buffer.settle(settlement)))

    async def results(self) -> SettleResult:
        """What the early writes stored (every one of them awaited)."""
        self.flush()
        states: dict[str, str] = {}
        for write in self._writes:
            states.update((await write).states)
        return SettleResult(states)
