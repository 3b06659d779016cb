"""Cloudflare's pull-consumer API as its documentation shows it, on both backends: the
request its own example sends, and the error a paused queue answers."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import httpx
import pytest

from taskflare import App, DuplicateConsumer, InvalidJobConfig, MessageBatch

from .conftest import serve

BASE = "/client/v4/accounts/acc/queues/exports"


def pull_leases(client: httpx.Client, path: str, body: dict[str, object]) -> list[str]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return [m["lease_id"] for m in response.json()["result"]["messages"]]


def test_the_documented_visibility_timeout_field_is_read_in_milliseconds(
    database_url: str,
) -> None:
    """Cloudflare's pull example (and `wrangler queues info`) sends
    `{"visibility_timeout": 10000, "batch_size": 2}`: accepted, as milliseconds."""
    app = App(database_url)
    app.queue("exports")
    with serve(app) as client:
        for path in (f"{BASE}/messages", "/queues/exports/messages"):
            for n in range(3):
                client.post(path, json={"body": {"n": n}}).raise_for_status()
        for path in (f"{BASE}/messages/pull", "/queues/exports/messages/pull"):
            leases = pull_leases(client, path, {"visibility_timeout": 300, "batch_size": 2})
            assert len(leases) == 2
        # The 300 ms leases run out and their messages come back; a 30 s one would not.
        deadline = time.monotonic() + 20
        seen = 2
        while seen < 6:
            assert time.monotonic() < deadline, "leases of 300 ms did not run out"
            seen += len(pull_leases(client, f"{BASE}/messages/pull", {"batch_size": 100}))
        both = client.post(
            f"{BASE}/messages/pull", json={"visibility_timeout": 300, "visibility_timeout_ms": 400}
        )
        assert both.status_code == 422 and "visibility_timeout" in both.text
        too_long = client.post(f"{BASE}/messages/pull", json={"visibility_timeout": 43_200_001})
        assert too_long.status_code == 422 and "visibility_timeout" in too_long.text


def test_pulling_a_paused_queue_answers_409_queue_delivery_paused(database_url: str) -> None:
    app = App(database_url)
    app.queue("exports")
    with serve(app) as client:
        client.post(f"{BASE}/messages", json={"body": 1}).raise_for_status()
        client.post("/queues/exports/pause").raise_for_status()
        for path in (f"{BASE}/messages/pull", "/queues/exports/messages/pull"):
            paused = client.post(path, json={})
            assert paused.status_code == 409 and "queue_delivery_paused" in paused.text
        cloudflare = client.post(f"{BASE}/messages/pull", json={}).json()
        assert cloudflare["success"] is False
        assert "queue_delivery_paused" in cloudflare["errors"][0]["message"]
        client.post("/queues/exports/resume").raise_for_status()
        assert len(pull_leases(client, f"{BASE}/messages/pull", {})) == 1


def test_a_lease_acked_and_retried_in_one_request_is_acked_once_on_either_backend(
    database_url: str,
) -> None:
    """The ack comes first in the request, so it stands: the message is counted once,
    the retry is ignored with a warning. (SQLite acked it and PostgreSQL retried it, and
    both answered ackCount 1 and retryCount 1.) A lease acked twice is one ack."""
    app = App(database_url)
    app.queue("exports", max_retries=3)
    with serve(app) as client:
        client.post(f"{BASE}/messages/batch", json={"messages": [{"body": 1}, {"body": 2}]})
        one, two = pull_leases(client, f"{BASE}/messages/pull", {})
        answer = client.post(
            f"{BASE}/messages/ack",
            json={
                "acks": [{"lease_id": one}, {"lease_id": two}, {"lease_id": two}],
                "retries": [{"lease_id": one}, {"lease_id": one, "delay_seconds": 5}],
            },
        ).json()["result"]
        assert (answer["ackCount"], answer["retryCount"]) == (2, 0)
        assert list(answer["warnings"]) == [one]
        assert pull_leases(client, f"{BASE}/messages/pull", {}) == []
        depth = client.get("/queues/exports").json()["queue"]["depth"]
        assert depth == {"ready": 0, "leased": 0, "failed": 0}


def test_message_backlog_count_is_the_queue_s_backlog_not_a_batch_sized_cap(
    database_url: str,
) -> None:
    """It was counted up to 100 only: 250 messages, 10 pulled, said 90 left."""
    app = App(database_url)
    app.queue("exports")
    with serve(app) as client:
        for start in range(0, 250, 50):
            batch = [{"body": n} for n in range(start, start + 50)]
            client.post(f"{BASE}/messages/batch", json={"messages": batch}).raise_for_status()
        client.post(f"{BASE}/messages", json={"body": "later", "delay_seconds": 600})
        result = client.post(f"{BASE}/messages/pull", json={"batch_size": 10}).json()["result"]
        assert len(result["messages"]) == 10 and result["message_backlog_count"] == 240
        result = client.post(f"{BASE}/messages/pull", json={"batch_size": 100}).json()["result"]
        assert result["message_backlog_count"] == 140


def test_wrangler_s_pause_and_resume_delivery_request_pauses_the_queue(
    database_url: str,
) -> None:
    """`wrangler queues pause-delivery` sends `PATCH .../queues/{id}` with
    `{"settings": {"delivery_paused": true}}`; it was answered 405."""
    app = App(database_url)
    app.queue("exports")
    with serve(app) as client:
        client.post(f"{BASE}/messages", json={"body": 1}).raise_for_status()
        paused = client.patch(BASE, json={"settings": {"delivery_paused": True}})
        assert paused.status_code == 200, paused.text
        assert paused.json()["result"]["settings"]["delivery_paused"] is True
        assert client.post(f"{BASE}/messages/pull", json={}).status_code == 409
        assert client.post(f"{BASE}/messages", json={"body": 2}).status_code == 200
        resumed = client.patch(BASE, json={"settings": {"delivery_paused": False}})
        assert resumed.json()["result"]["settings"]["delivery_paused"] is False
        assert len(pull_leases(client, f"{BASE}/messages/pull", {})) == 2
        code_setting = client.patch(BASE, json={"settings": {"delivery_delay": 30}})
        assert code_setting.status_code == 422 and "delivery_delay" in code_setting.text


def _http_pull_app(database_url: str, tmp_path: Path, setting: str) -> App:
    """An app whose wrangler.toml declares `exports` an `http_pull` consumer with
    `setting` (one `key = value` line)."""
    wrangler = tmp_path / "wrangler.toml"
    wrangler.write_text(f'[[queues.consumers]]\nqueue = "exports"\ntype = "http_pull"\n{setting}\n')
    app = App(database_url)
    app.use_wrangler(str(wrangler))
    return app


def test_a_pull_retry_without_delay_seconds_waits_the_consumers_retry_delay(
    database_url: str, tmp_path: Path
) -> None:
    """Cloudflare's `retry_delay` (`--retry-delay-secs` of `wrangler queues consumer http
    add`) applies to a retry that names no delay; `delay_seconds: 0` overrides it. A pull
    retry without one was delivered again at once."""
    app = _http_pull_app(database_url, tmp_path, "retry_delay = 3600")
    with serve(app) as client:
        client.post(f"{BASE}/messages", json={"body": "plain"}).raise_for_status()
        client.post(f"{BASE}/messages", json={"body": "zero"}).raise_for_status()
        pulled = client.post(f"{BASE}/messages/pull", json={}).json()["result"]["messages"]
        lease = {base64.b64decode(m["body"]).decode(): m["lease_id"] for m in pulled}
        answer = client.post(
            f"{BASE}/messages/ack",
            json={
                "retries": [
                    {"lease_id": lease['"plain"']},
                    {"lease_id": lease['"zero"'], "delay_seconds": 0},
                ]
            },
        ).json()["result"]
        assert (answer["ackCount"], answer["retryCount"]) == (0, 2)
        again = client.post(f"{BASE}/messages/pull", json={}).json()["result"]["messages"]
        assert [base64.b64decode(m["body"]) for m in again] == [b'"zero"']
        assert again[0]["attempts"] == 2


def test_a_pull_without_a_visibility_timeout_leases_for_the_consumers_own(
    database_url: str, tmp_path: Path
) -> None:
    """A wrangler `http_pull` consumer's `visibility_timeout_ms` is the lease of a pull
    that gives none; such a pull leased for 30 s whatever the consumer said."""
    app = _http_pull_app(database_url, tmp_path, "visibility_timeout_ms = 300")
    with serve(app) as client:
        client.post(f"{BASE}/messages", json={"body": 1}).raise_for_status()
        for path in (f"{BASE}/messages/pull", "/queues/exports/messages/pull"):
            [first] = pull_leases(client, path, {})
            # The 300 ms lease runs out and the message comes back; a 30 s one would not.
            deadline = time.monotonic() + 20
            while not (again := pull_leases(client, path, {"visibility_timeout_ms": 60_000})):
                assert time.monotonic() < deadline, "a lease of 300 ms did not run out"
            assert again != [first]
            client.post(
                f"{BASE}/messages/ack",
                json={"retries": [{"lease_id": again[0], "delay_seconds": 0}]},
            ).raise_for_status()


def test_a_queue_with_a_consumer_is_not_pulled_and_a_job_queue_never_is(
    database_url: str,
) -> None:
    """Cloudflare: "each queue can only have one active consumer", a Worker or an HTTP
    pull consumer. A pull from a queue whose batches a taskflare consumer runs leased its
    messages away from it; a server without the app's code (which knows the queues from
    the database) also pulled a job queue's jobs as messages."""
    producer = App(database_url)

    @producer.job("report.build", queue="reports")
    async def build(payload: dict[str, int]) -> None: ...

    pushed = producer.queue("pushed", max_batch_timeout=0)

    @pushed.consumer
    async def consume(batch: MessageBatch[object]) -> None: ...

    async def produce() -> None:
        await producer.declare_queues()  # as its workers do when they start
        await producer.enqueue("report.build", {"n": 1})
        await pushed.send("hello")
        await producer.close()

    asyncio.run(produce())
    for app in (App(database_url), producer):  # without the app's code, then with it
        with serve(app) as client:
            for queue, code in (("pushed", "has_consumer"), ("reports", "job_queue")):
                base = f"/client/v4/accounts/acc/queues/{queue}"
                for path in (f"{base}/messages/pull", f"/queues/{queue}/messages/pull"):
                    refused = client.post(path, json={})
                    assert refused.status_code == 409, (path, refused.text)
                    assert code in refused.text
            depth = client.get("/queues/pushed").json()["queue"]["depth"]
            assert depth["ready"] == 1 and depth["leased"] == 0
    assert asyncio.run(_job_states(database_url)) == ["pending"]


async def _job_states(database_url: str) -> list[str]:
    app = App(database_url)
    try:
        return [str(job.status) for job in (await app.read.jobs()).jobs]
    finally:
        await app.close()


def test_a_wrangler_http_pull_queue_takes_no_python_consumer(tmp_path: Path) -> None:
    """A `type = "http_pull"` consumer is the queue's one consumer; binding a Python
    batch consumer to it as well was accepted (two consumers, each stealing the other's
    messages)."""
    wrangler = tmp_path / "wrangler.toml"
    wrangler.write_text('[[queues.consumers]]\nqueue = "exports"\ntype = "http_pull"\n')
    app = App(f"sqlite:///{tmp_path / 'db.sqlite'}")
    app.use_wrangler(str(wrangler))
    with pytest.raises(DuplicateConsumer, match=r"exports.*http_pull"):

        @app.get_queue("exports").consumer
        async def consume(batch: MessageBatch[object]) -> None: ...

    with pytest.raises(InvalidJobConfig, match=r"exports.*http_pull"):

        @app.job("export.run", queue="exports")
        async def run(payload: dict[str, int]) -> None: ...

    # Declared in code first, then named an http_pull consumer by the file: refused too.
    other = App(f"sqlite:///{tmp_path / 'other.sqlite'}")

    @other.job("export.run", queue="exports")
    async def run_first(payload: dict[str, int]) -> None: ...

    with pytest.raises(DuplicateConsumer, match=r"exports.*http_pull.*job types"):
        other.use_wrangler(str(wrangler))
    assert other.registry.queue("exports").config.max_batch_timeout == 0  # not redeclared
