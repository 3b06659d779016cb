"""OpenTelemetry across processes, on both backends: the producer's span is recorded in
this process (the SDK's in-memory exporter), the consumer's in a real `taskflare worker`
process (the SDK's JSON of each span, written to a file by a tiny exporter in the app
module); the job attempt's span is in the producer's trace, the batch's span links to
each producer span. And an app that is not instrumented imports no OpenTelemetry and
stores no trace context, in a process of its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from taskflare import App
from taskflare.otel import TaskflareInstrumentor

from .procs import WorkerProcess, complete_lines, wait_for

WORKER_APP = '''
"""The worker's app: the tracer provider exports every span as one JSON line to a file."""
import os
from typing import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from taskflare import App
from taskflare.otel import TaskflareInstrumentor


class FileExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(os.environ["TF_SPANS"], "a") as out:
            for span in spans:
                out.write(span.to_json(indent=None) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))

app = App(os.environ["TF_URL"])
TaskflareInstrumentor().instrument(app=app, tracer_provider=provider)
emails = app.queue("emails", max_batch_size=10, max_batch_timeout=1)


@app.job("greet")
async def greet(payload):
    return f"hi {payload['name']}"


@emails.consumer
async def deliver(batch):
    for message in batch.messages:
        message.ack()
'''

UNTRACED = '''
"""An app that is not instrumented: enqueue, send and run them; report what was imported."""
import asyncio, json, sys
from taskflare import App
from taskflare.testing import drain

app = App(sys.argv[1])


@app.job("plain")
async def plain(payload):
    return "ok"


emails = app.queue("emails", max_batch_timeout=0)


@emails.consumer
async def deliver(batch):
    pass


async def main():
    job = await app.enqueue("plain", {})
    await emails.send_batch([{"body": 1}, {"body": 2}])
    await drain(app)
    assert await job.wait(timeout=60) == "ok"
    await app.close()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "taskflare"))
    print(json.dumps({"job": job.id, "modules": loaded}))


asyncio.run(main())
'''


def _hex(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def test_worker_spans_join_the_producers_trace(tmp_path: Path, database_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    producer = App(database_url)
    TaskflareInstrumentor().instrument(app=producer, tracer_provider=provider)
    producer.job("greet")(lambda payload: None)  # declared for validation; runs in the worker
    emails = producer.queue("emails")
    job = producer.enqueue_sync("greet", {"name": "ada"})
    sent = [emails.send_sync({"to": "a"}), *emails.send_batch_sync([{"body": {"to": "b"}}])]

    spans_path = tmp_path / "spans.jsonl"
    spans_path.touch()
    (tmp_path / "logs").mkdir()
    (tmp_path / "otelapp.py").write_text(WORKER_APP)
    env = {"TF_URL": database_url, "TF_SPANS": str(spans_path)}
    worker = WorkerProcess(f"{tmp_path / 'otelapp.py'}:app", tmp_path, env)
    try:

        def worker_spans() -> dict[str, list[dict[str, Any]]] | None:
            found: dict[str, list[dict[str, Any]]] = {}
            for line in complete_lines(spans_path):
                span = json.loads(line)
                found.setdefault(span["name"], []).append(span)
            done = len(found.get("process default", [])) == 1
            batched = sum(
                s["attributes"].get("messaging.batch.message_count", 0)
                for s in found.get("process emails", [])
            )
            return found if done and batched == len(sent) else None

        found = wait_for(worker_spans, 60, "the worker's consumer spans")
        assert producer.run_sync(job.wait(timeout=60)) == "hi ada"
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.stderr
    finally:
        worker.stop()
        producer.close_sync()

    by_name: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    (enqueue,) = by_name["enqueue default"]
    sends = by_name["send emails"]
    assert enqueue.kind == SpanKind.PRODUCER and len(sends) == 2
    assert enqueue.context is not None

    # The job's attempt: a child of the enqueue span, in its trace, across the processes.
    (attempt,) = found["process default"]
    assert attempt["kind"] == "SpanKind.CONSUMER"
    assert attempt["context"]["trace_id"] == _hex(enqueue.context.trace_id, 32)
    assert attempt["parent_id"] == _hex(enqueue.context.span_id, 16)
    assert attempt["attributes"]["messaging.message.id"] == job.id
    assert attempt["attributes"]["messaging.system"] == "taskflare"
    assert attempt["attributes"]["taskflare.outcome"] == "completed"

    # The batch (or batches): linked to each producer span of its messages.
    linked = {
        (link["context"]["trace_id"], link["context"]["span_id"])
        for span in found["process emails"]
        for link in span["links"]
    }
    producers = {
        (_hex(s.context.trace_id, 32), _hex(s.context.span_id, 16)) for s in sends if s.context
    }
    assert linked == producers
    assert all(s["kind"] == "SpanKind.CONSUMER" for s in found["process emails"])


def test_an_app_not_instrumented_imports_no_opentelemetry_and_stores_nothing(
    tmp_path: Path, database_url: str
) -> None:
    script = tmp_path / "untraced.py"
    script.write_text(UNTRACED)
    done = subprocess.run(
        [sys.executable, str(script), database_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not [m for m in report["modules"] if m.startswith("opentelemetry")]
    assert "taskflare.otel" not in report["modules"]
    assert "taskflare.worker.job_runner" in report["modules"]  # the worker code did run

    app = App(database_url)
    try:
        stored = app.run_sync(_trace_contexts(app))
    finally:
        app.close_sync()
    assert stored and all(value is None for value in stored.values())
    assert report["job"] in stored


async def _trace_contexts(app: App) -> dict[str, str | None]:
    """The trace_context column of every stored row (jobs are kept after completion)."""
    backend = await app.backend()
    url = app.database_url
    if url.startswith("sqlite"):
        import sqlite3

        from taskflare.backends.url import sqlite_path

        with sqlite3.connect(sqlite_path(url)) as conn:
            rows = conn.execute("SELECT id, trace_context FROM messages").fetchall()
        return dict(rows)
    import psycopg

    schema = backend.schema  # type: ignore[attr-defined]
    async with await psycopg.AsyncConnection.connect(url.split("?")[0]) as conn:
        cur = await conn.execute(f'SELECT id, trace_context FROM "{schema}".messages')
        return dict(await cur.fetchall())
