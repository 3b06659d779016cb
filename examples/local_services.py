"""Local stand-ins for the services the built-in job types talk to, so the examples (and
taskflare's own tests) run without internet: an SMTP server (aiosmtpd) that keeps what it
receives, a webhook receiver, a small website to crawl and an OpenAI-compatible API.

    python examples/local_services.py      # start them all; print the settings to export

It prints one `export NAME='value'` line for every setting the examples of
docs/job-types.md read (paste them into the shell that runs an example). Each server
binds a free port on 127.0.0.1 and runs in a background thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

# -- running an ASGI app on a free port ------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 until the block ends; yields its base URL."""
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    sock = _free_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("local server did not start")
        thread.join(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


# -- SMTP ------------------------------------------------------------------------------------


@dataclass
class SmtpInbox:
    """What the local SMTP server received: envelopes and parsed messages.

    Recipients starting with `bounce` are refused with 550 (permanent), with `later` with
    451 (try again later), with `flaky` with 451 the first time only."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    deferred: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 no such user here"
        if address.startswith("later"):
            return "451 4.3.0 mailbox busy, try again later"
        if address.startswith("flaky"):  # busy the first time only
            with self.lock:
                first = address not in self.deferred
                self.deferred.add(address)
            if first:
                return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = auth.login == b"mailer" and auth.password == b"s3cret-pass"
        if ok:
            with self.lock:
                self.logins.append(auth.login.decode())
        return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(
    *,
    tls_cert: tuple[str, str] | None = None,
    require_auth: bool = False,
    implicit_tls: bool = False,
) -> Iterator[tuple[str, SmtpInbox]]:
    """A local SMTP server; yields its `smtp://` URL (without credentials) and its inbox.

    With `tls_cert` (certificate file, key file) it offers STARTTLS and requires it; with
    `require_auth` it takes the login `mailer` / `s3cret-pass` (after STARTTLS); with
    `implicit_tls` as well it speaks TLS from the first byte (an `smtps://` URL)."""
    import ssl

    from aiosmtpd.controller import Controller

    inbox = SmtpInbox()
    context = None
    if tls_cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls_cert)
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    options: dict[str, Any] = {
        "auth_required": require_auth,
        "authenticator": inbox.authenticate if require_auth else None,
    }
    if implicit_tls:
        options.update(ssl_context=context, auth_require_tls=False)
    else:
        options.update(
            tls_context=context,
            require_starttls=context is not None,
            auth_require_tls=context is not None,
        )
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield f"{'smtps' if implicit_tls else 'smtp'}://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


# -- a webhook receiver ------------------------------------------------------------------------


@dataclass
class Received:
    """The requests a local receiver got, in order."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


def webhook_receiver(received: Received, slow_seconds: float = 1.0) -> Starlette:
    """Answers by path: /ok 200, /gone 410, /bad 400, /busy 429 (Retry-After: 1) then 200,
    /throttled always 429 with the `Retry-After` given as `?after=`, /flaky 503 then 200,
    /redirect 302 to /ok, /slow waits `slow_seconds` then 200."""

    async def hook(request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        with received.lock:
            n = received.counts[path] = received.counts.get(path, 0) + 1
            received.requests.append(
                {
                    "path": path,
                    "method": request.method,
                    "headers": dict(request.headers),
                    "header_lines": [
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                    ],
                    "body": body,
                }
            )
            received.active[path] = received.active.get(path, 0) + 1
            received.peak[path] = max(received.peak.get(path, 0), received.active[path])
        try:
            if path == "/slow":
                await asyncio.sleep(slow_seconds)
            if path == "/gone":
                return PlainTextResponse("gone for good", status_code=410)
            if path == "/bad":
                return PlainTextResponse("bad request", status_code=400)
            if path == "/busy" and n == 1:
                return PlainTextResponse("slow down", 429, headers={"Retry-After": "1"})
            if path == "/throttled":
                after = request.query_params.get("after", "")
                return PlainTextResponse("slow down", 429, headers={"Retry-After": after})
            if path == "/flaky" and n == 1:
                return PlainTextResponse("try again", status_code=503)
            if path == "/redirect":
                return RedirectResponse("/ok", status_code=302)
            return PlainTextResponse("x" * 3000 if path == "/big" else "thanks")
        finally:
            with received.lock:
                received.active[path] -= 1

    return Starlette(
        routes=[Route("/{path:path}", hook, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
    )


# -- a small website to crawl ------------------------------------------------------------------

SITE_PAGES = 50


def demo_site(  # noqa: C901
    pages: int = SITE_PAGES, slow_seconds: float = 1.0, crawl_delay: float = 0
) -> Starlette:
    """`pages` linked HTML pages (/page/0 ... links to the next three and back to the
    start), a robots.txt that disallows /private/ (with `crawl_delay`), a sitemap.xml, a
    redirect (/old -> /page/1), a link to a 404 (/missing), a slow page (/slow) and a
    non-HTML file (/files/report.pdf). `app.state.hits` counts requests per path,
    `app.state.times` records when each came."""
    hits: dict[str, int] = {}
    times: list[tuple[str, float]] = []

    def page(n: int) -> str:
        links = [f"/page/{(n + k) % pages}" for k in (1, 2, 3)]
        extra = ""
        if n == 0:
            extra = (
                '<a href="/old">old</a><a href="/missing">missing</a><a href="/slow">slow</a>'
                '<a href="/files/report.pdf">report</a><a href="/private/secret">secret</a>'
                '<a href="https://elsewhere.example/x">elsewhere</a>'
                '<a href="/page/1#section">fragment</a><a href="/page/2?">query</a>'
            )
        anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
        return (
            f"<html><head><title>Page {n}</title></head><body><h1>Page {n}</h1>"
            f"<p>Text of page {n}.</p>{anchors}{extra}<script>var x = 1;</script></body></html>"
        )

    async def counted(request: Request) -> None:
        hits[request.url.path] = hits.get(request.url.path, 0) + 1
        times.append((request.url.path, time.monotonic()))

    async def robots(request: Request) -> Response:
        await counted(request)
        return PlainTextResponse(
            f"User-agent: *\nDisallow: /private/\nCrawl-delay: {crawl_delay:g}\n"
        )

    async def sitemap(request: Request) -> Response:
        await counted(request)
        base = str(request.base_url).rstrip("/")
        urls = "".join(f"<url><loc>{base}/page/{n}</loc></url>" for n in (0, pages - 1))
        xml = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
        return Response(xml, media_type="application/xml")

    async def one_page(request: Request) -> Response:
        await counted(request)
        n = int(request.path_params["n"])
        if not 0 <= n < pages:
            return HTMLResponse("<h1>Not found</h1>", status_code=404)
        return HTMLResponse(page(n))

    async def old(request: Request) -> Response:
        await counted(request)
        return RedirectResponse("/page/1", status_code=301)

    async def slow(request: Request) -> Response:
        await counted(request)
        await asyncio.sleep(slow_seconds)
        return HTMLResponse("<html><head><title>Slow</title></head><body>slow</body></html>")

    async def missing(request: Request) -> Response:
        await counted(request)
        page = (
            "<html><head><title>Page not found</title></head><body><h1>Not found</h1>"
            '<p>Try the start page.</p><a href="/page/0">start</a></body></html>'
        )
        return HTMLResponse(page, status_code=404)

    async def pdf(request: Request) -> Response:
        await counted(request)
        return Response(b"%PDF-1.4 not really", media_type="application/pdf")

    async def private(request: Request) -> Response:
        await counted(request)
        return HTMLResponse("<title>Secret</title>")

    app = Starlette(
        routes=[
            Route("/robots.txt", robots),
            Route("/sitemap.xml", sitemap),
            Route("/page/{n:int}", one_page),
            Route("/old", old),
            Route("/slow", slow),
            Route("/missing", missing),
            Route("/files/report.pdf", pdf),
            Route("/private/{rest:path}", private),
        ]
    )
    app.state.hits = hits
    app.state.times = times
    return app


# -- an OpenAI-compatible API ------------------------------------------------------------------


@dataclass
class AiCalls:
    """What the local OpenAI-compatible server was asked, and its behaviour switches."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    api_key: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    slow_seconds: float = 2.0  # how long the `slow` model takes to answer


def embed(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit vector for `text` (the fake model)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b - 127.5 for b in digest[:dimensions]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def openai_compatible(calls: AiCalls) -> Starlette:  # noqa: C901
    """POST /v1/embeddings and /v1/chat/completions (streaming too). Model names: any
    passes through; `no-such-model` is a 404 with OpenAI's error body; `rate-limited`
    answers 429 (Retry-After: 1) on its first call, `overloaded` 503 on its first call;
    `reversed` lists the embeddings last first (each with its right `index`),
    `same-index` gives every embedding `index` 0 (a broken server), and `slow` answers
    after `calls.slow_seconds`."""

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def check(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        body = await request.json()
        calls.requests.append(
            {
                "path": request.url.path,
                "query": request.url.query,
                "body": body,
                "authorization": request.headers.get("authorization"),
            }
        )
        if calls.api_key and request.headers.get("authorization") != f"Bearer {calls.api_key}":
            return None, error(401, "Incorrect API key provided")
        model = body.get("model")
        n = calls.counts[model] = calls.counts.get(model, 0) + 1
        if model == "no-such-model":
            return None, error(404, f"The model `{model}` does not exist")
        if model == "rate-limited" and n == 1:
            return None, error(429, "Rate limit reached", {"Retry-After": "1"})
        if model == "overloaded" and n == 1:
            return None, error(503, "The server is overloaded")
        if model == "slow":
            await asyncio.sleep(calls.slow_seconds)
        return body, None

    async def embeddings(request: Request) -> Response:
        body, failed = await check(request)
        if failed is not None:
            return failed
        assert body is not None
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)
        ]
        if body["model"] == "reversed":
            data.reverse()
        if body["model"] == "same-index":
            for item in data:
                item["index"] = 0
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def chat(request: Request) -> Response:
        body, failed = await check(request)
        if failed is not None:
            return failed
        assert body is not None
        prompt = body["messages"][-1]["content"]
        words = f"Echo: {prompt}".split()
        limit = body.get("max_tokens")
        finish = "stop"
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(words),
            "total_tokens": len(prompt.split()) + len(words),
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-local",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": finish,
                            "message": {"role": "assistant", "content": " ".join(words)},
                        }
                    ],
                    "usage": usage,
                }
            )

        async def chunks() -> Any:
            import json

            for i, word in enumerate(words):
                delta = {"content": (" " if i else "") + word}
                yield (
                    "data: "
                    + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    + "\n\n"
                )
            last = {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}
            yield "data: " + json.dumps(last) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


# -- the settings that point the built-in job types at them ------------------------------------

AI_API_KEY = "sk-local"  # what the stand-in of `main()` requires
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks test vector


def environment(smtp_url: str, hooks: str, site: str, ai: str) -> dict[str, str]:
    """Every variable the examples need to use the stand-ins at these base URLs: the job
    types' settings (the sender address, the signing secret, 127.0.0.1 allowed as a
    destination, no crawl delay, the AI endpoint and key) and the examples' own
    `WEBHOOK_URL` and `SITE_URL`."""
    local = '["127.0.0.1/32"]'  # only loopback: no other private address is opened
    return {
        "TASKFLARE_SMTP_URL": smtp_url,
        "TASKFLARE_EMAIL_FROM": "Shop <shop@example.com>",
        "TASKFLARE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TASKFLARE_WEBHOOK_ALLOWED_NETWORKS": local,
        "TASKFLARE_CRAWL_ALLOWED_NETWORKS": local,
        "TASKFLARE_CRAWL_DELAY": "0",
        "TASKFLARE_IMPORT_ALLOWED_NETWORKS": local,
        "TASKFLARE_AI_BASE_URL": f"{ai}/v1",
        "TASKFLARE_AI_API_KEY": AI_API_KEY,
        "WEBHOOK_URL": f"{hooks}/ok",
        "SITE_URL": site,
    }


def main() -> None:
    """Run every stand-in until Ctrl-C, after printing the `export` lines that use them."""
    import shlex

    with (
        smtp_server() as (smtp_url, _),
        serve(webhook_receiver(Received())) as hooks,
        serve(demo_site(slow_seconds=0.1)) as site,
        serve(openai_compatible(AiCalls(api_key=AI_API_KEY))) as ai,
    ):
        print("# Local services are running. Paste these lines into the shell that runs")
        print("# the examples of docs/job-types.md:")
        for name, value in environment(smtp_url, hooks, site, ai).items():
            print(f"export {name}={shlex.quote(value)}")
        print("# Ctrl-C to stop", flush=True)
        # Ctrl-C (SIGINT) or SIGTERM stops it, even when started where SIGINT is ignored
        # (a shell's background job), which would otherwise leave only `kill -9`.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    main()
