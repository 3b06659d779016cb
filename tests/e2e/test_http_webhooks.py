"""Signed webhooks over a real server: verified, enqueued once per event id, answered fast."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from taskflare.testing import drain
from taskflare.webhooks import hmac_signature_header, stripe_signature_header

from .server import GITHUB_SECRET, STRIPE_SECRET, LiveServer
from .test_http_jobs import error_of

EVENT = json.dumps({"id": "evt_1NG8Du2eZvKYlo2C", "type": "invoice.paid", "data": {}}).encode()


@pytest.fixture
def client(sqlite_live: LiveServer) -> Iterator[httpx.Client]:
    # Webhooks carry no bearer token: the signature is their authentication.
    with sqlite_live.client(token=None) as c:
        yield c


def stripe(client: httpx.Client, body: bytes, header: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", content=body, headers=headers)


async def test_a_signed_stripe_event_becomes_one_job_even_when_redelivered(
    sqlite_live: LiveServer, client: httpx.Client
) -> None:
    started = time.monotonic()
    first = stripe(client, EVENT, stripe_signature_header(EVENT, STRIPE_SECRET))
    assert time.monotonic() - started < 0.5
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["success"] is True and body["received"] is True
    assert body["eventId"] == "evt_1NG8Du2eZvKYlo2C" and body["duplicate"] is False
    # Stripe redelivers with a new timestamp and signature: same event, same job.
    later = stripe_signature_header(EVENT, STRIPE_SECRET, timestamp=int(time.time()) + 1)
    again = stripe(client, EVENT, later)
    assert again.status_code == 200
    assert again.json()["jobId"] == body["jobId"] and again.json()["duplicate"] is True
    with sqlite_live.client() as admin:
        job = admin.get(f"/jobs/{body['jobId']}").json()["job"]
        assert job["type"] == "stripe-event" and job["payload"] == json.loads(EVENT)
        assert job["idempotencyKey"] == "stripe:evt_1NG8Du2eZvKYlo2C"
        async with sqlite_live.worker_app() as app:
            await drain(app)
        assert admin.get(f"/jobs/{body['jobId']}").json()["job"]["status"] == "completed"
    assert sqlite_live.recorder.of("stripe-event") == [json.loads(EVENT)]


def test_bad_missing_and_replayed_stripe_signatures_get_401(client: httpx.Client) -> None:
    wrong_secret = stripe_signature_header(EVENT, "not-the-secret")
    assert "signature" in error_of(stripe(client, EVENT, wrong_secret), 401)
    assert stripe(client, EVENT, wrong_secret).json()["code"] == "bad_signature"
    assert "missing" in error_of(stripe(client, EVENT, None), 401)
    error_of(stripe(client, EVENT, "t=abc,v1="), 401)
    tampered = EVENT.replace(b"invoice.paid", b"invoice.void")
    error_of(stripe(client, tampered, stripe_signature_header(EVENT, STRIPE_SECRET)), 401)
    old = int(time.time()) - 301
    replayed = stripe(client, EVENT, stripe_signature_header(EVENT, STRIPE_SECRET, old))
    assert "tolerance" in error_of(replayed, 401)
    future = int(time.time()) + 301
    error_of(stripe(client, EVENT, stripe_signature_header(EVENT, STRIPE_SECRET, future)), 401)
    error_of(client.post("/webhooks/nope", content=EVENT), 404)


def test_plain_x_signature_scheme(sqlite_live: LiveServer, client: httpx.Client) -> None:
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = {
        "X-Signature": hmac_signature_header(push, GITHUB_SECRET),
        "X-GitHub-Delivery": "d-1",
    }
    ok = client.post("/webhooks/github", content=push, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["eventId"] == "d-1"
    again = client.post("/webhooks/github", content=push, headers=headers)
    assert again.json()["jobId"] == ok.json()["jobId"]
    bad = {**headers, "X-Signature": hmac_signature_header(push, STRIPE_SECRET)}
    error_of(client.post("/webhooks/github", content=push, headers=bad), 401)
    error_of(client.post("/webhooks/github", content=push), 401)
    unsigned_scheme = {**headers, "X-Signature": "md5=abc"}
    error_of(client.post("/webhooks/github", content=push, headers=unsigned_scheme), 401)
    not_json = b"not json"
    signed = {"X-Signature": hmac_signature_header(not_json, GITHUB_SECRET)}
    assert "JSON" in error_of(
        client.post("/webhooks/github", content=not_json, headers=signed), 400
    )
