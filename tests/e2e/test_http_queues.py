"""Queue administration over a real server: depth, pause, purge, HTTP producers, dead letters."""

from __future__ import annotations

import asyncio
import base64
import html
import json
from collections.abc import Iterator

import httpx
import pytest

from helpers import running_worker, wait_until
from taskflare import WorkerConfig
from taskflare.testing import drain

from .server import LiveServer, poll
from .test_http_jobs import error_of


@pytest.fixture
def client(sqlite_live: LiveServer) -> Iterator[httpx.Client]:
    with sqlite_live.client() as c:
        yield c


def queue_of(client: httpx.Client, name: str) -> dict[str, object]:
    response = client.get(f"/queues/{name}")
    assert response.status_code == 200, response.text
    queue: dict[str, object] = response.json()["queue"]
    return queue


def test_queue_shows_depth_by_state_oldest_pending_age_paused_flag_and_settings(
    client: httpx.Client,
) -> None:
    for n in range(3):
        client.post("/queues/pull/messages", json={"body": {"n": n}}).raise_for_status()
    pulled = client.post("/queues/pull/messages/pull", json={"batch_size": 1}).json()
    assert len(pulled["result"]["messages"]) == 1
    queue = queue_of(client, "pull")
    assert queue["depth"] == {"ready": 2, "leased": 1, "failed": 0}
    assert queue["paused"] is False and queue["consumer"] is None
    settings = queue["settings"]
    assert isinstance(settings, dict)
    assert settings["max_retries"] == 2 and settings["dead_letter_queue"] == "pull-dlq"
    poll(
        lambda: (queue_of(client, "pull")["oldestPendingAgeSeconds"] or 0) > 0.05,  # type: ignore[operator]
        what="the oldest pending message to age",
    )
    listing = client.get("/queues").json()
    assert listing["success"] is True and listing["count"] == len(listing["queues"])
    by_name = {q["name"]: q for q in listing["queues"]}
    assert {"pull", "pull-dlq", "emails", "billing", "billing-dlq", "default"} <= set(by_name)
    assert by_name["emails"]["consumer"] == "worker" and by_name["billing"]["consumer"] == "jobs"
    assert by_name["emails"]["oldestPendingAgeSeconds"] is None
    assert "nope" in error_of(client.get("/queues/nope"), 404)


def test_pause_makes_pull_answer_409_until_resumed(client: httpx.Client) -> None:
    client.post("/queues/pull/messages", json={"body": "x"}).raise_for_status()
    paused = client.post("/queues/pull/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert queue_of(client, "pull")["paused"] is True
    refused = client.post("/queues/pull/messages/pull", json={})
    error_of(refused, 409)
    assert refused.json()["code"] == "queue_delivery_paused"
    # Sending to a paused queue still works (Cloudflare pauses delivery, not producers).
    client.post("/queues/pull/messages", json={"body": "y"}).raise_for_status()
    resumed = client.post("/queues/pull/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    messages = client.post("/queues/pull/messages/pull", json={}).json()["result"]["messages"]
    assert len(messages) == 2
    error_of(client.post("/queues/nope/pause"), 404)


async def test_purge_needs_confirm_and_purged_messages_are_never_delivered(
    sqlite_live: LiveServer,
) -> None:
    async with sqlite_live.aclient() as client, sqlite_live.worker_app() as app:
        recorder = sqlite_live.recorder
        (await client.post("/queues/emails/pause")).raise_for_status()
        async with running_worker(app, WorkerConfig(queues=("emails",))):
            batch = [{"body": {"n": n}} for n in range(5)]
            batch += [{"body": {"late": n}, "delaySeconds": 0.5} for n in range(3)]
            sent = await client.post("/queues/emails/messages", json={"messages": batch})
            assert sent.json()["count"] == 8
            error_of(await client.post("/queues/emails/purge", json={}), 422)
            wrong = await client.post("/queues/emails/purge", json={"confirm": "pull"})
            assert "confirm" in error_of(wrong, 400)
            purged = await client.post("/queues/emails/purge", json={"confirm": "emails"})
            assert purged.status_code == 200
            assert purged.json()["purged"] == 8
            depth = (await client.get("/queues/emails")).json()["queue"]["depth"]
            assert depth == {"ready": 0, "leased": 0, "failed": 0}
            (await client.post("/queues/emails/resume")).raise_for_status()
            # A sentinel due after the purged delayed ones: once it arrives, they would have.
            sentinel = {"body": "sentinel", "delaySeconds": 1.0}
            (await client.post("/queues/emails/messages", json=sentinel)).raise_for_status()
            await wait_until(lambda: recorder.of("emails"), what="the sentinel")
        assert recorder.of("emails") == ["sentinel"]


async def test_purge_keeps_a_running_job_and_a_pulled_message_which_settle_as_usual(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    async with live.aclient() as client, live.worker_app() as app:

        @app.job("held", queue="billing", max_attempts=1)
        async def held(payload: object) -> str:
            started.set()
            await release.wait()
            return "done"

        running = await app.enqueue("held", {})
        waiting = await app.enqueue("held", {}, delay_seconds=600)
        (await client.post("/queues/pull/messages", json={"body": "a"})).raise_for_status()
        (await client.post("/queues/pull/messages", json={"body": "b"})).raise_for_status()
        pulled = await client.post("/queues/pull/messages/pull", json={"batch_size": 1})
        [in_flight] = pulled.json()["result"]["messages"]
        async with running_worker(app, WorkerConfig(queues=("billing",))):
            await asyncio.wait_for(started.wait(), 10)
            for queue in ("billing", "pull"):
                purged = await client.post(f"/queues/{queue}/purge", json={"confirm": queue})
                assert purged.json()["purged"] == 1, (queue, purged.text)
            # What waited is gone; what was in flight is still there, as it was.
            assert (await client.get(f"/jobs/{waiting.id}")).status_code == 404
            shown = await client.get(f"/jobs/{running.id}")
            assert shown.status_code == 200 and shown.json()["job"]["status"] == "processing"
            depth = (await client.get("/queues/pull")).json()["queue"]["depth"]
            assert depth == {"ready": 0, "leased": 1, "failed": 0}
            release.set()

            async def finished() -> bool:
                job = (await client.get(f"/jobs/{running.id}")).json()["job"]
                return bool(job["status"] == "completed")

            await wait_until(finished, what="the running job to complete")
        assert (await client.get(f"/jobs/{running.id}")).json()["job"]["result"] == "done"
        acked = await client.post(
            "/queues/pull/messages/ack", json={"acks": [{"lease_id": in_flight["lease_id"]}]}
        )
        assert acked.json()["result"] == {"ackCount": 1, "retryCount": 0, "warnings": {}}
    assert not [r for r in caplog.records if '"lost"' in r.getMessage()]


async def test_send_single_and_batch_with_delays(sqlite_live: LiveServer) -> None:
    with sqlite_live.client() as client:
        one = client.post("/queues/emails/messages", json={"body": {"n": 1}})
        assert one.status_code == 200
        body = one.json()
        assert body["success"] is True and body["count"] == 1 and body["ids"] == [body["id"]]
        later = client.post("/queues/emails/messages", json={"body": "later", "delaySeconds": 600})
        later.raise_for_status()
        batch = client.post(
            "/queues/emails/messages",
            json={
                "messages": [
                    {"body": "plain text", "contentType": "text"},
                    {"body": "aGVsbG8=", "content_type": "bytes"},
                    {"body": {"n": 2}, "delaySeconds": 600},
                ],
            },
        ).json()
        assert batch["count"] == 3 and len(set(batch["ids"])) == 3
        delayed_batch = client.post(
            "/queues/emails/messages",
            json={"messages": [{"body": {"n": 3}}], "delaySeconds": 600},
        ).json()
        assert delayed_batch["count"] == 1
        assert queue_of(client, "emails")["depth"] == {"ready": 6, "leased": 0, "failed": 0}
        async with sqlite_live.worker_app() as app:
            await drain(app, ["emails"])
        assert sorted(map(str, sqlite_live.recorder.of("emails"))) == sorted(
            ["{'n': 1}", "plain text", "b'hello'"]
        )
        assert queue_of(client, "emails")["depth"] == {"ready": 3, "leased": 0, "failed": 0}
        too_big = client.post("/queues/emails/messages", json={"body": "x" * 5000})
        assert "4 096 bytes" in error_of(too_big, 413)
        bad = client.post("/queues/emails/messages", json={"body": "x", "contentType": "xml"})
        assert "xml" in error_of(bad, 422)
        not_base64 = client.post(
            "/queues/emails/messages", json={"body": "%%%", "contentType": "bytes"}
        )
        assert "base64" in error_of(not_base64, 422)
        negative = client.post("/queues/emails/messages", json={"body": 1, "delaySeconds": -1})
        assert "delaySeconds" in error_of(negative, 422)
        error_of(client.post("/queues/nope/messages", json={"body": 1}), 404)


async def test_dead_letters_listed_and_reprocessed_as_the_original_jobs(
    sqlite_live: LiveServer,
) -> None:
    recorder = sqlite_live.recorder
    recorder.failing.add("charge")
    with sqlite_live.client() as client:
        jobs = [
            client.post("/jobs", json={"type": "charge", "payload": {"n": n}}).json()["jobId"]
            for n in range(3)
        ]
        async with sqlite_live.worker_app() as app:
            await drain(app)
            listed = client.get("/queues/billing/dlq").json()
            assert listed["success"] is True and listed["deadLetterQueue"] == "billing-dlq"
            assert listed["count"] == 3
            by_origin = {m["originId"]: m for m in listed["messages"]}
            assert set(by_origin) == set(jobs)
            assert all(m["originQueue"] == "billing" for m in listed["messages"])
            assert by_origin[jobs[0]]["body"] == {"n": 0}
            assert all(m["originAttempts"] == 1 for m in listed["messages"])
            assert all(m["lastError"] for m in listed["messages"]), "a dead letter says why"
            assert client.get(f"/jobs/{jobs[0]}").json()["job"]["status"] == "failed"
            first = client.get("/queues/billing/dlq", params={"limit": 2}).json()
            assert first["count"] == 2 and first["nextCursor"]
            rest = client.get(
                "/queues/billing/dlq", params={"limit": 2, "cursor": first["nextCursor"]}
            ).json()
            assert rest["count"] == 1 and rest["nextCursor"] is None
            paged = [m["id"] for m in first["messages"] + rest["messages"]]
            assert paged == [m["id"] for m in listed["messages"]]
            error_of(client.get("/queues/billing/dlq", params={"cursor": "nope"}), 400)
            failed = client.get("/queues/billing/failed").json()
            assert failed["count"] == 3 and {m["id"] for m in failed["messages"]} == set(jobs)
            assert all(m["state"] == "failed" for m in failed["messages"])
            error_of(client.get("/queues/nope/failed"), 404)

            recorder.failing.clear()
            one = client.post(
                "/queues/billing/dlq/reprocess", json={"ids": [by_origin[jobs[0]]["id"]]}
            )
            assert one.status_code == 200 and one.json()["reprocessed"] == 1
            job = client.get(f"/jobs/{jobs[0]}").json()["job"]
            assert job["status"] == "pending" and job["attempts"] == 0
            assert client.get("/queues/billing/dlq").json()["count"] == 2
            await drain(app)
            assert client.get(f"/jobs/{jobs[0]}").json()["job"]["status"] == "completed"
            assert client.get(f"/jobs/{jobs[1]}").json()["job"]["status"] == "failed"

            rest = client.post("/queues/billing/dlq/reprocess")
            assert rest.json()["reprocessed"] == 2
            await drain(app)
        for job_id in jobs:
            job = client.get(f"/jobs/{job_id}").json()["job"]
            assert job["status"] == "completed" and job["attempts"] == 1
            assert job["result"] == {"charged": True}
        assert client.get("/queues/billing/dlq").json()["count"] == 0
        assert client.post("/queues/billing/dlq/reprocess", json={}).json()["reprocessed"] == 0
        error_of(client.get("/queues/emails/dlq"), 404)
        assert client.get("/queues/emails/dlq").json()["code"] == "no_dlq"


async def test_reprocessing_ids_that_are_not_dead_letters_is_404_and_changes_nothing(
    live: LiveServer,
) -> None:
    live.recorder.failing.add("charge")
    with live.client() as client:
        client.post("/jobs", json={"type": "charge", "payload": {"n": 1}})
        async with live.worker_app() as app:
            await drain(app)
        [dead] = client.get("/queues/billing/dlq").json()["messages"]
        for ids in (["bogus"], [dead["id"], "bogus"], [dead["originId"]]):
            refused = client.post("/queues/billing/dlq/reprocess", json={"ids": ids})
            assert refused.status_code == 404 and refused.json()["code"] == "not_found"
            assert ids[-1] in refused.json()["error"]
        assert client.get("/queues/billing/dlq").json()["count"] == 1
        assert (
            client.post("/queues/billing/dlq/reprocess", json={"ids": [dead["id"]]}).json()[
                "reprocessed"
            ]
            == 1
        )


async def test_job_lists_carry_each_jobs_real_history(live: LiveServer) -> None:
    with live.client() as client:
        job_id = client.post("/jobs", json={"type": "flaky"}).json()["jobId"]
        async with live.worker_app() as app:
            await drain(app)
        listed = {j["id"]: j for j in client.get("/jobs").json()["jobs"]}
        history = listed[job_id]["history"]
        assert [a["outcome"] for a in history] == ["retried", "completed"]
        assert history == client.get(f"/jobs/{job_id}").json()["job"]["history"]


def test_sending_to_a_job_queue_is_409_and_a_message_needs_a_body(client: httpx.Client) -> None:
    for path in ("/queues/billing/messages", "/client/v4/accounts/acc/queues/billing/messages"):
        response = client.post(path, json={"body": {"x": 1}})
        assert response.status_code == 409, response.text
        assert "runs job types" in response.text
    assert client.post("/queues/billing/messages", json={"body": 1}).json()["code"] == "job_queue"
    batch = client.post("/queues/billing/messages", json={"messages": [{"body": 1}]})
    assert batch.status_code == 409 and "job_queue" in batch.text
    assert "body" in error_of(client.post("/queues/emails/messages", json={}), 400)
    no_body = client.post("/queues/emails/messages", json={"messages": [{"delaySeconds": 1}]})
    assert "messages[0]" in error_of(no_body, 400)
    cloudflare = client.post("/client/v4/accounts/acc/queues/emails/messages", json={})
    assert cloudflare.status_code == 400 and "body" in cloudflare.text
    assert queue_of(client, "emails")["depth"]["ready"] == 0  # type: ignore[index]
    # An explicit null body is a message.
    assert client.post("/queues/emails/messages", json={"body": None}).status_code == 200


def test_a_unique_key_missing_from_the_payload_is_400(client: httpx.Client) -> None:
    response = client.post("/jobs", json={"type": "notify-once", "payload": {"usr": 5}})
    message = error_of(response, 400)
    assert "'notify-once'" in message and "'user'" in message


def test_a_bad_message_of_a_batch_is_named_by_its_index(sqlite_live: LiveServer) -> None:
    ok = [{"body": {"n": 1}}, {"body": "two", "contentType": "text"}]
    cases = [
        ({"body": "%%%", "contentType": "bytes"}, 422, "messages[2]: a bytes body must be"),
        ({"body": 1, "delaySeconds": -1}, 422, "messages.2.delaySeconds"),
        ({"body": "x", "contentType": "xml"}, 422, "messages[2]: unsupported content type"),
        ({"body": "x" * 5000}, 413, "messages[2]: body is"),
        ({"contentType": "json"}, 400, "messages[2] needs a body"),
    ]
    with sqlite_live.client() as client:
        for bad, status, named in cases:
            sent = client.post("/queues/emails/messages", json={"messages": [*ok, bad]})
            assert named in error_of(sent, status)
        assert queue_of(client, "emails")["depth"]["ready"] == 0


def test_a_send_naming_no_delay_waits_the_queues_delivery_delay(client: httpx.Client) -> None:
    """Over HTTP as in code: no `delaySeconds` takes the queue's `delivery_delay`, an
    explicit 0 sends at once (also in a batch); both APIs show the setting."""
    client.post("/queues/later/messages", json={"body": "waits"}).raise_for_status()
    client.post(
        "/queues/later/messages", json={"body": "now", "delaySeconds": 0}
    ).raise_for_status()
    client.post(
        "/queues/later/messages", json={"messages": [{"body": "b-waits"}]}
    ).raise_for_status()
    client.post(
        "/queues/later/messages", json={"messages": [{"body": "b-now", "delaySeconds": 0}]}
    ).raise_for_status()
    pulled = client.post("/queues/later/messages/pull", json={"batch_size": 10}).json()
    bodies = [json.loads(base64.b64decode(m["body"])) for m in pulled["result"]["messages"]]
    assert sorted(bodies) == ["b-now", "now"]  # pulled bodies are base64, as Cloudflare's
    settings = queue_of(client, "later")["settings"]
    assert isinstance(settings, dict) and settings["delivery_delay"] == 60
    cloudflare = client.get("/client/v4/accounts/acc/queues/later").json()["result"]
    assert cloudflare["settings"]["delivery_delay"] == 60


def test_a_field_given_in_both_its_spellings_is_refused_as_such(client: httpx.Client) -> None:
    """`delay_seconds` and `delaySeconds` (and `content_type` / `contentType`) are one
    field: given both, the answer says so, not that a documented field is unknown
    (`delay_seconds: Extra inputs are not permitted`), in a message and in a batch item."""
    both = [
        ({"delay_seconds": 1, "delaySeconds": 1}, "delay_seconds: give delay_seconds or"),
        ({"content_type": "text", "contentType": "text"}, "content_type: give content_type or"),
    ]
    for fields, says in both:
        for path in ("/queues/emails/messages", "/client/v4/accounts/acc/queues/emails/messages"):
            single = client.post(path, json={"body": "x", **fields})
            assert single.status_code == 422 and says in single.text, single.text
            assert "Extra inputs" not in single.text
        batch = client.post("/queues/emails/messages", json={"messages": [{"body": 1, **fields}]})
        assert batch.status_code == 422 and says in batch.text, batch.text
        assert "messages" in error_of(batch, 422) and "Extra inputs" not in batch.text
    assert queue_of(client, "emails")["depth"]["ready"] == 0  # type: ignore[index]


def test_naming_a_dead_letter_queue_for_its_dead_letters_says_which_queue_it_serves(
    sqlite_live: LiveServer,
) -> None:
    """As the CLI does: `billing-dlq` has no dead-letter queue of its own, and the 404
    says it is the one of `billing` (the name to give), over HTTP and on the dashboard."""
    from .test_dashboard_pages import signed_in

    hint = "queue 'billing-dlq' has no dead_letter_queue (it is the dead-letter queue of 'billing')"
    with sqlite_live.client() as client:
        listed = client.get("/queues/billing-dlq/dlq")
        assert listed.json()["code"] == "no_dlq" and error_of(listed, 404) == hint
        replayed = client.post("/queues/billing-dlq/dlq/reprocess")
        assert replayed.json()["code"] == "no_dlq" and error_of(replayed, 404) == hint
        assert error_of(client.get("/queues/emails/dlq"), 404) == (
            "queue 'emails' has no dead_letter_queue"
        )
    with signed_in(sqlite_live) as browser:
        page = browser.get("/dashboard/queues/billing-dlq/dlq")
        assert page.status_code == 404 and hint in html.unescape(page.text)
