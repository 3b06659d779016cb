"""Signed webhooks over a real server: verified by each provider's recipe, enqueued once per
signed event (a replay with fresh unsigned headers is the same job), malformed requests
answered 400/401 cheaply, in one log line, never 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook

from taskflare import App
from taskflare.testing import drain

from . import server
from .server import GITHUB_SECRET, STRIPE_SECRET, LiveServer, Recorder, live_server
from .test_http_jobs import error_of

EVENT = json.dumps({"id": "evt_1NG8Du2eZvKYlo2C", "type": "invoice.paid", "data": {}}).encode()
PUSH = json.dumps({"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"})
HUB_SECRET = "gh-hub-secret-0b7e"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEEK = 7 * 86_400

build_app = server.build_app  # the original, before `live` swaps in `with_more_sources`


def with_more_sources(url: str, recorder: Recorder) -> App:
    """The e2e app plus a GitHub (`X-Hub-Signature-256`) and a Standard Webhooks source."""
    app = build_app(url, recorder)
    app.job("svix-event")(lambda event: recorder.add("svix-event", event))
    app.webhook("gh", secret=HUB_SECRET, job_type="github-event", scheme="github")
    app.webhook("svix", secret=STANDARD_SECRET, job_type="svix-event", scheme="standard-webhooks")
    app.webhook("mail", secret=STRIPE_SECRET, job_type="send-email")  # a typed payload
    return app


@pytest.fixture
def live(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The server, with the two extra sources, on a fresh database of each backend."""
    monkeypatch.setattr(server, "build_app", with_more_sources)
    with live_server(database_url) as running:
        yield running


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    # Webhooks carry no bearer token: the signature is their authentication.
    with live.client(token=None) as c:
        yield c


def stripe_header(body: bytes, t: int | None = None, secret: str = STRIPE_SECRET) -> str:
    """Stripe's recipe, computed here: HMAC-SHA256 of `"<t>.<raw body>"` as hex."""
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def hub_signature(body: bytes, secret: str) -> str:
    """GitHub's recipe: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_headers(body: bytes, msg_id: str, t: int | None = None) -> dict[str, str]:
    """Signed by the Standard Webhooks reference package."""
    t = int(time.time()) if t is None else t
    signature = Webhook(STANDARD_SECRET).sign(msg_id, datetime.fromtimestamp(t, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(t), "webhook-signature": signature}


def post(client: httpx.Client, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


def stripe(client: httpx.Client, body: bytes, header: str | bytes | None) -> httpx.Response:
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", content=body, headers=headers)


def key_expires_in(live: LiveServer, key: str) -> float:
    """Seconds until the stored idempotency key `key` expires (read from the database)."""
    url = live.database_url
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            row = db.execute("SELECT expires_at FROM idempotency_keys WHERE key = ?", (key,))
            (expires_at,) = row.fetchone()
    else:
        base, _, schema = url.rpartition("schema=")  # as tests/conftest.py builds it
        with psycopg.connect(base.rstrip("?&")) as conn:
            sql = f'SELECT expires_at FROM "{schema}".idempotency_keys WHERE key = %s'
            (expires_at,) = conn.execute(sql, (key,)).fetchone()
    return float(expires_at) - time.time()


async def test_a_signed_stripe_event_becomes_one_job_even_when_redelivered(
    live: LiveServer, client: httpx.Client
) -> None:
    first = stripe(client, EVENT, stripe_header(EVENT))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["success"] is True and body["received"] is True
    assert body["eventId"] == "evt_1NG8Du2eZvKYlo2C" and body["duplicate"] is False
    # Stripe redelivers with a new timestamp and signature: same event, same job.
    again = stripe(client, EVENT, stripe_header(EVENT, int(time.time()) + 1))
    assert again.status_code == 200
    assert again.json()["jobId"] == body["jobId"] and again.json()["duplicate"] is True
    assert WEEK - 60 < key_expires_in(live, "stripe:evt_1NG8Du2eZvKYlo2C") <= WEEK
    with live.client() as admin:
        job = admin.get(f"/jobs/{body['jobId']}").json()["job"]
        assert job["type"] == "stripe-event" and job["payload"] == json.loads(EVENT)
        assert job["idempotencyKey"] == "stripe:evt_1NG8Du2eZvKYlo2C"
        # Answered without waiting for the job to run (Stripe gives up on a receiver after
        # ~10 s): no worker has run it yet, and it runs only below.
        assert job["status"] == "pending"
        async with live.worker_app() as app:
            await drain(app)
        assert admin.get(f"/jobs/{body['jobId']}").json()["job"]["status"] == "completed"
    assert live.recorder.of("stripe-event") == [json.loads(EVENT)]


def test_bad_missing_and_replayed_stripe_signatures_get_401(client: httpx.Client) -> None:
    wrong_secret = stripe_header(EVENT, secret="not-the-secret")
    assert "signature" in error_of(stripe(client, EVENT, wrong_secret), 401)
    assert stripe(client, EVENT, wrong_secret).json()["code"] == "bad_signature"
    assert "missing" in error_of(stripe(client, EVENT, None), 401)
    tampered = EVENT.replace(b"invoice.paid", b"invoice.void")
    error_of(stripe(client, tampered, stripe_header(EVENT)), 401)
    replayed = stripe(client, EVENT, stripe_header(EVENT, int(time.time()) - 301))
    assert "tolerance" in error_of(replayed, 401)
    # A future time: one second past the 300 s tolerance would come back inside it on a
    # server slowed by a second (the exact bounds are tests/unit/test_webhooks.py's).
    error_of(stripe(client, EVENT, stripe_header(EVENT, int(time.time()) + 400)), 401)
    error_of(client.post("/webhooks/nope", content=EVENT), 404)


def test_github_x_hub_signature_256_and_a_replay_with_a_new_delivery_id_is_one_job(
    live: LiveServer, client: httpx.Client
) -> None:
    push = PUSH.encode()
    headers = {"X-Hub-Signature-256": hub_signature(push, HUB_SECRET), "X-GitHub-Delivery": "d-1"}
    ok = client.post("/webhooks/gh", content=push, headers=headers)
    assert ok.status_code == 200, ok.text
    digest = "sha256:" + hashlib.sha256(push).hexdigest()
    assert ok.json()["eventId"] == digest and ok.json()["duplicate"] is False
    # A captured request resent with fresh unsigned headers is still the same event.
    for delivery in ("d-2", "d-3"):
        replay = client.post(
            "/webhooks/gh", content=push, headers={**headers, "X-GitHub-Delivery": delivery}
        )
        assert replay.json()["jobId"] == ok.json()["jobId"] and replay.json()["duplicate"]
    # GitHub signs no timestamp: the key is remembered for the replay window (7 days).
    assert WEEK - 60 < key_expires_in(live, f"gh:{digest}") <= WEEK
    wrong_header = {"X-Signature": hub_signature(push, HUB_SECRET)}
    assert "X-Hub-Signature-256" in error_of(
        client.post("/webhooks/gh", content=push, headers=wrong_header), 401
    )


def test_generic_x_signature_scheme(client: httpx.Client) -> None:
    push = PUSH.encode()
    headers = {"X-Signature": hub_signature(push, GITHUB_SECRET), "X-Event-Id": "e-1"}
    ok = client.post("/webhooks/github", content=push, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["eventId"] == "sha256:" + hashlib.sha256(push).hexdigest()
    again = client.post("/webhooks/github", content=push, headers={**headers, "X-Event-Id": "e-2"})
    assert again.json()["jobId"] == ok.json()["jobId"] and again.json()["duplicate"] is True
    bad = {**headers, "X-Signature": hub_signature(push, STRIPE_SECRET)}
    error_of(client.post("/webhooks/github", content=push, headers=bad), 401)
    error_of(client.post("/webhooks/github", content=push), 401)
    not_json = b"not json"
    signed = {"X-Signature": hub_signature(not_json, GITHUB_SECRET)}
    response = client.post("/webhooks/github", content=not_json, headers=signed)
    assert "JSON" in error_of(response, 400) and response.json()["code"] == "invalid"


async def test_standard_webhooks_event_is_keyed_by_its_signed_webhook_id(
    live: LiveServer, client: httpx.Client
) -> None:
    event = json.dumps({"type": "invoice.created", "data": {"amount": 1250}}).encode()
    headers = standard_headers(event, "msg_2mR8YbQ1")
    ok = post(client, "svix", event, headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["eventId"] == "msg_2mR8YbQ1" and ok.json()["duplicate"] is False
    # A retry of the same message: new timestamp, new signature, same id, same job.
    retry = standard_headers(event, "msg_2mR8YbQ1", int(time.time()) + 1)
    again = post(client, "svix", event, retry)
    assert again.json()["jobId"] == ok.json()["jobId"] and again.json()["duplicate"] is True
    # The id is signed: a replay with a new id is refused, not a new job.
    forged = {**headers, "webhook-id": "msg_other"}
    error_of(post(client, "svix", event, forged), 401)
    stale = standard_headers(event, "msg_stale", int(time.time()) - 301)
    assert "tolerance" in error_of(post(client, "svix", event, stale), 401)
    async with live.worker_app() as app:
        await drain(app)
    assert live.recorder.of("svix-event") == [json.loads(event)]


MALFORMED: list[tuple[str, dict[str, str | bytes]]] = [
    ("github", {"X-Signature": b"sha256=\xe9"}),  # latin-1: compare_digest raised TypeError
    ("gh", {"X-Hub-Signature-256": b"sha256=" + b"\xe9" * 64}),
    ("github", {"X-Signature": "md5=abc"}),
    ("stripe", {"Stripe-Signature": "t=1" + "0" * 400 + ",v1=" + "0" * 64}),  # OverflowError
    ("stripe", {"Stripe-Signature": b"t=\xb2,v1=" + b"0" * 64}),  # "²": isdigit() but not int()
    ("stripe", {"Stripe-Signature": "t=abc,v1="}),
    ("stripe", {"Stripe-Signature": "x" * 8000}),
    ("svix", {"webhook-id": "m", "webhook-timestamp": "1e9", "webhook-signature": "v1,x"}),
    ("svix", {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1"}),
    ("svix", {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": b"v1,\xe9"}),
]


@pytest.mark.parametrize(("source", "headers"), MALFORMED)
def test_malformed_signatures_are_400_in_one_log_line(
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    source: str,
    headers: dict[str, str | bytes],
) -> None:
    with caplog.at_level(logging.INFO):
        response = client.post(f"/webhooks/{source}", content=EVENT, headers=headers)
    assert "rejected" in error_of(response, 400)
    assert response.json()["code"] == "bad_signature"
    records = [r for r in caplog.records if r.name.startswith("taskflare")]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].exc_info is None and "\n" not in records[0].getMessage()
    assert "(400)" in records[0].getMessage()


def test_a_signed_event_its_job_type_refuses_is_422_with_a_code(
    client: httpx.Client, live: LiveServer
) -> None:
    """Every error the API answers has a `code`: the event of a source whose job type has
    a model it fails came back as 422 with none (the catch-all for the library's errors
    set no code)."""
    event = json.dumps({"id": "evt_2", "to": "a@b.c"}).encode()  # no subject, no body
    response = post(client, "mail", event, {"Stripe-Signature": stripe_header(event)})
    message = error_of(response, 422)
    assert response.json()["code"] == "invalid"
    assert "'send-email'" in message and "subject" in message
    with live.client() as api:
        assert api.get("/jobs", params={"type": "send-email"}).json()["count"] == 0
