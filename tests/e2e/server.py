"""A real uvicorn server on 127.0.0.1 for the HTTP tests, and the app it serves.

The server runs `create_api(app)` in a background thread with its own event loop and its
own `App`; the test talks to it with `httpx` and, when it needs a worker, builds a second
`App` from the same factory on the same database (the handlers report to a shared
`Recorder`), so nothing is shared with the server but the database and the socket.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel

from taskflare import App, Backoff, JobContext, MessageBatch, PermanentError, Unique
from taskflare.web import Tokens, create_api
from taskflare.web.security import HttpSecurity, uvicorn_options

WRITE_TOKEN = "tf-write-7c1e0b9d2f"
READ_TOKEN = "tf-read-4a8d3e6b5c"
STRIPE_SECRET = "whsec_stripe_93b1f0e2"
GITHUB_SECRET = "ghsecret_5d7a2c4e"
SECRETS = (WRITE_TOKEN, READ_TOKEN, STRIPE_SECRET, GITHUB_SECRET)


class Email(BaseModel):
    """Seed 002's `send-email` payload."""

    to: str
    subject: str
    body: str


@dataclass
class Recorder:
    """What the handlers ran, shared between the server's app and the test's worker app."""

    runs: list[tuple[str, Any]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, value: Any) -> None:
        with self.lock:
            self.runs.append((kind, value))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [value for k, value in self.runs if k == kind]


def build_app(url: str, recorder: Recorder) -> App:
    """The app under test: job types, plain queues, a pull queue and two webhook sources."""
    app = App(url)

    @app.job("send-email", max_attempts=3)
    async def send_email(payload: Email) -> dict[str, Any]:
        recorder.add("send-email", payload.model_dump())
        return {"sent": True}

    @app.job("always-fails", max_attempts=1)
    async def always_fails(payload: Any) -> None:
        recorder.add("always-fails", payload)
        raise PermanentError("this job always fails")

    @app.job("flaky", max_attempts=2, retry=Backoff(base=0, cap=0, jitter=False))
    async def flaky(payload: Any, ctx: JobContext) -> str:
        recorder.add("flaky", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    # A job queue with a dead-letter queue: a failing `charge` lands in billing-dlq.
    app.queue("billing", max_batch_timeout=0, max_retries=0, dead_letter_queue="billing-dlq")

    @app.job("charge", queue="billing", max_attempts=1)
    async def charge(payload: Any) -> dict[str, Any]:
        recorder.add("charge", payload)
        if "charge" in recorder.failing:
            raise PermanentError("card declined")
        return {"charged": True}

    emails = app.queue("emails", max_batch_timeout=0, max_message_bytes=4096)

    @emails.consumer
    async def consume(batch: MessageBatch) -> None:
        for message in batch.messages:
            recorder.add("emails", message.body)

    # Consumed only over HTTP (pull consumers); no Python consumer.
    app.queue("pull", max_retries=2, dead_letter_queue="pull-dlq")
    app.queue("later", delivery_delay=60)  # every send naming no delay waits a minute

    app.job("stripe-event")(lambda event: recorder.add("stripe-event", event))
    app.job("github-event")(lambda event: recorder.add("github-event", event))
    app.job("notify-once", unique=Unique(by=("type", "payload"), keys=("user",)))(
        lambda payload: recorder.add("notify-once", payload)
    )
    app.webhook("stripe", secret=STRIPE_SECRET, job_type="stripe-event")
    app.webhook("github", secret=GITHUB_SECRET, job_type="github-event", scheme="hmac-sha256")
    return app


# How long a client waits for an answer, and `poll` for a condition, before failing [s]:
# a deadline, not a measure (a loaded machine makes a 50 ms request take seconds).
DEADLINE = 60.0


def poll(predicate: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    """Call `predicate` until it returns something truthy (blocking); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_socket() -> socket.socket:
    """A listening-ready TCP socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class LiveServer:
    """A running server: its base URL, the database URL and the handlers' recorder."""

    url: str
    database_url: str
    recorder: Recorder
    server: uvicorn.Server

    def client(self, token: str | None = WRITE_TOKEN, **kwargs: Any) -> httpx.Client:
        """A blocking client for this server, with a bearer token (None: no header)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs.setdefault("timeout", DEADLINE)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def aclient(self, token: str | None = WRITE_TOKEN) -> httpx.AsyncClient:
        """An async client for this server, with a bearer token (None: no header)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=DEADLINE)

    @asynccontextmanager
    async def worker_app(self) -> AsyncIterator[App]:
        """A second app on the same database (for an in-process `Worker` or `drain`)."""
        app = build_app(self.database_url, self.recorder)
        try:
            yield app
        finally:
            await app.close()


@contextmanager
def serving(api: Any, security: HttpSecurity, **options: Any) -> Iterator[tuple[str, Any]]:
    """Run the ASGI `api` with uvicorn in a thread on a free port of 127.0.0.1 until the
    block ends (with the protocol and limits `taskflare serve` uses for `security`);
    yields its base URL and the uvicorn server."""
    config = uvicorn.Config(
        api,
        lifespan="on",
        log_config=None,
        access_log=False,
        **options,
        **uvicorn_options(security),
    )
    server = uvicorn.Server(config)
    sock = free_socket()
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the test server did not start")
        thread.join(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


@contextmanager
def live_server(
    database_url: str,
    tokens: Tokens | None = None,
    recorder: Recorder | None = None,
    security: HttpSecurity | None = None,
) -> Iterator[LiveServer]:
    """Serve the test app with uvicorn on a free port of 127.0.0.1 until the block ends,
    with the protocol and limits `taskflare serve` uses."""
    recorder = recorder or Recorder()
    security = security or HttpSecurity(bind_host="127.0.0.1")
    app = build_app(database_url, recorder)
    tokens = tokens if tokens is not None else Tokens(WRITE_TOKEN, READ_TOKEN)
    api = create_api(app, tokens, security)
    with serving(api, security, log_level="info", timeout_notify=5) as (url, server):
        yield LiveServer(url, database_url, recorder, server)
