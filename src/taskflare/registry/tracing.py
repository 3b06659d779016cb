"""What producers and workers ask of a tracer, when one is installed on the app.

An app has no tracer until `taskflare.otel` installs one (see docs/tracing.md); until
then producers and workers check `hooks.tracing is None` once and do nothing else, so no
tracing library is imported and no trace context is written. This module names the calls
only; the OpenTelemetry implementation is `taskflare.otel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from ..backends.base import ClaimedMessage, NewMessage

Kind = Literal["job", "message"]


class DeliverySpan(Protocol):
    """The span of one delivery being processed (a job attempt or a message batch)."""

    def settled(self, outcome: str, error: str | None, traceback: str | None = None) -> None:
        """Record how the delivery ended: `outcome` ("completed", "acked", "retried",
        "failed", "cancelled", "snoozed", ...) and, when the handler failed, its error
        text and traceback (the span's status becomes an error)."""


class Tracing(Protocol):
    """A tracer for one app's producers and workers."""

    def send(
        self, kind: Kind, queue: str, messages: Sequence[NewMessage], *, batch: bool
    ) -> AbstractContextManager[list[NewMessage]]:
        """A producer span around storing `messages` in `queue` (one span for a batch);
        entered, it gives the messages carrying its trace context, to be stored instead."""
        ...

    def process(
        self, kind: Kind, queue: str, messages: Sequence[ClaimedMessage], *, batch: bool
    ) -> AbstractContextManager[DeliverySpan]:
        """A consumer span around processing one delivery: a job attempt, or a batch of
        messages (`batch`), linked to the trace contexts the messages were stored with."""
        ...
