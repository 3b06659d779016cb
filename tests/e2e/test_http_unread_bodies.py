"""Answers given before a request's body was read (the edge's refusals, unknown paths and
methods, a route's early 4xx), against a real server: the server first reads and drops
what the client is still sending, so that the client gets the answer rather than a reset
connection ('Connection reset by peer' in CI, `POST /webhooks/nope`) and the connection
carries the next request. A body over the cap, or one that does not arrive within the
body timeout, still gets the answer, and the connection is closed."""

from __future__ import annotations

import select
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import orjson
import pytest

from taskflare.web.request_body import DRAIN_LIMIT
from taskflare.web.security import HttpSecurity

from .server import DEADLINE, WRITE_TOKEN, LiveServer, live_server

BODY = orjson.dumps({"type": "send-email", "payload": {"to": "a@b.c", "note": "x" * 4000}})
FORM = b"csrf=forged&token=" + b"x" * 4000
# How long the client waits, between the two halves of a body, for an answer that would
# come too early; the test holds whatever the timing (an answer after the gap still says
# `connection: close` without the drain), the gap only lets an early one arrive first.
GAP = 0.3
JSON = ("content-type", "application/json")
FORM_TYPE = ("content-type", "application/x-www-form-urlencoded")
FORGED = ("origin", "https://evil.example")
TOKEN = ("authorization", f"Bearer {WRITE_TOKEN}")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    early: bool  # the answer started before the client had sent the whole body


class RawConnection:
    """One HTTP/1.1 connection driven by hand, h11 parsing for the client: the body goes
    out in two writes, with a gap between them, as httpx sends a head and its body."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=DEADLINE)
        self.conn = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def answering(self, within: float) -> bool:
        """Whether the server sends something within `within` seconds."""
        readable, _, _ = select.select([self.sock], [], [], within)
        return bool(readable)

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        declared: int | None = None,
        sent: int | None = None,
    ) -> Answer:
        """Send a request announcing `declared` bytes (default: the body's length), its
        body's first half, wait `GAP` for an early answer, the rest (only `sent` bytes when
        given), and read the answer."""
        length = len(body) if declared is None else declared
        head = [("host", self.host), ("content-length", str(length)), *headers]
        self._send(h11.Request(method=method, target=path, headers=head))
        body = body if sent is None else body[:sent]
        half = len(body) // 2
        if half:
            self._send(h11.Data(data=body[:half]))
        early = self.answering(GAP)
        if body[half:]:
            self._send(h11.Data(data=body[half:]))
        if sent is None:
            self._send(h11.EndOfMessage())
        return self.answer(early)

    def answer(self, early: bool = False) -> Answer:
        response: h11.Response | None = None
        chunks = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.InformationalResponse):
                raise AssertionError(f"the server asked for the body: {event.status_code}")
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("the server closed the connection without an answer")
        assert response is not None
        headers = {k.decode().lower(): v.decode() for k, v in response.headers}
        return Answer(response.status_code, headers, b"".join(chunks), early)

    def closed_by_server(self) -> bool:
        """Whether the server closed the connection (EOF or reset) after its answer."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def next_request_works(self) -> None:
        """A second request on this connection is answered (it was kept open)."""
        self.conn.start_next_cycle()  # h11 refuses when either side said `close`
        self._send(h11.Request(method="GET", target="/health/live", headers=[("host", self.host)]))
        self._send(h11.EndOfMessage())
        assert self.answer().status == 200


@pytest.fixture
def connection(sqlite_live: LiveServer) -> Iterator[RawConnection]:
    conn = RawConnection(sqlite_live.url)
    try:
        yield conn
    finally:
        conn.close()


def check_drained(answer: Answer, status: int, connection: RawConnection) -> None:
    """The answer came after the whole body, without `connection: close`, and the
    connection carries the next request."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert not answer.early, "answered before the body was read"
    assert answer.headers.get("connection") != "close", answer.headers
    connection.next_request_works()


MISSING = str(uuid.uuid4())
# (what, method, path, headers, body, status): each is answered without the body's being
# needed; the last ones were answered before it was read (the edge's refusals read it).
EARLY_ANSWERS = [
    ("no token", "POST", "/jobs", [JSON], BODY, 401),
    ("wrong token", "POST", "/jobs", [JSON, ("authorization", "Bearer nope")], BODY, 401),
    ("forged origin", "POST", "/jobs", [JSON, TOKEN, FORGED], BODY, 403),
    ("not JSON", "POST", "/jobs", [TOKEN, ("content-type", "text/plain")], BODY, 415),
    ("unknown path", "POST", "/webhooks/stripe/extra", [JSON], BODY, 404),
    ("unknown path, GET", "GET", "/no/such/path", [JSON, TOKEN], BODY, 404),
    ("wrong method", "PUT", "/webhooks/stripe", [JSON], BODY, 405),
    ("OPTIONS", "OPTIONS", "/jobs", [JSON, TOKEN], BODY, 405),
    ("unknown webhook source", "POST", "/webhooks/nope", [JSON], BODY, 404),
    ("unknown job", "GET", f"/jobs/{MISSING}", [JSON, TOKEN], BODY, 404),
    ("dashboard: unknown page", "POST", "/dashboard/nope", [FORM_TYPE], FORM, 404),
    ("dashboard: a page is GET", "POST", "/dashboard/jobs", [FORM_TYPE], FORM, 405),
    ("over the body limit", "POST", "/jobs", [JSON, TOKEN], b"[" * (3 * DRAIN_LIMIT // 2), 413),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [case[1:] for case in EARLY_ANSWERS],
    ids=[case[0] for case in EARLY_ANSWERS],
)
def test_an_early_answer_waits_for_the_body_and_keeps_the_connection(
    connection: RawConnection,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    status: int,
) -> None:
    answer = connection.request(method, path, headers, body)
    check_drained(answer, status, connection)


def test_too_many_wrong_tokens_429_waits_for_the_body_too(
    sqlite_live: LiveServer, connection: RawConnection
) -> None:
    with sqlite_live.client(token="guess") as guesser:
        for _ in range(30):
            assert guesser.get("/queues").status_code == 401
    answer = connection.request("POST", "/jobs", [JSON, TOKEN], BODY)
    check_drained(answer, 429, connection)


def test_a_chunked_body_is_drained_too(connection: RawConnection) -> None:
    head = [("host", connection.host), ("transfer-encoding", "chunked"), JSON]
    connection._send(h11.Request(method="POST", target="/webhooks/nope", headers=head))
    connection._send(h11.Data(data=BODY))
    early = connection.answering(GAP)
    connection._send(h11.Data(data=BODY))
    connection._send(h11.EndOfMessage())
    check_drained(connection.answer(early), 404, connection)


@pytest.fixture
def patient(sqlite_url: str) -> Iterator[LiveServer]:
    """A server whose body timeout is longer than any client here waits."""
    security = HttpSecurity(bind_host="127.0.0.1", body_timeout=10 * DEADLINE)
    with live_server(sqlite_url, security=security) as live:
        yield live


# (method, path, headers, status); past the edge, a POST, PUT or PATCH announcing more
# than its route's body limit is `BodyLimit`'s 413 (which drains up to 32 MiB first).
OVER = [
    ("POST", "/jobs", [JSON], 401),
    ("DELETE", "/webhooks/stripe", [JSON], 405),
    ("GET", "/no/such", [JSON, TOKEN], 404),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), OVER)
def test_a_body_over_the_cap_is_answered_at_once_and_the_connection_closed(
    patient: LiveServer, method: str, path: str, headers: list[tuple[str, str]], status: int
) -> None:
    """Nothing of the body is sent: had the server waited for it, the client's deadline
    (far shorter than the body timeout) would have failed the test."""
    connection = RawConnection(patient.url)
    try:
        head = [("host", connection.host), ("content-length", str(DRAIN_LIMIT + 1)), *headers]
        connection._send(h11.Request(method=method, target=path, headers=head))
        answer = connection.answer()
        assert answer.status == status, answer.body[:300]
        assert answer.headers.get("connection") == "close"
        assert connection.closed_by_server()
    finally:
        connection.close()


def test_a_client_waiting_for_100_continue_gets_the_answer_instead(patient: LiveServer) -> None:
    """`Expect: 100-continue` (curl, for bodies over 1 MiB): the body is not invited only to
    be dropped; the answer goes at once and the connection is closed."""
    connection = RawConnection(patient.url)
    try:
        head = [("host", connection.host), ("content-length", "1000"), JSON]
        head.append(("expect", "100-continue"))
        connection._send(h11.Request(method="POST", target="/webhooks/nope", headers=head))
        answer = connection.answer()
        assert answer.status == 404, answer.body[:300]
        assert answer.headers.get("connection") == "close"
    finally:
        connection.close()


@pytest.fixture
def hasty(sqlite_url: str) -> Iterator[LiveServer]:
    """A server with a one-second body timeout."""
    security = HttpSecurity(bind_host="127.0.0.1", body_timeout=1)
    with live_server(sqlite_url, security=security) as live:
        yield live


@pytest.mark.parametrize(("method", "path", "headers", "status"), OVER)
def test_a_body_that_never_comes_is_cut_at_the_body_timeout(
    hasty: LiveServer, method: str, path: str, headers: list[tuple[str, str]], status: int
) -> None:
    """The client announces 100 bytes and sends 10: it gets the answer once the body
    timeout has passed, and the connection is closed (it holds nothing longer)."""
    connection = RawConnection(hasty.url)
    try:
        answer = connection.request(method, path, headers, b"x" * 100, sent=10)
        assert answer.status == status, answer.body[:300]
        assert answer.headers.get("connection") == "close"
        assert connection.closed_by_server()
    finally:
        connection.close()


def test_httpx_gets_early_answers_on_a_kept_connection(sqlite_live: LiveServer) -> None:
    """What CI's client does: httpx, a body each time, answers that need no body."""
    with sqlite_live.client(token=None) as client:
        for _ in range(10):
            answers = [
                client.post("/webhooks/nope", content=BODY),
                client.put("/webhooks/stripe", content=BODY),
                client.post("/jobs", content=BODY, headers=dict([JSON])),
            ]
            assert [a.status_code for a in answers] == [404, 405, 401]
            assert [a.headers.get("connection") for a in answers] == [None] * 3
