"""generate-embedding and generate-content against a local OpenAI-compatible server: the
seed's model names pass through, texts are batched, vectors stored with model and
dimensions, 429/5xx retried (Retry-After honoured), 4xx permanent with the provider's
message, streaming with progress. No network, no model weights."""

from __future__ import annotations

import importlib
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from job_helpers import drain_until, job_of
from taskflare import App, Backoff, InvalidPayload, JobStatus, contrib
from taskflare.contrib import AiSettings

from .conftest import local_services

NO_WAIT = Backoff(base=0, cap=0, jitter=False)
EMBED_MODEL = "@cf/baai/bge-base-en-v1.5"
CHAT_MODEL = "@cf/meta/llama-3.1-8b-instruct"
Ai = tuple[str, local_services.AiCalls]


def use_ai(app: App, base_url: str, **settings: Any) -> None:
    config = AiSettings(base_url=base_url, api_key="sk-local-test-key", **settings)
    app.use(
        contrib.embeddings(config, retry=NO_WAIT, max_attempts=3),
        contrib.content(config, retry=NO_WAIT, max_attempts=3),
    )


async def finished(app: App, job_id: str) -> Any:
    async def done() -> Any:
        job = await job_of(app, job_id)
        return job if job.status.finished else None

    return await drain_until(app, done, timeout=30, what=f"job {job_id} to finish")


async def test_the_seed_embedding_is_stored_with_its_model_and_dimensions(
    contrib_app: App, ai: Ai
) -> None:
    base, calls = ai
    use_ai(contrib_app, base)
    job = await contrib_app.enqueue(
        "generate-embedding", {"text": "Text to embed", "model": EMBED_MODEL}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result["model"] == EMBED_MODEL and done.result["dimensions"] == 8
    [key] = done.result["keys"]
    stored = await contrib_app.namespace("embeddings").get(key)
    assert stored is not None
    assert stored.value == {
        "text": "Text to embed",
        "embedding": local_services.embed("Text to embed"),
        "model": EMBED_MODEL,
        "dimensions": 8,
    }
    assert calls.requests[0]["body"] == {"model": EMBED_MODEL, "input": ["Text to embed"]}
    assert calls.requests[0]["authorization"] == "Bearer sk-local-test-key"


async def test_many_texts_are_batched_per_request_with_progress_and_a_user_sink(
    contrib_app: App, ai: Ai
) -> None:
    base, calls = ai
    written: list[tuple[str, list[str]]] = []

    async def vectors_table(namespace: str, records: list[tuple[str, Any]]) -> None:
        written.append((namespace, [key for key, _ in records]))

    config = AiSettings(base_url=base, api_key="sk-local-test-key", embedding_batch_size=2)
    contrib_app.use(contrib.embeddings(config, sink=vectors_table))
    texts = [f"text {i}" for i in range(5)]
    job = await contrib_app.enqueue(
        "generate-embedding",
        {"text": texts, "model": EMBED_MODEL, "namespace": "docs", "keys": list("abcde")},
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED and done.progress == 1.0
    assert [len(r["body"]["input"]) for r in calls.requests] == [2, 2, 1]
    assert written == [("docs", ["a", "b"]), ("docs", ["c", "d"]), ("docs", ["e"])]
    assert await contrib_app.namespace("docs").count() == 0  # the sink replaced the store


@pytest.mark.parametrize("model", ["rate-limited", "overloaded"])
async def test_429_and_5xx_are_retried(contrib_app: App, ai: Ai, model: str) -> None:
    base, _ = ai
    use_ai(contrib_app, base)
    job = await contrib_app.enqueue("generate-embedding", {"text": "x", "model": model})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    if model == "rate-limited":  # Retry-After: 1
        first, second = done.history
        assert first.finished_at is not None and second.started_at is not None
        assert (second.started_at - first.finished_at).total_seconds() >= 0.9


async def test_a_bad_model_or_key_fails_at_once_with_the_providers_message(
    contrib_app: App, ai: Ai, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base, _ = ai
    use_ai(contrib_app, base)
    job = await contrib_app.enqueue("generate-content", {"prompt": "hi", "model": "no-such-model"})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "The model `no-such-model` does not exist" in (done.error or "")

    wrong = App(contrib_app.database_url)
    try:
        config = AiSettings(base_url=base, api_key="sk-wrong-key-123")
        wrong.use(contrib.embeddings(config, name="embed-wrong-key"))
        job = await wrong.enqueue("embed-wrong-key", {"text": "x", "model": EMBED_MODEL})
        done = await finished(wrong, job.id)
    finally:
        await wrong.close()
    assert done.status is JobStatus.FAILED and "Incorrect API key" in (done.error or "")
    assert "sk-wrong-key-123" not in str(done.to_dict()) + caplog.text + repr(config)


async def test_the_seed_generation_stores_text_finish_reason_and_usage(
    contrib_app: App, ai: Ai
) -> None:
    base, calls = ai
    use_ai(contrib_app, base)
    job = await contrib_app.enqueue(
        "generate-content",
        {
            "prompt": "Write a blog post about queues",
            "model": CHAT_MODEL,
            "system": "Be brief.",
            "temperature": 0.2,
        },
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result["text"] == "Echo: Write a blog post about queues"
    assert done.result["finishReason"] == "stop" and done.result["model"] == CHAT_MODEL
    assert done.result["usage"]["completion_tokens"] == 7
    sent = calls.requests[0]["body"]
    assert sent["model"] == CHAT_MODEL and sent["temperature"] == 0.2
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_a_streamed_generation_reports_progress(
    contrib_app: App, ai: Ai, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module (`taskflare.contrib.content` the attribute is the registration function).
    content_module = importlib.import_module("taskflare.contrib.content")
    reported: list[float] = []
    monkeypatch.setattr(content_module, "PROGRESS_EVERY", 0.0)
    original = content_module._streamed

    async def spy(config: Any, payload: Any, ctx: Any) -> Any:
        real = ctx.progress

        async def progress(value: float, note: str | None = None) -> None:
            reported.append(value)
            await real(value, note)

        ctx.progress = progress
        return await original(config, payload, ctx)

    monkeypatch.setattr(content_module, "_streamed", spy)
    base, _ = ai
    use_ai(contrib_app, base)
    job = await contrib_app.enqueue(
        "generate-content",
        {
            "messages": [{"role": "user", "content": "one two three four five six"}],
            "model": CHAT_MODEL,
            "max_tokens": 5,
            "stream": True,
        },
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result["text"] == "Echo: one two three four"
    assert done.result["finishReason"] == "length" and done.result["usage"]["total_tokens"] == 11
    assert reported[-1] == 1.0 and 0 < reported[0] < 1 and reported == sorted(reported)
    assert done.progress == 1.0


@pytest.mark.parametrize(
    ("type", "payload", "field"),
    [
        ("generate-embedding", {"text": "x"}, "model"),
        ("generate-embedding", {"text": [], "model": "m"}, "text"),
        ("generate-embedding", {"text": ["a", "b"], "model": "m", "keys": ["k"]}, "keys"),
        (
            "generate-embedding",
            {"text": ["a", "b", "c"], "model": "m", "keys": ["k", "j", "k"]},
            r"keys: .*'k' is given twice \(items 0 and 2\)",
        ),
        ("generate-content", {"model": "m"}, "prompt or messages"),
        ("generate-content", {"prompt": "p", "model": "m", "temperature": 3}, "temperature"),
        ("generate-content", {"prompt": "p", "model": "m", "max_tokens": 0}, "max_tokens"),
        (
            "generate-content",
            {"messages": [{"role": "robot", "content": "x"}], "model": "m"},
            "messages.0.role",
        ),
    ],
)
async def test_a_bad_payload_is_refused_at_enqueue_naming_the_field(
    contrib_app: App, ai: Ai, type: str, payload: dict[str, Any], field: str
) -> None:
    use_ai(contrib_app, ai[0])
    with pytest.raises(InvalidPayload, match=field):
        await contrib_app.enqueue(type, payload)


async def test_the_answers_index_puts_each_vector_under_its_own_texts_key(
    contrib_app: App, ai: Ai
) -> None:
    """Each embedding goes where its `index` says; an answer giving one index twice fails
    the job (nothing stored) instead of storing one text's vector under another's key."""
    base, _ = ai
    use_ai(contrib_app, base)
    texts, keys = ["first text", "second text"], ["k1", "k2"]
    good = await contrib_app.enqueue(
        "generate-embedding", {"text": texts, "model": "reversed", "keys": keys, "namespace": "ok"}
    )
    bad = await contrib_app.enqueue(
        "generate-embedding",
        {"text": texts, "model": "same-index", "keys": keys, "namespace": "broken"},
    )
    done = await finished(contrib_app, good.id)
    assert done.status is JobStatus.COMPLETED, done.error
    for key, text in zip(keys, texts, strict=True):
        stored = await contrib_app.namespace("ok").get(key)
        assert stored is not None and stored.value["text"] == text
        assert stored.value["embedding"] == local_services.embed(text)
    failed = await finished(contrib_app, bad.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert "index 0 twice" in (failed.error or "")
    assert await contrib_app.namespace("broken").count() == 0


def not_the_api() -> Any:
    """A server that is not an OpenAI-compatible API: a web page at every path, except a
    chat stream that ends (cleanly, with a whole HTTP answer) before its `[DONE]`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def page(request: Request) -> Response:
        body = await request.json()
        if request.url.path.startswith("/cut/") and body.get("stream"):

            async def cut() -> Any:
                yield 'data: {"choices": [{"index": 0, "delta": {"content": "Half"}}]}\n\n'

            return StreamingResponse(cut(), media_type="text/event-stream")
        return HTMLResponse("<html><body>Welcome to nginx!</body></html>")

    return Starlette(routes=[Route("/{path:path}", page, methods=["POST"])])


async def test_an_answer_that_is_not_the_apis_fails_instead_of_an_empty_or_cut_result(
    contrib_app: App,
) -> None:
    """A base_url naming a web server (a 200 HTML page) fails the job at once saying what
    came back, instead of a bare `JSONDecodeError` or, when streaming, a job completed
    with empty text; a stream that ends before `[DONE]` is retried, never completed with
    the part that came."""
    with local_services.serve(not_the_api()) as base:
        use_ai(contrib_app, base + "/v1")
        chat = {"prompt": "Write a haiku", "model": CHAT_MODEL}
        jobs = [
            await contrib_app.enqueue("generate-embedding", {"text": "x", "model": EMBED_MODEL}),
            await contrib_app.enqueue("generate-content", chat),
            await contrib_app.enqueue("generate-content", {**chat, "stream": True}),
        ]
        wants = ["a JSON object", "a JSON object", "an event stream"]
        for job, wanted in zip(jobs, wants, strict=True):
            done = await finished(contrib_app, job.id)
            assert done.status is JobStatus.FAILED and done.attempts == 1, done.error
            assert f"answered 200 with text/html; charset=utf-8, not {wanted}" in done.error
            assert "JSONDecodeError" not in done.error and "base_url" in done.error

    with local_services.serve(not_the_api()) as base:
        contrib_app.use(
            contrib.content(
                AiSettings(base_url=base + "/cut/v1"), name="cut-content", retry=NO_WAIT
            )
        )
        job = await contrib_app.enqueue("cut-content", {**chat, "stream": True})
        done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.result is None, done.result
    assert done.attempts > 1  # retried: a cut stream may come whole next time
    assert "stream ended before [DONE] after 1 events" in (done.error or "")


async def test_a_network_failure_names_the_host_and_no_credentials(
    contrib_app: App, ai: Ai, caplog: pytest.LogCaptureFixture
) -> None:
    """Connection refused, a name that does not resolve, a failed TLS handshake and no
    answer in time each name the host (and port) the job tried, as the webhook and crawl
    types do; the job is retried (a RuntimeError). Not the URL's password or query, nor
    the API key. Before: `cannot reach the AI endpoint: ConnectError`, naming nothing."""
    caplog.set_level(logging.DEBUG)
    base, _ = ai
    port = base.split(":")[2].split("/")[0]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connection refused
    secrets = ("hunter2-pw", "qs-3cret", "sk-local-test-key")
    cases = {
        "https://bob:hunter2-pw@no-such-host.invalid/v1?api-key=qs-3cret": (
            "the AI endpoint no-such-host.invalid did not resolve ("
        ),
        f"http://127.0.0.1:{free}/v1?api-key=qs-3cret": (
            f"cannot reach the AI endpoint 127.0.0.1:{free}: connection refused"
        ),
        f"https://127.0.0.1:{port}/v1": (  # the local server speaks plain HTTP
            f"cannot reach the AI endpoint 127.0.0.1:{port}: TLS handshake failed ("
        ),
        base: f"the AI endpoint 127.0.0.1:{port} did not answer within 0.2s",
    }
    jobs = []
    for n, (url, _) in enumerate(cases.items()):
        config = AiSettings(base_url=url, api_key="sk-local-test-key", timeout=0.2)
        embed, write = f"embed-{n}", f"write-{n}"
        contrib_app.use(
            contrib.embeddings(config, name=embed, retry=NO_WAIT, max_attempts=1),
            contrib.content(config, name=write, retry=NO_WAIT, max_attempts=1),
        )
        jobs.append(await contrib_app.enqueue(embed, {"text": "x", "model": "slow"}))
        jobs.append(
            await contrib_app.enqueue(write, {"prompt": "x", "model": "slow", "stream": True})
        )
    for job, expected in zip(jobs, [e for e in cases.values() for _ in range(2)], strict=True):
        done = await finished(contrib_app, job.id)
        error = done.error or ""
        assert done.status is JobStatus.FAILED and error.startswith("RuntimeError: "), error
        assert expected in error, (job.type, error)
    shown = str([(await job_of(contrib_app, j.id)).to_dict() for j in jobs]) + caplog.text
    for secret in secrets:
        assert secret not in shown


async def test_a_base_url_with_a_query_keeps_it_after_the_api_path(
    contrib_app: App, ai: Ai
) -> None:
    """Azure OpenAI's base URLs carry `?api-version=...`: the path goes before it (it was
    appended after the query, so the request went to the base's own path)."""
    base, calls = ai
    use_ai(contrib_app, f"{base}/?api-version=2024-10-21")
    embedded = await contrib_app.enqueue("generate-embedding", {"text": "a", "model": EMBED_MODEL})
    written = await contrib_app.enqueue(
        "generate-content", {"prompt": "hi", "model": CHAT_MODEL, "stream": True}
    )
    for job_id in (embedded.id, written.id):
        done = await finished(contrib_app, job_id)
        assert done.status is JobStatus.COMPLETED, done.error
    sent = {(r["path"], r["query"]) for r in calls.requests}
    assert sent == {
        (f"{urlsplit(base).path}/embeddings", "api-version=2024-10-21"),
        (f"{urlsplit(base).path}/chat/completions", "api-version=2024-10-21"),
    }
