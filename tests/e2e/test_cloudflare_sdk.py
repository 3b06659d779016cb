"""Cloudflare's official Python SDK against a real `taskflare serve` process, on both
backends: queues, push, batch push, pull, ack and retry, purge, delete."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudflare
import httpx
import pytest
from cloudflare import Cloudflare

from helpers import HTTP_TIMEOUT

from .server import WRITE_TOKEN, free_socket, poll

TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"  # any account id is accepted
APP = """
from taskflare import App, MessageBatch
app = App({url!r})
app.queue("exports", max_retries=1, dead_letter_queue="exports-dlq")
orders = app.queue("orders")

@orders.consumer
async def consume(batch: MessageBatch) -> None: ...
"""


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[str]:
    (tmp_path / "served.py").write_text(APP.format(url=database_url))
    with free_socket() as sock:
        port = sock.getsockname()[1]
    err = (tmp_path / "serve.err").open("wb")
    proc = subprocess.Popen(
        [TASKFLARE, "serve", f"{tmp_path / 'served.py'}:app", "--port", str(port)],
        env={"TASKFLARE_API_TOKEN": WRITE_TOKEN, "PATH": str(Path(sys.executable).parent)},
        stdout=subprocess.DEVNULL,
        stderr=err,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT).status_code == 200
        except httpx.TransportError:
            assert proc.poll() is None, (tmp_path / "serve.err").read_text()
            return False

    try:
        poll(ready, 90, "taskflare serve")
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        err.close()


@pytest.fixture
def client(server: str) -> Cloudflare:
    return Cloudflare(api_token=WRITE_TOKEN, base_url=f"{server}/client/v4", max_retries=0)


def decode(message: object) -> object:
    body = message.body  # type: ignore[attr-defined]
    if message.metadata["CF-Content-Type"] == "text":  # type: ignore[attr-defined]
        return body
    return json.loads(base64.b64decode(body))


def test_sdk_lists_creates_gets_and_deletes_queues(client: Cloudflare) -> None:
    names = {q.queue_name for q in client.queues.list(account_id=ACCOUNT)}
    assert {"exports", "exports-dlq", "orders"} <= names

    created = client.queues.create(account_id=ACCOUNT, queue_name="made-by-sdk")
    assert created is not None and created.queue_id == created.queue_name == "made-by-sdk"
    got = client.queues.get("made-by-sdk", account_id=ACCOUNT)
    assert got is not None and got.consumers == [] and got.settings is not None
    assert got.settings.delivery_paused is False
    orders = client.queues.get("orders", account_id=ACCOUNT)
    assert orders is not None and orders.consumers_total_count == 1

    with pytest.raises(cloudflare.ConflictError):
        client.queues.create(account_id=ACCOUNT, queue_name="made-by-sdk")
    client.queues.messages.push("made-by-sdk", account_id=ACCOUNT, body={"n": 1})

    deleted = client.queues.delete("made-by-sdk", account_id=ACCOUNT)
    assert deleted.success is True
    with pytest.raises(cloudflare.NotFoundError) as missing:
        client.queues.get("made-by-sdk", account_id=ACCOUNT)
    body = missing.value.body
    assert isinstance(body, dict) and body["success"] is False and body["result"] is None
    assert "made-by-sdk" in body["errors"][0]["message"]
    assert "made-by-sdk" not in {q.queue_name for q in client.queues.list(account_id=ACCOUNT)}

    with pytest.raises(cloudflare.UnprocessableEntityError):  # declared in code: stays
        client.queues.delete("orders", account_id=ACCOUNT)


def test_sdk_pushes_pulls_acks_and_retries(client: Cloudflare) -> None:
    client.queues.messages.push("exports", account_id=ACCOUNT, body={"n": 1})
    client.queues.messages.push("exports", account_id=ACCOUNT, body="hi", content_type="text")
    client.queues.messages.bulk_push(
        "exports",
        account_id=ACCOUNT,
        messages=[{"body": {"n": 2}}, {"body": {"n": 3}, "content_type": "json"}],
    )
    pulled = client.queues.messages.pull(
        "exports", account_id=ACCOUNT, batch_size=10, visibility_timeout_ms=60_000
    )
    assert pulled is not None and pulled.messages is not None
    assert sorted(map(str, (decode(m) for m in pulled.messages))) == sorted(
        map(str, [{"n": 1}, "hi", {"n": 2}, {"n": 3}])
    )
    assert all(m.attempts == 1 for m in pulled.messages)

    retry = next(m for m in pulled.messages if decode(m) == {"n": 1})
    acks = [{"lease_id": m.lease_id} for m in pulled.messages if m is not retry]
    settled = client.queues.messages.ack(
        "exports",
        account_id=ACCOUNT,
        acks=acks,  # type: ignore[arg-type]
        retries=[{"lease_id": retry.lease_id or "", "delay_seconds": 0}],
    )
    assert settled is not None and (settled.ack_count, settled.retry_count) == (3, 1)
    assert not settled.warnings

    again = client.queues.messages.pull("exports", account_id=ACCOUNT, batch_size=10)
    assert again is not None and again.messages is not None
    assert [(decode(m), m.attempts) for m in again.messages] == [({"n": 1}, 2)]
    assert again.message_backlog_count == 0


def test_sdk_purges_a_queue(client: Cloudflare) -> None:
    client.queues.messages.bulk_push(
        "exports", account_id=ACCOUNT, messages=[{"body": {"n": n}} for n in range(5)]
    )
    with pytest.raises(cloudflare.BadRequestError):  # Cloudflare asks for the confirmation
        client.queues.purge.start("exports", account_id=ACCOUNT)
    queue = client.queues.purge.start(
        "exports", account_id=ACCOUNT, delete_messages_permanently=True
    )
    assert queue is not None and queue.queue_name == "exports"
    status = client.queues.purge.status("exports", account_id=ACCOUNT)
    assert status is not None and status.completed == "true"
    pulled = client.queues.messages.pull("exports", account_id=ACCOUNT)
    assert pulled is not None and pulled.messages == []


def test_sdk_errors_use_cloudflare_envelope(server: str) -> None:
    wrong = Cloudflare(api_token="not-the-token", base_url=f"{server}/client/v4", max_retries=0)
    with pytest.raises(cloudflare.AuthenticationError):
        wrong.queues.list(account_id=ACCOUNT)
    client = Cloudflare(api_token=WRITE_TOKEN, base_url=f"{server}/client/v4", max_retries=0)
    with pytest.raises(cloudflare.UnprocessableEntityError) as invalid:
        client.queues.messages.pull("exports", account_id=ACCOUNT, batch_size=1000)
    body = invalid.value.body
    assert isinstance(body, dict)
    assert body["errors"][0]["code"] == 422 and "batch_size" in body["errors"][0]["message"]
