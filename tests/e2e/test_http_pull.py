"""Cloudflare-compatible pull consumers over a real server, written with plain `httpx`.

The queue `pull` is declared with `max_retries=2` and `dead_letter_queue="pull-dlq"` and
has no Python consumer: these tests are its only consumers.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .server import LiveServer, poll
from .test_http_jobs import error_of


@pytest.fixture
def client(sqlite_live: LiveServer) -> Iterator[httpx.Client]:
    with sqlite_live.client() as c:
        yield c


CLOUDFLARE_ACK = "/client/v4/accounts/acct/queues/pull/messages/ack"


def pull(client: httpx.Client, **request: Any) -> dict[str, Any]:
    response = client.post("/queues/pull/messages/pull", json=request)
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope["success"] is True and envelope["errors"] == []
    result: dict[str, Any] = envelope["result"]
    return result


def ack(
    client: httpx.Client, acks: list[str] = (), retries: list[dict[str, Any]] = ()
) -> dict[str, Any]:
    response = client.post(
        "/queues/pull/messages/ack",
        json={"acks": [{"lease_id": lease} for lease in acks], "retries": list(retries)},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def decode(message: dict[str, Any]) -> Any:
    """What a Cloudflare pull consumer does: JSON bodies arrive base64-encoded."""
    assert message["metadata"]["CF-Content-Type"] == "json"
    return json.loads(base64.b64decode(message["body"]))


def test_a_plain_httpx_consumer_completes_1000_messages_with_retries_and_a_dlq(
    client: httpx.Client,
) -> None:
    for start in range(0, 1000, 100):
        batch = [{"body": {"n": n}} for n in range(start, start + 100)]
        sent = client.post("/queues/pull/messages", json={"messages": batch})
        assert sent.json()["count"] == 100
    attempts_seen: dict[int, list[int]] = {}
    acked: Counter[int] = Counter()
    deadline = time.monotonic() + 60
    while True:
        result = pull(client, batch_size=100, visibility_timeout_ms=30_000)
        messages = result["messages"]
        if not messages:
            break
        assert time.monotonic() < deadline, "the consumer did not finish in time"
        acks, retries = [], []
        for message in messages:
            n = decode(message)["n"]
            assert message["timestamp_ms"] > 0 and message["id"]
            attempts_seen.setdefault(n, []).append(message["attempts"])
            if n % 10 == 0 or (n % 10 == 1 and message["attempts"] == 1):
                retries.append({"lease_id": message["lease_id"], "delay_seconds": 0})
            else:
                acks.append(message["lease_id"])
                acked[n] += 1
        answer = ack(client, acks, retries)
        assert answer["ackCount"] == len(acks) and answer["retryCount"] == len(retries)
        assert answer["warnings"] == {}
    assert set(acked) == {n for n in range(1000) if n % 10 != 0}
    assert all(count == 1 for count in acked.values())
    assert attempts_seen[1] == [1, 2] and attempts_seen[2] == [1]
    assert attempts_seen[0] == [1, 2, 3]  # max_retries=2: three deliveries, then the DLQ
    depth = client.get("/queues/pull").json()["queue"]["depth"]
    assert depth == {"ready": 0, "leased": 0, "failed": 100}  # kept as failed, copied to the DLQ
    dead = client.get("/queues/pull/dlq", params={"limit": 1000}).json()
    assert dead["count"] == 100
    assert sorted(m["body"]["n"] for m in dead["messages"]) == list(range(0, 1000, 10))


def test_an_unacked_message_comes_back_after_its_visibility_timeout(client: httpx.Client) -> None:
    client.post("/queues/pull/messages", json={"body": {"hello": "world"}}).raise_for_status()
    [first] = pull(client, visibility_timeout_ms=300)["messages"]
    assert first["attempts"] == 1 and decode(first) == {"hello": "world"}
    assert pull(client)["messages"] == []  # still leased
    again = poll(lambda: pull(client)["messages"], what="the redelivery")
    [second] = again
    assert second["id"] == first["id"] and second["attempts"] == 2
    assert second["lease_id"] != first["lease_id"]
    # As Cloudflare does, an ack that arrives after the visibility timeout is still
    # accepted, even though another consumer has pulled the message since: it is done.
    late = ack(client, [first["lease_id"]])
    assert late == {"ackCount": 1, "retryCount": 0, "warnings": {}}
    assert client.get("/queues/pull").json()["queue"]["depth"]["leased"] == 0
    gone = ack(client, [second["lease_id"]])
    assert gone["ackCount"] == 0 and second["lease_id"] in gone["warnings"]


def test_a_late_retry_is_refused_with_a_warning(client: httpx.Client) -> None:
    client.post("/queues/pull/messages", json={"body": "x"}).raise_for_status()
    [first] = pull(client, visibility_timeout_ms=300)["messages"]
    [second] = poll(lambda: pull(client)["messages"], what="the redelivery")
    stale = ack(client, [], [{"lease_id": first["lease_id"], "delay_seconds": 0}])
    assert stale["retryCount"] == 0 and set(stale["warnings"]) == {first["lease_id"]}
    assert ack(client, [second["lease_id"]])["ackCount"] == 1


def test_unknown_lease_ids_are_warnings_never_errors(client: httpx.Client) -> None:
    answer = ack(client, ["not-a-lease", "bm9wZTpub3Bl"], [{"lease_id": "x", "delay_seconds": 1}])
    assert answer["ackCount"] == 0 and answer["retryCount"] == 0
    assert set(answer["warnings"]) == {"not-a-lease", "bm9wZTpub3Bl", "x"}


def lease_of(raw: bytes) -> str:
    """Text shaped like a lease id (unpadded base64url) standing for `raw`."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Lease ids that are not ours, whatever they decode to: control bytes (the first three
# decode to bytes holding U+0007, U+0000 and U+001D), a NUL in a well-shaped lease id, a
# superscript attempt number (`int("²")` raises), text that is no base64 at all.
NOT_OURS = (
    "garbage",
    "AAAAAAAA",
    "abcdefgh",
    lease_of(b"a\x00b:c:1"),
    lease_of("m:l:\u00b2".encode()),
    "",
    "a\x07b",
    "\u00e9t\u00e9",
    "y" * 600,
)


@pytest.mark.parametrize("path", ["/queues/pull/messages/ack", CLOUDFLARE_ACK])
def test_a_lease_id_not_ours_is_a_warning_and_the_rest_of_the_request_applies(
    live: LiveServer, path: str
) -> None:
    """A stale or made-up lease id must not refuse a whole ack request: the valid acks and
    retries next to it apply, and it is reported as an unknown lease keyed as sent."""
    with live.client() as client:
        for n in range(3):
            client.post("/queues/pull/messages", json={"body": n}).raise_for_status()
        first, second, third = pull(client, batch_size=3)["messages"]
        request = {
            "acks": [{"lease_id": first["lease_id"]}] + [{"lease_id": t} for t in NOT_OURS],
            "retries": [{"lease_id": second["lease_id"], "delay_seconds": 0}]
            + [{"lease_id": t, "delay_seconds": 0} for t in NOT_OURS],
        }
        response = client.post(path, json=request)
        assert response.status_code == 200, response.text
        answer = response.json()["result"]
        assert (answer["ackCount"], answer["retryCount"]) == (1, 1), answer
        assert set(answer["warnings"]) == set(NOT_OURS)
        assert all(w.startswith("unknown lease id") for w in answer["warnings"].values())
        # The acked one is done; the retried one comes back; the third is still leased.
        [again] = pull(client, batch_size=10)["messages"]
        assert again["id"] == second["id"] and again["attempts"] == 2
        rest = ack(client, [again["lease_id"], third["lease_id"]])
        assert rest == {"ackCount": 2, "retryCount": 0, "warnings": {}}


def test_an_empty_queue_answers_at_once_with_an_empty_list(sqlite_live: LiveServer) -> None:
    # Cloudflare's pull does not long-poll. A long poll holds the request for its whole
    # wait (SQS's longest is 20 s): the bound is that wait, not a guess at how slow a
    # loaded machine is, and the client waits past it so that only the bound can fail.
    long_poll = 20.0
    with sqlite_live.client(timeout=2 * long_poll) as client:
        started = time.monotonic()
        result = pull(client, batch_size=100)
        elapsed = time.monotonic() - started
    assert elapsed < long_poll, f"an empty pull was held {elapsed:.1f}s, like a long poll"
    assert result["messages"] == [] and result["message_backlog_count"] == 0


def test_defaults_bodies_by_content_type_and_retry_delay(client: httpx.Client) -> None:
    batch = [{"body": {"n": n}} for n in range(7)]
    batch += [{"body": "plain", "contentType": "text"}, {"body": "AAEC", "contentType": "bytes"}]
    client.post("/queues/pull/messages", json={"messages": batch}).raise_for_status()
    first = pull(client)  # `{}`: Cloudflare's defaults, batch_size 5
    assert len(first["messages"]) == 5 and first["message_backlog_count"] == 4
    rest = pull(client, batch_size=100)["messages"]
    by_type = {m["metadata"]["CF-Content-Type"]: m for m in rest}
    assert by_type["text"]["body"] == "plain"  # text as is, like Cloudflare
    assert base64.b64decode(by_type["bytes"]["body"]) == b"\x00\x01\x02"
    leases = [m["lease_id"] for m in first["messages"] + rest]
    later = {"lease_id": leases[0], "delay_seconds": 3600}
    answer = ack(client, leases[1:], [later])
    assert answer == {"ackCount": 8, "retryCount": 1, "warnings": {}}
    assert pull(client)["messages"] == []  # the retried one waits out its delay
    depth = client.get("/queues/pull").json()["queue"]["depth"]
    assert depth == {"ready": 1, "leased": 0, "failed": 0}


def test_pull_and_ack_bodies_are_validated(client: httpx.Client) -> None:
    too_many = client.post("/queues/pull/messages/pull", json={"batch_size": 101})
    assert "batch_size" in error_of(too_many, 422)
    zero = client.post("/queues/pull/messages/pull", json={"visibility_timeout_ms": 0})
    assert "visibility_timeout_ms" in error_of(zero, 422)
    bad_ack = client.post("/queues/pull/messages/ack", json={"acks": [{"lease": "x"}]})
    assert "lease_id" in error_of(bad_ack, 422)
    error_of(client.post("/queues/nope/messages/pull", json={}), 404)


def test_a_misspelled_field_is_refused_naming_it_not_ignored(client: httpx.Client) -> None:
    """An unknown field would otherwise be dropped and its default used: `batchSize`
    pulling 5, a retry's `delaySeconds` retrying at once, a reprocess's `id` replaying
    every dead letter instead of the one named."""
    client.post("/queues/pull/messages", json={"body": {"n": 1}}).raise_for_status()
    camel = client.post("/queues/pull/messages/pull", json={"batchSize": 50})
    assert "batchSize" in error_of(camel, 422)
    [message] = pull(client, batch_size=10)["messages"]
    lease = message["lease_id"]
    retry = {"lease_id": lease, "delaySeconds": 600}
    late = client.post("/queues/pull/messages/ack", json={"retries": [retry]})
    assert "delaySeconds" in error_of(late, 422)
    typo = client.post("/queues/pull/messages/ack", json={"acks": [], "acked": [lease]})
    assert "acked" in error_of(typo, 422)
    some = client.post("/queues/pull/dlq/reprocess", json={"id": ["01a2"]})
    assert "id" in error_of(some, 422)
    purge = client.post("/queues/pull/purge", json={"confirm": "pull", "force": True})
    assert "force" in error_of(purge, 422)
    assert ack(client, [lease]) == {"ackCount": 1, "retryCount": 0, "warnings": {}}
