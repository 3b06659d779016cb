"""OpenTelemetry tracing (`pip install 'taskflare[otel]'`): a PRODUCER span per send or
enqueue, a CONSUMER span per job attempt and per message batch, the producer's W3C trace
context stored with each message so the consumer's span joins its trace in another
process. Attributes follow OpenTelemetry's semantic conventions for messaging.

    from taskflare.otel import TaskflareInstrumentor

    TaskflareInstrumentor().instrument(app=app)   # or instrument() for every app

Importing this module imports `opentelemetry`; taskflare itself never does, so an app
that is not instrumented pays nothing (see docs/tracing.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from . import __version__
from .backends.base import ClaimedMessage, NewMessage
from .registry.hooks import set_tracing_everywhere
from .registry.tracing import Kind

if TYPE_CHECKING:
    from .app import App

__all__ = ["SYSTEM", "TaskflareInstrumentor"]

SYSTEM = "taskflare"
# The version of the semantic conventions the span attributes follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"


class TaskflareInstrumentor:
    """Traces taskflare's producers and workers, as OpenTelemetry's instrumentors do.

    `instrument(app=app)` traces one app; `instrument()` every app of this process, those
    made later included (as `CeleryInstrumentor().instrument()` does for Celery). Spans go
    to `tracer_provider`, else to the global provider (`trace.set_tracer_provider`), looked
    up when each span starts. Instrument the producing processes and the workers: a
    worker records its spans where its own provider exports them.
    """

    def instrument(self, *, app: App | None = None, tracer_provider: Any = None) -> None:
        """Start tracing `app` (None: every app of this process). Calling it again replaces
        the tracer (e.g. with another `tracer_provider`)."""
        tracing = _OpenTelemetryTracing(tracer_provider)
        if app is not None:
            app.registry.hooks.tracing = tracing
            return
        set_tracing_everywhere(tracing)

    def uninstrument(self, *, app: App | None = None) -> None:
        """Stop tracing `app` (None: stop what `instrument()` without an app started)."""
        if app is not None:
            app.registry.hooks.tracing = None
            return
        set_tracing_everywhere(None)

    @staticmethod
    def instrument_app(app: App, tracer_provider: Any = None) -> None:
        """`instrument(app=app, tracer_provider=...)`, in the shape of FastAPI's
        `FastAPIInstrumentor.instrument_app`."""
        TaskflareInstrumentor().instrument(app=app, tracer_provider=tracer_provider)

    @staticmethod
    def uninstrument_app(app: App) -> None:
        """`uninstrument(app=app)`."""
        TaskflareInstrumentor().uninstrument(app=app)

    @staticmethod
    def is_instrumented(app: App) -> bool:
        """Whether `app`'s sends and deliveries are traced."""
        return app.registry.hooks.tracing is not None


class _DeliverySpan:
    """`DeliverySpan` over one OpenTelemetry span."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def settled(self, outcome: str, error: str | None, traceback: str | None = None) -> None:
        self.span.set_attribute("taskflare.outcome", outcome)
        if error is None:
            return
        self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.set_attribute("error.type", _error_type(error))
        event = {"exception.type": _error_type(error), "exception.message": error}
        if traceback:
            event["exception.stacktrace"] = traceback
        self.span.add_event("exception", event)


class _OpenTelemetryTracing:
    """`Tracing` (see taskflare.registry.tracing) with OpenTelemetry's API."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer(
            "taskflare", __version__, tracer_provider, schema_url=SCHEMA_URL
        )

    @contextmanager
    def send(
        self, kind: Kind, queue: str, messages: Sequence[NewMessage], *, batch: bool
    ) -> Iterator[list[NewMessage]]:
        operation = "enqueue" if kind == "job" else "send"
        attributes = _common(queue, "send", operation)
        if batch:
            attributes["messaging.batch.message_count"] = len(messages)
        else:
            attributes.update(_message_attributes(messages[0]))
        if messages and messages[0].type is not None:
            attributes["taskflare.job.type"] = messages[0].type
        with self.tracer.start_as_current_span(
            f"{operation} {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if not carrier:  # no span is recorded (a no-op provider): store nothing
                yield list(messages)
                return
            stored = orjson.dumps(carrier).decode()
            yield [replace(m, trace_context=stored) for m in messages]

    @contextmanager
    def process(
        self, kind: Kind, queue: str, messages: Sequence[ClaimedMessage], *, batch: bool
    ) -> Iterator[_DeliverySpan]:
        contexts = [_extract(m.trace_context) for m in messages if m.trace_context]
        links = _links(contexts)
        attributes = _common(queue, "process", "process")
        attempt = max(m.attempts for m in messages)
        attributes["taskflare.attempt"] = attempt
        attributes["taskflare.retry_count"] = attempt - 1
        if batch:
            attributes["messaging.batch.message_count"] = len(messages)
        else:
            attributes.update(_message_attributes(messages[0]))
            if messages[0].type is not None:
                attributes["taskflare.job.type"] = messages[0].type
        # One message (a job attempt): a child of its producer's span, in its trace, and
        # linked to it. A batch: its own trace, linked to each message's producer (the
        # semantic conventions' choice: a span has one parent, a batch many producers).
        parent = contexts[0] if (not batch and contexts) else None
        with self.tracer.start_as_current_span(
            f"process {queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ) as span:
            yield _DeliverySpan(span)


def _common(queue: str, operation_type: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
    }


def _message_attributes(message: NewMessage | ClaimedMessage) -> dict[str, Any]:
    attributes: dict[str, Any] = {"messaging.message.id": message.id}
    if message.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    return attributes


def _extract(stored: str) -> Context:
    """The context a producer stored (an unreadable one is an empty context)."""
    try:
        carrier = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return Context()
    return propagate.extract(carrier if isinstance(carrier, dict) else {}, context=Context())


def _links(contexts: Sequence[Context]) -> list[Link]:
    """One link per distinct producer span among `contexts`."""
    links: dict[tuple[int, int], Link] = {}
    for context in contexts:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.setdefault((span_context.trace_id, span_context.span_id), Link(span_context))
    return list(links.values())


def _error_type(error: str) -> str:
    """The exception class named at the start of an error text ("ValueError: ..."), else
    `_OTHER` (the semantic conventions' value for an unknown type)."""
    name = error.split(":", 1)[0].strip()
    return name if name.replace(".", "").isidentifier() else "_OTHER"
