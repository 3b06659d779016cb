"""The HTTP service's edge, against real servers (in-process uvicorn with `serve`'s protocol
and limits, and `taskflare serve`/`taskflare dev` processes): secrets in 503s and startup
lines, forged and rebound requests, control characters, slow clients, non-JSON numbers,
protected offline docs, token before body, hardening headers, capped list answers."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from pydantic import BaseModel, field_validator

from conftest import _fresh_postgres_url
from helpers import HTTP_TIMEOUT
from taskflare import App
from taskflare.web import Tokens, create_api
from taskflare.web.security import MAX_RESPONSE_BYTES, HttpSecurity
from taskflare.webhooks import hmac_signature_header, stripe_signature_header

from .server import (
    DEADLINE,
    GITHUB_SECRET,
    READ_TOKEN,
    STRIPE_SECRET,
    WRITE_TOKEN,
    LiveServer,
    free_socket,
    live_server,
    poll,
    serving,
)

TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
ROOT = Path(__file__).resolve().parents[2]
EMAIL = {"to": "user@example.com", "subject": "Test", "body": "Hello!"}
JOB = orjson.dumps({"type": "send-email", "payload": EMAIL})
OPEN = Tokens(None, None)  # a token-less server: loopback development use
UNAVAILABLE = {
    "success": False,
    "error": "the database is unavailable",
    "code": "database_unavailable",
}


def error_of(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Check an error answer's status, shape and code; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    if code is not None:
        assert body.get("code") == code, body
    message: str = body["error"]
    return message


def free_port() -> int:
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
    return port


def child_env(**extra: str) -> dict[str, str]:
    """This environment without taskflare's HTTP settings, plus `extra`."""
    names = ("TASKFLARE_API_", "TASKFLARE_ALLOWED_", "TASKFLARE_PUBLIC_DOCS")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(names)}
    return {**clean, **extra}


def host_port(live: LiveServer) -> int:
    return int(urlsplit(live.url).port or 0)


# -- 1. secrets in answers -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def unreachable_database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, list[str]]:
    """A database URL that cannot be opened, and the parts of it no client may see."""
    if request.param == "sqlite":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a folder should be")
        return f"sqlite:///{blocker}/tf_secret_db.db", ["tf_secret_db", str(blocker)]
    port = free_port()  # nothing listens there
    url = f"postgresql://tf_secret_user:tf_secret_pw@127.0.0.1:{port}/tf_secret_db"
    return f"{url}?connect_timeout=1", ["tf_secret_user", "tf_secret_pw", "127.0.0.1", str(port)]


async def test_an_outage_answers_503_naming_no_part_of_the_database_url(
    unreachable_database: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    url, secrets = unreachable_database
    caplog.set_level(logging.WARNING, logger="taskflare.http")
    missing = str(uuid.uuid4())
    requests = [
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{missing}", None),
        ("POST", "/jobs", {"type": "send-email", "payload": EMAIL}),
        ("POST", f"/jobs/{missing}/retry", None),  # was 400 "invalid"
        ("DELETE", f"/jobs/{missing}", None),
        ("GET", "/stats", None),
        ("GET", "/queues", None),
        ("GET", "/queues/emails", None),
        ("POST", "/queues/emails/messages", {"body": {"n": 1}}),
        ("POST", "/queues/pull/messages/pull", {}),
        ("POST", "/queues/billing/dlq/reprocess", {}),
        ("GET", "/metrics", None),
    ]
    with live_server(url) as live:
        headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=60) as client:
            answers = await asyncio.gather(
                *(client.request(m, path, json=body) for m, path, body in requests)
            )
    for (method, path, _), response in zip(requests, answers, strict=True):
        assert response.status_code == 503, (method, path, response.text)
        assert response.json() == UNAVAILABLE, (method, path)
        assert response.headers["retry-after"] == "5"
        shown = response.text + str(response.headers)
        assert not [s for s in secrets if s in shown], (method, path, shown)
    logged = [r.getMessage() for r in caplog.records if "database is unavailable" in r.getMessage()]
    assert len(logged) >= len(requests)  # the detail is in the server's log...
    assert "tf_secret_pw" not in caplog.text  # ...with the password redacted
    if url.startswith("postgresql"):
        assert "tf_secret_user:***@" in caplog.text


@pytest.fixture
def pg_url_with_password() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema's URL carrying a password (the test server trusts local
    connections, so any password will do), and that password."""
    for url in _fresh_postgres_url():
        parts = urlsplit(url)
        password = parts.password or "tf-startup-pw-93d1"
        if parts.password is None:
            user = parts.username or "postgres"
            host = parts.netloc.rpartition("@")[2]
            url = parts._replace(netloc=f"{user}:{password}@{host}").geturl()
        yield url, password


SERVED_APP = """
from taskflare import App
app = App({url!r})
app.job("hello")(print)
app.queue("emails")
app.webhook("hook", secret="hook-secret", job_type="hello", scheme="hmac-sha256")
"""


def test_serve_and_dev_startup_lines_redact_the_database_password(
    pg_url_with_password: tuple[str, str], tmp_path: Path
) -> None:
    url, password = pg_url_with_password
    (tmp_path / "served.py").write_text(SERVED_APP.format(url=url))
    spec = f"{tmp_path / 'served.py'}:app"
    port = free_port()
    err = tmp_path / "serve.err"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [TASKFLARE, "serve", spec, "--port", str(port)],
            env=child_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            poll(lambda: healthy(port), timeout=90, what="taskflare serve")
            assert (
                httpx.get(f"http://127.0.0.1:{port}/queues", timeout=HTTP_TIMEOUT).status_code
                == 200
            )
        finally:
            proc.terminate()
            proc.wait(15)
    serve_output = err.read_text()
    assert "database postgresql://" in serve_output and ":***@" in serve_output
    dev = subprocess.run(
        [TASKFLARE, "dev", spec, "--duration", "3", "--port", str(free_port())],
        env=child_env(COLUMNS="400"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert dev.returncode == 0, dev.stderr
    # The summary's title wraps inside the table: compare without the white space.
    dev_output = "".join((dev.stdout + dev.stderr).split())
    assert "taskflaredev:postgresql://" in dev_output
    assert ":***@" in dev_output
    for output in (serve_output, dev_output):
        assert password not in output


# -- 2. forged and rebound requests --------------------------------------------------------


def test_a_body_must_say_it_is_json_or_get_415(sqlite_url: str) -> None:
    """Without a token, any web page could post a `text/plain` body (no CORS preflight)."""
    with live_server(sqlite_url, tokens=OPEN) as live, live.client(token=None) as client:
        assert client.post("/queues/emails/messages", json={"body": 1}).status_code == 200
        forged = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
        for content_type in forged:
            headers = {"content-type": content_type} if content_type else {}
            response = client.post("/jobs", content=JOB, headers=headers)
            assert "application/json" in error_of(response, 415, "unsupported_media_type")
            purge = client.post(
                "/queues/emails/purge", content=b'{"confirm": "emails"}', headers=headers
            )
            error_of(purge, 415, "unsupported_media_type")
        assert client.get("/jobs").json()["count"] == 0
        assert client.get("/queues/emails").json()["queue"]["depth"]["ready"] == 1
        # POSTs that take no body still work with none, whatever the Content-Type.
        retry = client.post(f"/jobs/{uuid.uuid4()}/retry", headers={"content-type": "text/plain"})
        error_of(retry, 404, "not_found")
        assert client.post("/queues/emails/pause").status_code == 200
        assert client.post("/queues/emails/resume", content=b"").status_code == 200
        assert client.post("/queues/pull/messages/pull").status_code == 200
        charset = {"content-type": "application/json; charset=utf-8"}
        assert client.post("/jobs", content=JOB, headers=charset).status_code == 200


def test_webhooks_take_what_providers_send(live: LiveServer) -> None:
    """Stripe sends `application/json; charset=utf-8`, GitHub `application/json`; others
    (SNS) `text/plain`: the signature authenticates, the raw body is what is verified."""
    stripe = b'{"id": "evt_ct_1", "type": "invoice.paid"}'
    github = b'{"id": "gh-ct-1", "action": "opened"}'
    other = b'{"id": "gh-ct-2", "action": "closed"}'
    with live.client(token=None) as client:
        sent = [
            client.post(
                "/webhooks/stripe",
                content=stripe,
                headers={
                    "content-type": "application/json; charset=utf-8",
                    "stripe-signature": stripe_signature_header(stripe, STRIPE_SECRET),
                },
            ),
            client.post(
                "/webhooks/github",
                content=github,
                headers={
                    "content-type": "application/json",
                    "x-signature": hmac_signature_header(github, GITHUB_SECRET),
                },
            ),
            client.post(
                "/webhooks/github",
                content=other,
                headers={
                    "content-type": "text/plain; charset=utf-8",
                    "x-signature": hmac_signature_header(other, GITHUB_SECRET),
                    "origin": "https://hooks.example.net",
                },
            ),
        ]
    for response in sent:
        assert response.status_code == 200, response.text
        assert response.json()["received"] is True


def test_the_host_must_name_this_server(sqlite_url: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: that Host is refused."""
    with live_server(sqlite_url, tokens=OPEN) as live, live.client(token=None) as client:
        port = host_port(live)
        job_id = client.post("/jobs", json={"type": "send-email", "payload": EMAIL}).json()
        for good in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            f"LOCALHOST:{port}",
        ):
            assert client.get("/jobs", headers={"host": good}).status_code == 200, good
        for bad in (
            f"attacker.example:{port}",
            "attacker.example",
            f"localhost:{port + 1}",
            f"127.0.0.1.nip.io:{port}",
            "",
        ):
            response = client.get(f"/jobs/{job_id['jobId']}", headers={"host": bad})
            assert "allowed-host" in error_of(response, 400, "invalid_host"), bad
            assert "user@example.com" not in response.text
    allowed = HttpSecurity(allowed_hosts=("jobs.example.com", "api.example.com:8443"))
    with (
        live_server(sqlite_url, tokens=OPEN, security=allowed) as live,
        live.client(token=None) as client,
    ):
        for good in ("jobs.example.com", "jobs.example.com:9000", "api.example.com:8443"):
            assert client.get("/jobs", headers={"host": good}).status_code == 200, good
        error_of(client.get("/jobs", headers={"host": "api.example.com"}), 400, "invalid_host")
    anything = HttpSecurity(allowed_hosts=("*",))
    with (
        live_server(sqlite_url, tokens=OPEN, security=anything) as live,
        live.client(token=None) as client,
    ):
        assert client.get("/jobs", headers={"host": "attacker.example"}).status_code == 200


def test_allowed_hosts_origins_and_public_docs_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFLARE_ALLOWED_HOSTS", "jobs.example.com, api.example.com:8443,")
    monkeypatch.setenv("TASKFLARE_ALLOWED_ORIGINS", "https://admin.example.com")
    monkeypatch.setenv("TASKFLARE_PUBLIC_DOCS", "1")
    security = HttpSecurity.from_env(allowed_hosts=["cli.example.com"], bind_host="10.1.2.3")
    assert security.allowed_hosts == ("cli.example.com", "jobs.example.com", "api.example.com:8443")
    assert security.allowed_origins == ("https://admin.example.com",)
    assert security.public_docs
    server = ("127.0.0.1", 8000)
    assert security.host_allowed("api.example.com:8443", server, https=False)
    assert security.host_allowed("10.1.2.3:8000", server, https=False)  # the --host given
    assert not security.host_allowed("10.1.2.3:9000", server, https=False)
    assert security.origin_allowed("https://admin.example.com:443", "x", https=False)
    with pytest.raises(ValueError, match="allowed origin"):
        HttpSecurity(allowed_origins=("admin.example.com",))
    with pytest.raises(ValueError, match="allowed host"):
        HttpSecurity(allowed_hosts=("http://jobs.example.com/",))


def test_a_page_from_another_origin_cannot_change_anything(sqlite_url: str) -> None:
    with live_server(sqlite_url, tokens=OPEN) as live, live.client(token=None) as client:
        port = host_port(live)
        for origin in ("https://evil.example", "null", f"http://localhost:{port + 1}"):
            foreign = {"origin": origin}
            response = client.post(
                "/jobs", json={"type": "send-email", "payload": EMAIL}, headers=foreign
            )
            assert "allowed-origin" in error_of(response, 403, "forbidden_origin")
            error_of(client.post("/queues/emails/pause", headers=foreign), 403, "forbidden_origin")
            error_of(client.delete(f"/jobs/{uuid.uuid4()}", headers=foreign), 403)
            assert client.get("/jobs", headers=foreign).status_code == 200  # reads: Host + CORS
        assert client.get("/jobs").json()["count"] == 0
        assert client.get("/queues/emails").json()["queue"]["paused"] is False
        same = {"origin": f"http://127.0.0.1:{port}"}  # e.g. "Try it out" in /docs
        assert (
            client.post(
                "/jobs", json={"type": "send-email", "payload": EMAIL}, headers=same
            ).status_code
            == 200
        )
    admin = HttpSecurity(allowed_origins=("https://admin.example.com",))
    with live_server(sqlite_url, security=admin) as live, live.client() as client:
        allowed = {"origin": "https://admin.example.com"}
        assert client.post("/queues/emails/pause", headers=allowed).status_code == 200
        # A token does not make a foreign page's request acceptable.
        error_of(
            client.post("/queues/emails/resume", headers={"origin": "https://evil.example"}), 403
        )


# -- 3. control characters -----------------------------------------------------------------


def test_control_characters_in_a_path_or_query_are_refused_at_the_edge(live: LiveServer) -> None:
    """PostgreSQL answered 500 to a NUL in any string that reached SQL; now both backends
    answer 400 before any route runs (the read-only token was enough)."""
    reads = [
        "/jobs/ab%00cd",
        "/jobs/ab%0Acd",
        "/jobs?type=a%00b",
        "/jobs?queue=a%00b",
        "/jobs?cursor=a%00b",
        "/jobs?status=failed&type=a%1Fb",
        "/stats?queue=a%00b",
        "/stats?type=a%7Fb",
        "/queues/a%00b",
        "/queues/emails/dlq?limit=1%00",
        "/metrics?x=%01",
    ]
    with live.client(token=READ_TOKEN) as reader:
        for path in reads:
            assert "control character" in error_of(reader.get(path), 400, "control_character")
    with live.client() as writer:
        error_of(writer.post("/jobs/a%00b/retry"), 400, "control_character")
        error_of(writer.delete("/jobs/a%00b"), 400, "control_character")
        error_of(writer.post("/queues/a%00b/pause"), 400, "control_character")
        error_of(writer.post("/queues/billing/dlq/reprocess?ids=%00"), 400, "control_character")
        assert writer.get("/jobs/ab%20cd").status_code == 404  # a space is no control character
        assert writer.get("/stats").status_code == 200
        # A NUL hidden inside a (base64) cursor is no cursor of ours: 400, not a 500.
        hidden = base64.urlsafe_b64encode(orjson.dumps([1.0, "a\x00b"])).decode()
        error_of(writer.get("/jobs", params={"cursor": hidden}), 400)
        dlq = writer.post("/queues/billing/dlq/reprocess", json={"ids": ["a\x00b"]})
        assert 400 <= dlq.status_code < 500, dlq.text


def test_control_characters_in_json_text_fields_answer_422_naming_the_field(
    live: LiveServer,
) -> None:
    fields = {
        "type": {"type": "send-email\x00"},
        "idempotencyKey": {"idempotencyKey": "k\x00"},
        "correlationId": {"correlationId": "c\x1b[31m"},
        "queue": {"queue": "default\x00"},
    }
    nul_lease = base64.urlsafe_b64encode(b"a\x00b:c:1").decode().rstrip("=")
    with live.client() as client:
        for name, extra in fields.items():
            body = {"type": "send-email", "payload": EMAIL, **extra}
            message = error_of(client.post("/jobs", json=body), 422, "invalid")
            assert message.startswith(name) and "control character" in message, message
        reprocess = client.post("/queues/billing/dlq/reprocess", json={"ids": ["ok", "a\x00b"]})
        assert "ids" in error_of(reprocess, 422)
        # A lease id is opaque: one decoding to a NUL is not ours, an unknown lease (a
        # warning), never a 422 that would refuse the other acks of the request.
        for kind, item in (("acks", {"lease_id": nul_lease}), ("retries", {"lease_id": nul_lease})):
            ack = client.post("/queues/pull/messages/ack", json={kind: [item]})
            assert ack.status_code == 200, ack.text
            assert set(ack.json()["warnings"]) == {nul_lease}
        # Payloads and message bodies are stored as bytes: a NUL in them is fine.
        payload = {"to": "a\x00b@example.com", "subject": "\x00", "body": "x"}
        stored = client.post("/jobs", json={"type": "send-email", "payload": payload})
        assert stored.status_code == 200, stored.text
        job = client.get(f"/jobs/{stored.json()['jobId']}").json()["job"]
        assert job["payload"] == payload
        assert client.post("/queues/emails/messages", json={"body": "a\x00b"}).status_code == 200
        assert client.get("/jobs").json()["count"] == 1


# -- 4. slow clients -----------------------------------------------------------------------

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
# How long past a timeout the test waits for the server to close a connection before
# failing: a deadline, not a measure (the lower bounds are; a loaded machine only closes
# later), so that a slow server is not taken for one that never closes.
MARGIN = 8 * HEADER_TIMEOUT
CONNECTION_LIMIT = 40


def healthy(port: int, host: str = "127.0.0.1") -> bool:
    try:
        return httpx.get(f"http://{host}:{port}/health", timeout=HTTP_TIMEOUT).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def slow_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`taskflare serve` (a real process) with short timeouts and a small connection limit;
    its port."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "served.py").write_text(SERVED_APP.format(url=f"sqlite:///{folder / 'tf.db'}"))
    port = free_port()
    args = [TASKFLARE, "serve", f"{folder / 'served.py'}:app", "--port", str(port)]
    args += ["--timeout-header", str(HEADER_TIMEOUT), "--timeout-body", str(BODY_TIMEOUT)]
    args += ["--limit-concurrency", str(CONNECTION_LIMIT), "--allowed-host", "jobs.example.com"]
    env = child_env(TASKFLARE_ALLOWED_ORIGINS="https://admin.example.com")
    with (folder / "serve.err").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, cwd=folder)
        try:
            poll(lambda: healthy(port), timeout=90, what="taskflare serve")
            yield port
        finally:
            proc.terminate()
            proc.wait(15)


def slow_clients(port: int, count: int, opening: bytes, drip: bytes, within: float) -> list[Any]:
    """Open `count` connections, send `opening` on each, then `drip` on each once a second
    until the server has closed them all or `within` seconds have passed. For each
    connection: (seconds until the server closed it, or None; what it answered)."""
    started = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    received = {s: b"" for s in socks}
    closed: dict[socket.socket, float] = {}
    try:
        for sock in socks:
            sock.sendall(opening)
        next_drip = started + 1
        deadline = started + within
        while len(closed) < count and time.monotonic() < deadline:
            still_open = [s for s in socks if s not in closed]
            wait = max(0.0, min(next_drip, deadline) - time.monotonic())
            readable, _, _ = select.select(still_open, [], [], wait)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                received[sock] += data
                if not data:
                    closed[sock] = time.monotonic() - started
            if time.monotonic() >= next_drip:
                next_drip += 1
                for sock in still_open:
                    if sock not in closed:
                        try:
                            sock.sendall(drip)
                        except OSError:
                            closed[sock] = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    return [(closed.get(s), received[s]) for s in socks]


def test_slow_header_senders_are_disconnected_after_the_header_timeout(slow_served: int) -> None:
    """200 connections sending one header line a second were all still open after 20 s."""
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{slow_served}\r\n".encode()
    outcomes = slow_clients(slow_served, 200, request, b"X-Slow: 1\r\n", HEADER_TIMEOUT + MARGIN)
    idle = slow_clients(slow_served, 1, b"", b"", HEADER_TIMEOUT + MARGIN)  # never says a word
    for closed_after, answer in outcomes:
        assert closed_after is not None, "a slow header sender was not disconnected"
        assert HEADER_TIMEOUT - 0.5 < closed_after < HEADER_TIMEOUT + MARGIN
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"code":"timeout"' in answer
    assert idle[0][0] is not None and idle[0][1] == b""
    assert healthy(slow_served)


def test_slow_body_senders_get_408_after_the_body_timeout(slow_served: int) -> None:
    """100 connections sending a body a byte a second were all still open after 20 s."""
    host = f"127.0.0.1:{slow_served}"
    heads = [
        f"POST /jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n",
        f"POST /webhooks/hook HTTP/1.1\r\nHost: {host}\r\n",  # read raw by the route
        f"POST /queues/emails/pause HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n",
        f"POST /jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
    ]
    outcomes = []
    for head in heads:
        opening = head.encode() + (b"" if "chunked" in head else b"Content-Length: 100\r\n\r\n{")
        drip = b"1\r\n \r\n" if "chunked" in head else b" "
        outcomes += slow_clients(slow_served, 25, opening, drip, BODY_TIMEOUT + MARGIN)
    for closed_after, answer in outcomes:
        assert closed_after is not None, "a slow body sender was not disconnected"
        assert closed_after < BODY_TIMEOUT + MARGIN
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"did not arrive within" in answer
    assert httpx.get(f"http://{host}/jobs", timeout=HTTP_TIMEOUT).json()["count"] == 0


def test_connections_over_the_limit_are_answered_503(slow_served: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", slow_served)) for _ in range(CONNECTION_LIMIT)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # and nothing more
        assert (
            httpx.get(f"http://127.0.0.1:{slow_served}/health", timeout=HTTP_TIMEOUT).status_code
            == 503
        )
    finally:
        for sock in socks:
            sock.close()
    poll(lambda: healthy(slow_served), timeout=HEADER_TIMEOUT + MARGIN, what="a free slot")


def test_serve_takes_allowed_hosts_and_origins_from_options_and_environment(
    slow_served: int,
) -> None:
    base = f"http://127.0.0.1:{slow_served}"
    named = httpx.get(f"{base}/jobs", headers={"host": "jobs.example.com"}, timeout=HTTP_TIMEOUT)
    assert named.status_code == 200
    error_of(
        httpx.get(f"{base}/jobs", headers={"host": "other.example.com"}, timeout=HTTP_TIMEOUT),
        400,
        "invalid_host",
    )
    admin = httpx.post(
        f"{base}/queues/emails/pause",
        headers={"origin": "https://admin.example.com"},
        timeout=HTTP_TIMEOUT,
    )
    assert admin.status_code == 200
    evil = httpx.post(
        f"{base}/queues/emails/resume",
        headers={"origin": "https://evil.example"},
        timeout=HTTP_TIMEOUT,
    )
    error_of(evil, 403, "forbidden_origin")
    assert httpx.post(f"{base}/queues/emails/resume", timeout=HTTP_TIMEOUT).status_code == 200


# -- 5. numbers JSON does not have ---------------------------------------------------------


def test_nan_and_infinity_are_refused_instead_of_stored_as_null(live: LiveServer) -> None:
    with live.client() as client:
        for constant in ("NaN", "Infinity", "-Infinity"):
            job = b'{"type": "send-email", "payload": {"x": %s}}' % constant.encode()
            answer = error_of(client.post("/jobs", content=job, headers=json_type()), 400)
            assert f"payload.x: {constant} is not a JSON number" in answer
            message = b'{"messages": [{"body": [1, %s]}]}' % constant.encode()
            sent = client.post("/queues/emails/messages", content=message, headers=json_type())
            assert f"messages[0].body[1]: {constant} is not a JSON number" in error_of(sent, 400)
            delay = b'{"type": "send-email", "payload": {}, "delaySeconds": %s}' % constant.encode()
            assert constant in error_of(
                client.post("/jobs", content=delay, headers=json_type()), 400
            )
        huge = b'{"type": "send-email", "payload": {"x": [1e400]}}'
        answer = error_of(client.post("/jobs", content=huge, headers=json_type()), 400)
        assert "payload.x[0]: Infinity is not a JSON number" in answer
        surrogate = b'{"type": "send-email", "payload": {"x": "\\ud800"}}'
        assert "malformed JSON" in error_of(
            client.post("/jobs", content=surrogate, headers=json_type()), 400
        )
        assert client.get("/jobs").json()["count"] == 0
        assert client.get("/queues/emails").json()["queue"]["depth"]["ready"] == 0


def json_type() -> dict[str, str]:
    return {"content-type": "application/json"}


# -- 6. schema and docs --------------------------------------------------------------------

DOCS = ["/openapi.json", "/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"]


def test_schema_and_docs_need_a_token_unless_published(sqlite_url: str) -> None:
    with (
        live_server(sqlite_url) as live,
        live.client(token=None) as anonymous,
        live.client(token=READ_TOKEN) as reader,
    ):
        for path in DOCS:
            refused = anonymous.get(path)
            error_of(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert reader.get(path).status_code == 200, path
    published = HttpSecurity(public_docs=True)
    with live_server(sqlite_url, security=published) as live, live.client(token=None) as client:
        for path in DOCS:
            assert client.get(path).status_code == 200, path
        error_of(client.get("/jobs"), 401)


def test_docs_are_served_from_the_package_and_work_offline(live: LiveServer) -> None:
    with live.client(token=READ_TOKEN) as client:
        for page, marker in (("/docs", b"SwaggerUIBundle"), ("/redoc", b"Redoc")):
            html = client.get(page)
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            assert "://" not in html.text, html.text  # nothing from a CDN, nor any other site
            assert "'self'" in html.headers["content-security-policy"]
            urls = re.findall(r'(?:src|href)="([^"]+)"', html.text)
            assert urls and all(u.startswith("/docs/assets/") for u in urls), urls
            bundles = [client.get(u) for u in urls]
            assert all(b.status_code == 200 and len(b.content) > 1000 for b in bundles), urls
            assert any(marker in b.content for b in bundles)
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert schema["paths"]["/jobs"]["get"]["security"] == [{"bearerAuth": []}]
    assert schema["paths"]["/metrics"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "security" not in schema["paths"]["/webhooks/{source}"]["post"]


def test_the_package_loads_nothing_from_a_cdn() -> None:
    cdn = re.compile(r"cdn\.|unpkg\.com|jsdelivr")
    sources = sorted((ROOT / "src").rglob("*"))
    found = [
        str(p)
        for p in sources
        if p.is_file() and p.suffix != ".pyc" and cdn.search(p.read_text(errors="replace"))
    ]
    assert found == []


# -- 7. the token before the body; outages are 503 ------------------------------------------


def test_the_token_is_checked_before_the_body_is_read(live: LiveServer) -> None:
    garbage = b'{"type": "send-email", "payload": [' + b"[" * (1024 * 1024 - 40)
    with live.client(token=None) as anonymous, live.client(token=READ_TOKEN) as reader:
        for client in (anonymous, reader):
            for body, content_type in (
                (b'{"type": "send-email", ', "application/json"),
                (garbage, "application/json"),
                (b'{"type": "send-email", "payload": NaN}', "application/json"),
                (JOB, "text/plain"),
            ):
                response = client.post(
                    "/jobs", content=body, headers={"content-type": content_type}
                )
                assert "token" in error_of(response, 401)


# -- 8. hardening --------------------------------------------------------------------------


def test_every_answer_says_nosniff_and_no_store(live: LiveServer) -> None:
    with live.client() as writer, live.client(token=None) as anonymous:
        answers = [
            writer.get("/jobs"),
            writer.get(f"/jobs/{uuid.uuid4()}"),
            writer.get("/metrics"),
            writer.post("/jobs", content=JOB, headers={"content-type": "text/plain"}),
            writer.get("/jobs", headers={"host": "attacker.example"}),
            writer.get("/jobs/%00"),
            anonymous.get("/health"),
            anonymous.get("/stats"),
        ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["cache-control"] == "no-store", response.url
    refused = answers[-1]
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="taskflare"'


class _BuggyPayload(BaseModel):
    """A payload model with a bug: its validator raises what pydantic does not catch."""

    to: str

    @field_validator("to")
    @classmethod
    def _broken(cls, value: str) -> str:
        raise RuntimeError(f"a bug in the payload model (saw {value!r})")


async def _buggy(payload: _BuggyPayload) -> None:
    return None


def test_a_500_gets_the_hardening_headers_and_keeps_its_secrets(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in a route was answered by Starlette's outermost error
    middleware, outside the edge: the 500 had no nosniff or no-store, and under
    /client/v4/ not Cloudflare's error shape."""
    app = App(database_url)
    app.job("buggy")(_buggy)
    security = HttpSecurity(bind_host="127.0.0.1")
    api = create_api(app, Tokens(WRITE_TOKEN, READ_TOKEN), security)
    caplog.set_level(logging.ERROR, logger="taskflare.http")
    with (
        serving(api, security) as (url, _),
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, timeout=DEADLINE
        ) as client,
    ):
        body = orjson.dumps({"type": "buggy", "payload": {"to": "secret-value-7f3a"}})
        response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
        again = client.get("/health")
    assert response.status_code == 500, response.text
    assert response.json() == {
        "success": False,
        "error": "internal error (RuntimeError); see the server log",
        "code": "internal",
    }
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "secret-value-7f3a" not in response.text
    assert again.status_code == 200  # the same connection carries the next request
    assert "unhandled error in the HTTP API" in caplog.text


async def test_a_job_list_stops_at_about_8_mb_and_pages_on(live: LiveServer) -> None:
    """`GET /jobs?limit=1000` with full payloads answered 60 MB; now a page stops adding
    jobs at ~8 MB and its `nextCursor` leads to the rest."""
    big = {"to": "user@example.com", "subject": "big", "body": "x" * 110_000}
    async with live.worker_app() as app:
        ids = {(await app.enqueue("send-email", big)).id for _ in range(90)}
    with live.client() as client:
        first = client.get("/jobs", params={"limit": 1000})
        assert first.status_code == 200
        assert len(first.content) <= MAX_RESPONSE_BYTES + 64 * 1024
        page = first.json()
        assert 50 < page["count"] < 90 and page["nextCursor"]
        rest = client.get("/jobs", params={"limit": 1000, "cursor": page["nextCursor"]}).json()
    assert rest["nextCursor"] is None
    seen = [j["id"] for j in page["jobs"] + rest["jobs"]]
    assert len(seen) == len(set(seen)) == 90 and set(seen) == ids
