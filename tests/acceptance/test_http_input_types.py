"""HTTP request fields are checked as strictly as the Python API checks the same options.

The library refuses `max_attempts=True`, `priority="5"` and `delay_seconds=True`; the
HTTP API takes JSON, where `true` and `"5"` are not numbers either, so they are a 422
naming the field, never read as 1 or 5 (pydantic's lax mode would coerce them).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from taskflare import App

from .conftest import serve

EMAIL = {"to": "a@example.com"}


def build(database_url: str) -> App:
    app = App(database_url)

    @app.job("send-email")
    async def send_email(payload: dict[str, Any]) -> None: ...

    app.queue("pulled", max_retries=2)
    return app


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "invalid"
    assert field in body["error"], body["error"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("maxAttempts", True),
        ("maxAttempts", "3"),
        ("maxAttempts", 3.0),
        ("priority", "5"),
        ("priority", False),
        ("delaySeconds", True),
        ("delaySeconds", "10"),
    ],
)
def test_enqueue_refuses_a_json_value_of_the_wrong_type(
    database_url: str, field: str, value: Any
) -> None:
    with serve(build(database_url)) as client:
        response = client.post("/jobs", json={"type": "send-email", "payload": EMAIL, field: value})
        refused(response, field)
        # Nothing was stored.
        assert client.get("/jobs").json()["count"] == 0


def test_enqueue_still_takes_numbers_of_the_right_type(database_url: str) -> None:
    with serve(build(database_url)) as client:
        response = client.post(
            "/jobs",
            json={
                "type": "send-email",
                "payload": EMAIL,
                "priority": -3,
                "maxAttempts": 2,
                "delaySeconds": 1.5,
            },
        )
        assert response.status_code == 200, response.text
        job = client.get(f"/jobs/{response.json()['jobId']}").json()["job"]
        assert (job["priority"], job["maxAttempts"], job["status"]) == (-3, 2, "pending")
        response = client.post("/jobs", json={"type": "send-email", "delaySeconds": 2})
        assert response.status_code == 200, response.text


def test_send_and_pull_refuse_json_values_of_the_wrong_type(database_url: str) -> None:
    with serve(build(database_url)) as client:
        base = "/queues/pulled/messages"
        refused(client.post(base, json={"body": 1, "delaySeconds": True}), "delaySeconds")
        refused(client.post(base, json={"body": 1, "delay_seconds": "5"}), "delay_seconds")
        refused(
            client.post(base, json={"messages": [{"body": 1, "delaySeconds": False}]}),
            "delaySeconds",
        )
        refused(client.post(f"{base}/pull", json={"batch_size": "5"}), "batch_size")
        refused(
            client.post(f"{base}/pull", json={"visibility_timeout_ms": True}),
            "visibility_timeout_ms",
        )
        assert client.get("/queues/pulled").json()["queue"]["depth"]["ready"] == 0
        assert client.post(base, json={"body": 1, "delaySeconds": 0}).status_code == 200
        pulled = client.post(f"{base}/pull", json={"batch_size": 1}).json()["result"]["messages"]
        lease = pulled[0]["lease_id"]
        refused(
            client.post(
                f"{base}/ack", json={"retries": [{"lease_id": lease, "delay_seconds": True}]}
            ),
            "delay_seconds",
        )
        answer = client.post(f"{base}/ack", json={"acks": [{"lease_id": lease}]}).json()
        assert answer["ackCount"] == 1


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"body": {"to": "lost@example.com"}}, "body"),
        ({"body": None}, "body"),
        ({"contentType": "text"}, "contentType"),
        ({"content_type": "bytes"}, "content_type"),
    ],
)
def test_send_refuses_a_single_message_field_beside_a_batch(
    database_url: str, extra: dict[str, Any], field: str
) -> None:
    """`body` and `contentType` belong to one message: beside `messages` they were dropped
    in silence, so a message the client sent was never stored. They are refused instead."""
    with serve(build(database_url)) as client:
        response = client.post("/queues/pulled/messages", json={"messages": [{"body": 1}], **extra})
        refused(response, field)
        assert "messages" in response.json()["error"]
        assert client.get("/queues/pulled").json()["queue"]["depth"]["ready"] == 0
        # The batch's own delay is still the one field that applies to its messages.
        batch = {"messages": [{"body": 1}], "delaySeconds": 0}
        assert client.post("/queues/pulled/messages", json=batch).status_code == 200


@pytest.mark.parametrize("depth", [600, 980, 1000])
@pytest.mark.parametrize(
    ("path", "wrap"),
    [
        ("/jobs", lambda deep: '{"type": "send-email", "payload": ' + deep + "}"),
        ("/queues/pulled/messages", lambda deep: '{"body": ' + deep + "}"),
        ("/queues/pulled/messages", lambda deep: '{"messages": [{"body": ' + deep + "}]}"),
    ],
)
def test_json_nested_too_deep_is_a_400_naming_the_limit(
    database_url: str, depth: int, path: str, wrap: Any
) -> None:
    """Past ~970 levels FastAPI's own parser failed with a bare 400 "There was an error
    parsing the body" (no code, no reason); every body nested more than 512 levels is
    refused the same way, before any parsing of ours or FastAPI's."""
    with serve(build(database_url)) as client:
        body = wrap("[" * depth + "]" * depth)
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["code"] == "invalid" and "nested more than 512 levels" in answer["error"]
        assert client.get("/jobs").json()["count"] == 0
        assert client.get("/queues/pulled").json()["queue"]["depth"]["ready"] == 0
