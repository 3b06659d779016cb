"""OpenTelemetry tracing in one process, on both backends: a PRODUCER span per send,
enqueue and bulk enqueue; a CONSUMER span per job attempt (a child of its producer's
span) and per message batch (linked to each producer); messaging attributes; error
status on failure; the trace context stored with the message, and nothing stored when
the app is not instrumented. Across real processes: tests/integration/test_otel_processes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from helpers import get
from taskflare import App, Backoff, MessageBatch
from taskflare.otel import TaskflareInstrumentor
from taskflare.testing import drain


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(app: App, exporter: InMemorySpanExporter) -> Iterator[App]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    TaskflareInstrumentor().instrument(app=app, tracer_provider=provider)
    yield app
    TaskflareInstrumentor().uninstrument(app=app)


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_job_attempt_span_is_a_child_of_its_enqueue_span(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    app = traced

    @app.job("greet")
    async def greet(payload: dict[str, Any]) -> str:
        return f"hi {payload['name']}"

    job = await app.enqueue("greet", {"name": "ada"}, correlation_id="order-7")
    await drain(app)
    assert await job.wait(timeout=60) == "hi ada"

    (send,) = spans(exporter, "enqueue default")
    (process,) = spans(exporter, "process default")
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert attrs(send) == {
        "messaging.system": "taskflare",
        "messaging.destination.name": "default",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.message.id": job.id,
        "messaging.message.conversation_id": "order-7",
        "taskflare.job.type": "greet",
    }
    assert attrs(process) == {
        "messaging.system": "taskflare",
        "messaging.destination.name": "default",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": job.id,
        "messaging.message.conversation_id": "order-7",
        "taskflare.job.type": "greet",
        "taskflare.attempt": 1,
        "taskflare.retry_count": 0,
        "taskflare.outcome": "completed",
    }
    assert send.context is not None and process.context is not None
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert process.status.status_code == StatusCode.UNSET

    record = await get(app, job.id)
    assert record is not None
    stored = await _stored_trace_context(app, job.id)
    assert orjson.loads(stored)["traceparent"].split("-")[1] == f"{send.context.trace_id:032x}"


async def test_failed_attempts_have_error_status_and_count_retries(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    app = traced

    @app.job("flaky", max_attempts=2, retry=Backoff(base=0, cap=0))
    async def flaky(payload: Any) -> None:
        raise ValueError("card declined")

    job = await app.enqueue("flaky", {})
    await drain(app)
    assert (await job.refresh()).status == "failed"

    first, second = sorted(spans(exporter, "process default"), key=lambda s: s.start_time or 0)
    assert [attrs(s)["taskflare.attempt"] for s in (first, second)] == [1, 2]
    assert [attrs(s)["taskflare.retry_count"] for s in (first, second)] == [0, 1]
    assert [attrs(s)["taskflare.outcome"] for s in (first, second)] == ["retried", "failed"]
    for span in (first, second):
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == "ValueError: card declined"
        assert attrs(span)["error.type"] == "ValueError"
        (event,) = span.events
        assert event.name == "exception"
        assert "card declined" in str((event.attributes or {})["exception.stacktrace"])
    (send,) = spans(exporter, "enqueue default")
    assert send.context is not None
    assert {s.context.trace_id for s in (first, second) if s.context} == {send.context.trace_id}


async def test_a_batch_span_links_to_every_producer(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    app = traced
    emails = app.queue("emails", max_batch_size=10, max_batch_timeout=0)
    seen: list[int] = []

    @emails.consumer
    async def deliver(batch: MessageBatch[Any]) -> None:
        seen.append(len(batch.messages))

    one = await emails.send({"to": "a"})
    many = await emails.send_batch([{"body": {"to": "b"}}, {"body": {"to": "c"}}])
    await drain(app)
    assert seen == [3]

    single, bulk = sorted(spans(exporter, "send emails"), key=lambda s: s.start_time or 0)
    assert attrs(single)["messaging.message.id"] == one
    assert "messaging.batch.message_count" not in attrs(single)
    assert attrs(bulk)["messaging.batch.message_count"] == 2
    assert "messaging.message.id" not in attrs(bulk)
    (process,) = spans(exporter, "process emails")
    assert process.kind == SpanKind.CONSUMER
    assert attrs(process)["messaging.batch.message_count"] == 3
    assert attrs(process)["messaging.operation.type"] == "process"
    assert attrs(process)["taskflare.outcome"] == "acked"
    assert single.context is not None and bulk.context is not None
    # A batch has many producers: links, one per producer span, and no parent among them.
    linked = {(link.context.trace_id, link.context.span_id) for link in process.links}
    assert linked == {
        (single.context.trace_id, single.context.span_id),
        (bulk.context.trace_id, bulk.context.span_id),
    }
    assert process.parent is None
    for message_id in many:
        assert await get(app, message_id) is None  # acked


async def test_a_failing_batch_has_error_status(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    app = traced
    emails = app.queue("emails", max_retries=0, max_batch_timeout=0)

    @emails.consumer
    async def deliver(batch: MessageBatch[Any]) -> None:
        raise RuntimeError("smtp down")

    await emails.send({"to": "a"})
    await drain(app)
    (process,) = spans(exporter, "process emails")
    assert process.status.status_code == StatusCode.ERROR
    assert process.status.description == "RuntimeError: smtp down"
    assert attrs(process)["taskflare.outcome"] == "failed"


async def test_a_dead_letter_keeps_the_producers_trace_context(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    app = traced
    emails = app.queue("emails", max_retries=0, max_batch_timeout=0, dead_letter_queue="dlq")
    dlq = app.queue("dlq", max_batch_timeout=0)
    kept: list[Any] = []

    @emails.consumer
    async def deliver(batch: MessageBatch[Any]) -> None:
        raise RuntimeError("smtp down")

    @dlq.consumer
    async def keep(batch: MessageBatch[Any]) -> None:
        kept.extend(m.body for m in batch.messages)

    await emails.send({"to": "a"})
    await drain(app)
    assert kept == [{"to": "a"}]
    (send,) = spans(exporter, "send emails")
    (process,) = spans(exporter, "process dlq")
    assert send.context is not None
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [
        (send.context.trace_id, send.context.span_id)
    ]


async def test_enqueue_many_is_one_span_with_the_message_count(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    app = traced

    @app.job("resize")
    async def resize(payload: Any) -> None:
        return None

    batch_id = await app.enqueue_many("resize", [{"n": n} for n in range(5)], chunk_size=2)
    (send,) = spans(exporter, "enqueue default")
    assert attrs(send)["messaging.batch.message_count"] == 5
    await drain(app)
    processed = spans(exporter, "process default")
    assert len(processed) == 5
    assert send.context is not None
    assert {s.context.trace_id for s in processed if s.context} == {send.context.trace_id}
    assert (await app.get_batch(batch_id)).completed == 5


async def test_sync_handlers_run_inside_the_attempt_span(
    traced: App, exporter: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    app = traced
    inner: list[int] = []

    @app.job("sync-job")
    def sync_job(payload: Any) -> None:
        inner.append(trace.get_current_span().get_span_context().span_id)

    await app.enqueue("sync-job", {})
    await drain(app)
    (process,) = spans(exporter, "process default")
    assert process.context is not None and inner == [process.context.span_id]


async def test_instrument_without_an_app_traces_every_app(
    app: App, exporter: InMemorySpanExporter
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = TaskflareInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        later = App(app.database_url)  # made after instrument(): traced too
        assert TaskflareInstrumentor.is_instrumented(app)
        assert TaskflareInstrumentor.is_instrumented(later)
        await app.queue("a").send(1)
        await later.queue("b").send(2)
        await later.close()
    finally:
        instrumentor.uninstrument()
    assert not TaskflareInstrumentor.is_instrumented(app)
    assert {s.name for s in exporter.get_finished_spans()} == {"send a", "send b"}


async def test_not_instrumented_nothing_is_stored(app: App) -> None:
    @app.job("plain")
    async def plain(payload: Any) -> None:
        return None

    job = await app.enqueue("plain", {})
    message = await app.queue("q").send({"x": 1})
    assert await _stored_trace_context(app, job.id) is None
    assert await _stored_trace_context(app, message) is None


async def _stored_trace_context(app: App, message_id: str) -> str | None:
    """The trace_context column of a stored message, read with SQL (not part of any record)."""
    backend = await app.backend()
    url = app.database_url
    if url.startswith("sqlite"):
        import sqlite3

        from taskflare.backends.url import sqlite_path

        with sqlite3.connect(sqlite_path(url)) as conn:
            row = conn.execute(
                "SELECT trace_context FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
        return None if row is None else row[0]
    import psycopg

    schema = backend.schema  # type: ignore[attr-defined]
    async with await psycopg.AsyncConnection.connect(url.split("?")[0]) as conn:
        cur = await conn.execute(
            f'SELECT trace_context FROM "{schema}".messages WHERE id = %s', (message_id,)
        )
        found = await cur.fetchone()
    return None if found is None else found[0]
