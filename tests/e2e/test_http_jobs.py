"""Seed 002's job API over a real server, on both backends: exact shapes, errors, auth, 413."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from helpers import running_worker
from taskflare import readmodel
from taskflare.testing import drain
from taskflare.web.jobs_routes import MAX_WAIT_SECONDS

from .server import READ_TOKEN, SECRETS, WRITE_TOKEN, LiveServer, poll

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
EMAIL = {"to": "user@example.com", "subject": "Test", "body": "Hello!"}


def enqueue(client: httpx.Client, type: str = "send-email", **extra: Any) -> str:
    payload = extra.pop("payload", EMAIL)
    response = client.post("/jobs", json={"type": type, "payload": payload, **extra})
    assert response.status_code == 200, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def error_of(response: httpx.Response, status: int) -> str:
    """Check an error answer's status and shape; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"success", "error", "code"}
    # Every error names its kind, but a 401 (what it lacks is the token).
    assert status == 401 or isinstance(body.get("code"), str), response.text
    message: str = body["error"]
    return message


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


def test_enqueue_answers_with_the_seed_shape(client: httpx.Client) -> None:
    response = client.post(
        "/jobs",
        json={"type": "send-email", "payload": EMAIL, "priority": 5, "maxAttempts": 3},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Job enqueued successfully"
    assert uuid.UUID(body["jobId"])


async def test_completed_job_reads_back_with_the_seed_fields(live: LiveServer) -> None:
    with live.client() as client:
        job_id = enqueue(client, priority=5, maxAttempts=3)
        pending = client.get(f"/jobs/{job_id}").json()
        assert pending["success"] is True
        assert pending["job"]["status"] == "pending" and pending["job"]["completedAt"] is None
        async with live.worker_app() as app:
            await drain(app)
        body = client.get(f"/jobs/{job_id}").json()
    job = body["job"]
    assert body["success"] is True
    assert job["id"] == job_id and job["type"] == "send-email"
    assert job["status"] == "completed"
    assert job["attempts"] == 1 and job["maxAttempts"] == 3
    assert job["result"] == {"sent": True}
    assert job["payload"] == EMAIL and job["priority"] == 5
    assert ISO_Z.match(job["createdAt"]) and ISO_Z.match(job["completedAt"])
    assert job["completedAt"] >= job["createdAt"]
    assert live.recorder.of("send-email") == [EMAIL]


async def test_get_with_wait_answers_as_soon_as_the_job_finishes(live: LiveServer) -> None:
    # The longest wait a request may ask for, and a client that waits past it: only a poll
    # that held the request for its whole wait, not a loaded machine, reaches the bound.
    wait = MAX_WAIT_SECONDS
    with live.client(timeout=wait + 30) as client:
        job_id = enqueue(client)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        # A long poll from another thread while this loop runs a worker for the job.
        polled = loop.run_in_executor(
            None, lambda: client.get(f"/jobs/{job_id}", params={"wait": wait}).json()
        )
        async with live.worker_app() as app, running_worker(app):
            body = await asyncio.wait_for(polled, wait + 30)
        waited = time.monotonic() - started
        assert body["job"]["status"] == "completed" and body["job"]["result"] == {"sent": True}
        assert waited < wait, f"the long poll answered after its whole wait ({waited:.1f}s)"
        # A job that does not finish in time comes back as it stands.
        other = client.post(
            "/jobs", json={"type": "send-email", "payload": EMAIL, "delaySeconds": 3600}
        ).json()["jobId"]
        still = client.get(f"/jobs/{other}", params={"wait": 0.3}).json()
        assert still["job"]["status"] == "pending"
        too_long = client.get(f"/jobs/{other}", params={"wait": 3600})
        assert too_long.status_code == 422 and "wait" in too_long.json()["error"]
        assert client.get("/jobs/nope", params={"wait": 1}).status_code == 404


async def test_list_filters_by_status_counts_and_pages_with_a_cursor(live: LiveServer) -> None:
    with live.client() as client:
        done = [enqueue(client) for _ in range(3)]
        failed = enqueue(client, "always-fails", payload={"n": 1})
        async with live.worker_app() as app:
            await drain(app)
        failures = client.get("/jobs", params={"status": "failed", "limit": 50}).json()
        assert failures["success"] is True and failures["count"] == 1
        assert [j["id"] for j in failures["jobs"]] == [failed]
        assert failures["jobs"][0]["error"]
        completed = client.get("/jobs", params={"status": "completed", "type": "send-email"})
        assert completed.json()["count"] == 3
        first = client.get("/jobs", params={"limit": 2}).json()
        assert first["count"] == 2 and first["nextCursor"]
        rest = client.get("/jobs", params={"limit": 2, "cursor": first["nextCursor"]}).json()
        assert rest["count"] == 2 and rest["nextCursor"] is None
        seen = [j["id"] for j in first["jobs"] + rest["jobs"]]
        assert sorted(seen) == sorted([*done, failed])
        assert seen == sorted(seen, reverse=True)  # newest first (ids are UUIDv7)
        by_queue = client.get("/jobs", params={"queue": "billing"}).json()
        assert by_queue == {
            "success": True,
            "count": 0,
            "jobs": [],
            "nextCursor": None,
            "scanLimitReached": False,
        }


async def test_list_stops_at_its_scan_window_and_the_cursor_goes_on(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window of 3 jobs instead of 20 000, so the test needs a handful of jobs.
    monkeypatch.setattr(readmodel, "FILTER_SCAN_LIMIT", 3)
    with live.client() as client:
        needle = enqueue(client, "always-fails", payload={"n": 1})
        for _ in range(4):
            enqueue(client)
        query = {"status": "pending", "type": "always-fails"}
        first = client.get("/jobs", params=query).json()
        # Nothing among the 3 newest pending jobs: an empty page that says it stopped.
        assert first["count"] == 0 and first["scanLimitReached"] is True
        assert first["nextCursor"]
        rest = client.get("/jobs", params=query | {"cursor": first["nextCursor"]}).json()
        assert [j["id"] for j in rest["jobs"]] == [needle]
        assert rest["scanLimitReached"] is False and rest["nextCursor"] is None


async def test_retry_of_a_failed_job_queues_it_again(live: LiveServer) -> None:
    with live.client() as client:
        job_id = enqueue(client, "always-fails", payload={"n": 1})
        async with live.worker_app() as app:
            await drain(app)
            assert client.get(f"/jobs/{job_id}").json()["job"]["status"] == "failed"
            response = client.post(f"/jobs/{job_id}/retry")
            assert response.status_code == 200
            body = response.json()
            assert body["success"] is True and body["message"] == "Job retry queued"
            assert body["job"]["status"] == "pending"
            await drain(app)
        assert live.recorder.of("always-fails") == [{"n": 1}, {"n": 1}]
        ok = enqueue(client)
        async with live.worker_app() as app:
            await drain(app)
        message = error_of(client.post(f"/jobs/{ok}/retry"), 409)
        assert "completed" in message


async def test_cancel_pending_then_refuse_cancelling_finished_jobs(live: LiveServer) -> None:
    with live.client() as client:
        pending = enqueue(client, delaySeconds=3600)
        response = client.delete(f"/jobs/{pending}")
        assert response.status_code == 200
        body = response.json()
        assert body["success"] is True and body["message"] == "Job cancelled"
        assert body["job"]["status"] == "cancelled"
        assert "cancelled" in error_of(client.delete(f"/jobs/{pending}"), 409)
        done = enqueue(client)
        async with live.worker_app() as app:
            await drain(app)
        assert "completed" in error_of(client.delete(f"/jobs/{done}"), 409)
        assert client.get(f"/jobs/{done}").json()["job"]["status"] == "completed"


async def test_stats_totals_and_rates_formatted_like_the_seed(live: LiveServer) -> None:
    with live.client() as client:
        empty = client.get("/stats").json()
        assert empty["success"] is True
        assert empty["stats"]["total"] == 0 and empty["stats"]["completionRate"] == "0.00%"
        for _ in range(3):
            enqueue(client)
        enqueue(client, "always-fails", payload={})
        async with live.worker_app() as app:
            await drain(app)
        stats = client.get("/stats").json()["stats"]
    expected = {"total": 4, "pending": 0, "processing": 0, "completed": 3, "failed": 1}
    assert {k: stats[k] for k in expected} == expected
    assert stats["completionRate"] == "75.00%" and stats["failureRate"] == "25.00%"
    assert stats["byType"]["always-fails"]["failureRate"] == "100.00%"


def test_delay_idempotency_and_correlation_fields(client: httpx.Client) -> None:
    first = client.post(
        "/jobs",
        json={
            "type": "send-email",
            "payload": EMAIL,
            "delaySeconds": 600,
            "idempotencyKey": "welcome-42",
            "correlationId": "req-1",
        },
    ).json()
    again = client.post(
        "/jobs", json={"type": "send-email", "payload": EMAIL, "idempotencyKey": "welcome-42"}
    ).json()
    assert again["jobId"] == first["jobId"] and again["duplicate"] is True
    assert again["message"] == "Job already enqueued"
    job = client.get(f"/jobs/{first['jobId']}").json()["job"]
    assert job["idempotencyKey"] == "welcome-42" and job["correlationId"] == "req-1"
    assert job["status"] == "pending" and job["runAt"] > job["createdAt"]


def test_health_is_public_even_with_a_token(live: LiveServer) -> None:
    with live.client(token=None) as anonymous:
        response = anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["service"] == "queue"
    assert ISO_Z.match(body["timestamp"])


def test_bad_input_gets_4xx_naming_the_field(client: httpx.Client) -> None:
    malformed = client.post(
        "/jobs", content=b'{"type": "send-email", ', headers={"content-type": "application/json"}
    )
    assert "malformed JSON" in error_of(malformed, 400)
    unknown = client.post("/jobs", json={"type": "no-such-type", "payload": {}})
    assert "no-such-type" in error_of(unknown, 400)
    assert unknown.json()["code"] == "unknown_job_type"
    cases = {
        "priority": {"priority": 10**9},
        "maxAttempts": {"maxAttempts": "three"},
        "delaySeconds": {"delaySeconds": -1},
        "runAt": {"runAt": "not a date"},
        "idempotencyKey": {"idempotencyKey": ""},
        "surprise": {"surprise": True},
    }
    for field, extra in cases.items():
        response = client.post("/jobs", json={"type": "send-email", "payload": EMAIL, **extra})
        assert field in error_of(response, 422), field
    missing = client.post("/jobs", json={"payload": EMAIL})
    assert "type" in error_of(missing, 422)
    bad_payload = client.post("/jobs", json={"type": "send-email", "payload": {"to": "x"}})
    message = error_of(bad_payload, 422)
    assert "subject" in message and "send-email" in message
    assert "limit" in error_of(client.get("/jobs", params={"limit": 0}), 422)
    assert "status" in error_of(client.get("/jobs", params={"status": "lost"}), 422)
    assert "cursor" in error_of(client.get("/jobs", params={"cursor": "%%%"}), 400)


def test_run_at_given_as_a_number_is_refused_not_guessed(client: httpx.Client) -> None:
    """`runAt` is ISO 8601 text: pydantic alone read a number (or a text of digits) as
    epoch seconds, or as milliseconds above 2e10, so 1e10 ms became the year 2286 and
    2.1e10 s became 1970. Every number is refused, naming the field; nothing is stored."""
    for value in (1767225600, 1767225600000, 2.1e10, 0, "1767225600", " 1767225600000 ", True):
        response = client.post(
            "/jobs", json={"type": "send-email", "payload": EMAIL, "runAt": value}
        )
        message = error_of(response, 422)
        assert message.startswith("runAt: must be an ISO 8601 timestamp"), (value, message)
        assert "delaySeconds" in message and response.json()["code"] == "invalid"
    assert client.get("/jobs").json()["count"] == 0
    tomorrow = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    paris_summer = tomorrow.astimezone(timezone(timedelta(hours=2)))
    fine = enqueue(client, runAt=paris_summer.isoformat())
    stored = client.get(f"/jobs/{fine}").json()["job"]["runAt"]
    # The same moment (give or take the enqueue's own time: the delay is what is stored),
    # not hours or years off.
    when = datetime.fromisoformat(stored.replace("Z", "+00:00"))
    assert abs(when - tomorrow) < timedelta(minutes=1)


def test_a_body_sent_as_form_encoding_is_refused_with_415(client: httpx.Client) -> None:
    """`curl -d '{...}'` sends application/x-www-form-urlencoded, as an HTML form does: the
    body must say it is JSON (`curl --json`), or any page could post one (see security.md)."""
    response = client.post(
        "/jobs",
        content=b'{"type": "send-email", "payload": {"to": "a", "subject": "b", "body": "c"}}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert "application/json" in error_of(response, 415)
    assert client.get("/jobs").json()["count"] == 0


def test_tokens_no_token_bad_token_and_read_only_token(live: LiveServer) -> None:
    body = {"type": "send-email", "payload": EMAIL}
    with live.client(token=None) as anonymous:
        assert "bearer" in error_of(anonymous.get("/jobs"), 401).lower()
        assert "bearer" in error_of(anonymous.post("/jobs", json=body), 401).lower()
        basic = anonymous.get("/stats", headers={"Authorization": f"Basic {WRITE_TOKEN}"})
        error_of(basic, 401)
    with live.client(token="not-the-token") as wrong:
        error_of(wrong.get("/stats"), 401)
        error_of(wrong.get("/metrics"), 401)
    with live.client(token=READ_TOKEN) as reader:
        assert reader.get("/stats").status_code == 200
        assert reader.get("/jobs").status_code == 200
        assert reader.get("/queues").status_code == 200
        error_of(reader.post("/jobs", json=body), 401)
        error_of(reader.delete(f"/jobs/{uuid.uuid4()}"), 401)
        error_of(reader.post("/queues/pull/messages/pull", json={}), 401)
    with live.client() as writer:
        assert writer.post("/jobs", json=body).status_code == 200


def test_unknown_ids_answer_404(client: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    assert missing in error_of(client.get(f"/jobs/{missing}"), 404)
    error_of(client.post(f"/jobs/{missing}/retry"), 404)
    error_of(client.delete(f"/jobs/{missing}"), 404)
    error_of(client.get("/no/such/route"), 404)


def test_too_large_bodies_get_413_with_or_without_content_length(client: httpx.Client) -> None:
    big = b'{"type": "send-email", "payload": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    declared = client.post("/jobs", content=big, headers={"content-type": "application/json"})
    assert "limit" in error_of(declared, 413)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "limit" in error_of(streamed, 413)
    # The server is still fine afterwards.
    assert client.get("/stats").status_code == 200


def test_secrets_never_reach_the_logs(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with live.client(token="wrong-" + WRITE_TOKEN) as wrong:
        wrong.get("/jobs")
    with live.client(token=READ_TOKEN) as reader:
        reader.post("/jobs", json={"type": "send-email", "payload": EMAIL})
        reader.get("/stats")
    with live.client() as writer:
        writer.post("/jobs", json={"type": "send-email", "payload": EMAIL})
        writer.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
    text = caplog.text
    for secret in SECRETS:
        assert secret not in text


def test_errors_name_fields_as_the_http_caller_wrote_them_with_units(
    sqlite_live: LiveServer,
) -> None:
    far = "2999-01-01T00:00:00Z"
    with sqlite_live.client() as client:

        def error(body: dict[str, object], status: int = 422) -> str:
            # A valid payload unless the case is about the payload: only the field at
            # fault is wrong (which of several bad fields is named first is not fixed).
            payload = {"to": "a@b.c", "subject": "s", "body": "b"}
            job = {"type": "send-email", "payload": payload, **body}
            return error_of(client.post("/jobs", json=job), status)

        assert error({"runAt": far}).startswith(f"runAt {far} is ")
        both = error({"runAt": "2030-01-01T00:00:00Z", "delaySeconds": 5})
        assert both == "give either runAt or delaySeconds, not both"
        assert "runAt" in error({"runAt": "2030-01-01T00:00:00"})  # no offset
        assert error({"delaySeconds": 10**9}).endswith("31536000 seconds")
        big = error({"payload": {"to": "x" * 200_000, "subject": "", "body": ""}}, 413)
        assert "200 0" in big and "KiB" in big and "_" not in big.replace("job type", "")
        for text in (both, error({"runAt": far})):
            assert "run_at" not in text and "delay_seconds" not in text


def test_a_path_or_method_the_api_does_not_have_is_named_with_a_code(
    client: httpx.Client,
) -> None:
    """The router's own 404 and 405 carry a `code` like every other error, and say which
    request had no route (not a bare "Not Found")."""
    missing = client.get("/job/01a2")
    assert error_of(missing, 404) == ("no such path: GET /job/01a2 (the paths are listed at /docs)")
    assert missing.json()["code"] == "not_found"
    wrong = client.put("/jobs", json={})
    assert "PUT /jobs" in error_of(wrong, 405)
    assert wrong.json()["code"] == "method_not_allowed"
    # both routes of the path, not the first; HEAD is answered wherever GET is
    assert wrong.headers["allow"] == "GET, HEAD, POST"
    unknown_job = client.get("/jobs/nope")  # a route's own 404 keeps its message
    assert "nope" in error_of(unknown_job, 404) and unknown_job.json()["code"] == "not_found"


def test_head_is_answered_wherever_get_is(client: httpx.Client) -> None:
    """Every GET path of the API answers HEAD with GET's status and headers and no body
    (RFC 9110, 9.3.2): monitors and link checkers send HEAD. A path without GET keeps its
    405, whose `Allow` names HEAD beside GET where it is answered."""
    job = enqueue(client)
    spec = client.get("/openapi.json").json()
    plain = [p for p, ops in spec["paths"].items() if "get" in ops and "{" not in p]
    assert {"/jobs", "/stats", "/health", "/queues"} <= set(plain)
    for path in [*plain, f"/jobs/{job}", "/docs", "/openapi.json"]:

        def pair(path: str = path) -> tuple[httpx.Response, httpx.Response] | None:
            # `/health` answers 503 when the database is slower than its budget (a loaded
            # machine): a GET and a HEAD sent back to back may see different moments.
            got, head = client.get(path), client.head(path)
            return (got, head) if got.status_code == head.status_code else None

        got, head = poll(pair, what=f"GET and HEAD {path} to agree")
        assert head.status_code != 405, path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
        assert head.content == b"", path
    assert client.head("/jobs/nope").status_code == 404
    webhook = client.head("/webhooks/stripe")  # POST only
    assert webhook.status_code == 405 and webhook.headers["allow"] == "POST"


def test_a_query_parameter_the_path_does_not_take_is_422_naming_it(client: httpx.Client) -> None:
    """`?offset=` or `?page=` on a listing paged by cursor was ignored: a client paging
    that way read the first page for ever. Every path of the API's own refuses a query
    parameter it does not take (the Cloudflare routes take what its SDKs send)."""
    for path, unknown in [
        ("/jobs?offset=-1", "offset"),
        ("/jobs?limit=1&page=2", "page"),
        ("/jobs/nope?wat=1", "wat"),
        ("/stats?queu=emails", "queu"),
        ("/queues?x=1", "x"),
        ("/queues/emails/failed?offset=5", "offset"),
        ("/namespaces/n/items?start=a", "start"),
    ]:
        answer = client.get(path)
        message = error_of(answer, 422)
        assert message.startswith(f"query.{unknown}: unknown query parameter"), message
        assert answer.json()["code"] == "invalid"
    assert "this path takes: cursor, limit, queue, status, type" in error_of(
        client.get("/jobs?offset=1"), 422
    )
    assert client.get("/jobs?limit=1&status=pending").status_code == 200
    assert client.head("/jobs?offset=1").status_code == 422


def test_a_job_id_or_cursor_not_ours_is_unknown_or_invalid_by_name(live: LiveServer) -> None:
    """Opaque tokens the API handed out: a job id it never made is 404 on every route
    (a long one was 404 from GET but 400 from retry and cancel), and a cursor of the
    right shape that no page ended with is 400 naming `cursor` (one holding `"nan"` was
    taken as a position)."""
    long_id = "y" * 600
    forged = base64.urlsafe_b64encode(b'["nan", "x"]').decode()
    with live.client() as client:
        enqueue(client)
        for method, path in (
            ("GET", f"/jobs/{long_id}"),
            ("GET", f"/jobs/{long_id}/status"),
            ("POST", f"/jobs/{long_id}/retry"),
            ("DELETE", f"/jobs/{long_id}"),
            ("GET", f"/batches/{long_id}"),
        ):
            assert "not found" in error_of(client.request(method, path), 404), path
        for path in ("/jobs", "/queues/billing/failed", "/queues/billing/dlq"):
            message = error_of(client.get(path, params={"cursor": forged}), 400)
            assert message.startswith("invalid cursor") and forged in message, message


async def test_enqueue_with_a_queue_runs_the_job_on_that_queue(live: LiveServer) -> None:
    """`queue` routes a job as `app.enqueue(queue=)` does: `flaky` (declared on the
    default queue, 2 attempts) runs on a worker of `billing`, with its own attempts."""
    with live.client() as client:
        job_id = enqueue(client, "flaky", payload={}, queue="billing")
        assert client.get(f"/jobs/{job_id}").json()["job"]["queue"] == "billing"
        for queue in ("emails", "nowhere"):
            response = client.post("/jobs", json={"type": "flaky", "payload": {}, "queue": queue})
            assert f"'{queue}'" in error_of(response, 400)
            assert response.json()["code"] == "unknown_queue"
        async with live.worker_app() as app:
            assert (await drain(app, ["default"])).batches == 0
            result = await drain(app, ["billing"])
        assert (result.retried, result.acked) == (1, 1)
        job = client.get(f"/jobs/{job_id}").json()["job"]
        assert (job["status"], job["attempts"], job["result"]) == ("completed", 2, "ok")
        assert live.recorder.of("flaky") == [1, 2]
