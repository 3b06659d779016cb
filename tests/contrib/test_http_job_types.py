"""`POST /jobs` over a real server takes exactly the seed's payload shapes for the six
built-in job types and answers 422 naming the bad field; secrets never appear in answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpers import HTTP_TIMEOUT
from taskflare import App, contrib
from taskflare.contrib import AiSettings, EmailSettings, WebhookSettings
from taskflare.web import Tokens, create_api
from taskflare.web.security import HttpSecurity

from .conftest import local_services

TOKEN = "tf-jobtypes-token-1"
SMTP_PASSWORD = "smtp-pass-8c1d"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
AI_KEY = "sk-ai-key-5e2a"

# Seed 002's examples, as written there ("items": [...] and "body": {...} filled in).
SEED_JOBS = [
    {
        "type": "send-email",
        "payload": {
            "to": "user@example.com",
            "subject": "Welcome!",
            "body": "Welcome to our service...",
        },
    },
    {
        "type": "generate-embedding",
        "payload": {"text": "Text to embed", "model": "@cf/baai/bge-base-en-v1.5"},
    },
    {"type": "crawl-website", "payload": {"url": "https://example.com", "maxPages": 100}},
    {
        "type": "generate-content",
        "payload": {
            "prompt": "Write a blog post about...",
            "model": "@cf/meta/llama-3.1-8b-instruct",
        },
    },
    {"type": "batch-import", "payload": {"items": [{"id": 1}, {"id": 2}], "namespace": "products"}},
    {
        "type": "webhook-delivery",
        "payload": {"url": "https://api.example.com/webhook", "method": "POST", "body": {"a": 1}},
    },
]


def build(url: str) -> App:
    app = App(url)
    app.use(
        contrib.email(EmailSettings(smtp_url=f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:9")),
        contrib.webhooks(WebhookSettings(secret=WEBHOOK_SECRET)),
        contrib.crawler(),
        contrib.imports(),
        contrib.embeddings(AiSettings(api_key=AI_KEY)),
        contrib.content(AiSettings(api_key=AI_KEY)),
    )
    return app


@pytest.fixture
def client(database_url: str) -> Iterator[httpx.Client]:
    app = build(database_url)
    api = create_api(app, Tokens(TOKEN, None), HttpSecurity(bind_host="127.0.0.1"))
    with (
        local_services.serve(api) as base,
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HTTP_TIMEOUT
        ) as http,
    ):
        yield http


def test_every_seed_payload_is_accepted(client: httpx.Client) -> None:
    for job in SEED_JOBS:
        answer = client.post("/jobs", json={**job, "priority": 5, "maxAttempts": 3})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["success"] is True and body["message"] == "Job enqueued successfully"
        shown = client.get(f"/jobs/{body['jobId']}").json()["job"]
        assert shown["type"] == job["type"] and shown["status"] == "pending"
        for key, value in job["payload"].items():
            assert shown["payload"][key] == value
    listed = client.get("/jobs", params={"limit": 100}).text + client.get("/stats").text
    for secret in (SMTP_PASSWORD, WEBHOOK_SECRET, AI_KEY):
        assert secret not in listed


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"type": "send-email", "payload": {"subject": "s", "body": "b"}}, "to"),
        ({"type": "send-email", "payload": {"to": "x", "subject": "s", "body": "b"}}, "to"),
        ({"type": "generate-embedding", "payload": {"text": "t"}}, "model"),
        (
            {"type": "crawl-website", "payload": {"url": "https://e.com", "maxPages": "lots"}},
            "maxPages",
        ),
        ({"type": "crawl-website", "payload": {"url": "https://e.com", "maxpages": 5}}, "maxpages"),
        (
            {"type": "crawl-website", "payload": {"url": "https://e.com", "exclude": ["(?!a)"]}},
            "exclude",
        ),
        (
            {
                "type": "generate-content",
                "payload": {"prompt": "p", "model": "m", "temperature": 9},
            },
            "temperature",
        ),
        ({"type": "batch-import", "payload": {"items": [{"id": 1}]}}, "namespace"),
        ({"type": "webhook-delivery", "payload": {"url": "ftp://x", "body": {}}}, "url"),
        (
            {"type": "webhook-delivery", "payload": {"url": "https://e.com", "method": "BREW"}},
            "method",
        ),
    ],
)
def test_a_bad_payload_is_a_422_naming_the_field(
    client: httpx.Client, job: dict[str, Any], field: str
) -> None:
    answer = client.post("/jobs", json=job)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["success"] is False and field in body["error"], body


def test_a_batch_is_readable_over_http(client: httpx.Client, database_url: str) -> None:
    app = App(database_url)
    try:
        app.run_sync(app.jobs.create_batch("b-1", "crawl-page", 3))
        assert client.get("/batches/b-1").json()["batch"]["total"] == 3
        assert client.get("/batches/nope").status_code == 404
    finally:
        app.close_sync()
