"""Flow limits are visible: `GET /limits`, `GET /metrics`, `GET /jobs/{id}` (held by which
limit until when, or snoozed until when), `taskflare stats` and `taskflare jobs show`,
from a server and a CLI that know the limits only as the workers stored them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskflare import App, Concurrency, RateLimit, Snooze
from taskflare.testing import drain

from . import server
from .server import LiveServer, Recorder, live_server
from .test_http_metrics import samples

build_app = server.build_app  # the original, before `keyed_live` swaps in its own


async def test_limits_and_held_jobs_are_visible_everywhere(live: LiveServer) -> None:
    app = App(live.database_url)
    try:
        app.job("call", queue="partner-api", rate_limit=RateLimit("1/m", key=lambda p: p["t"]))(
            lambda p: None
        )

        @app.job("poll", queue="partner-api")
        async def poll(payload: Any) -> None:
            raise Snooze(600)

        await app.declare_queues()  # what a worker stores when it starts
        await app.enqueue("call", {"t": "acme"})
        held = await app.enqueue("call", {"t": "acme"})
        snoozed = await app.enqueue("poll", {})
        await drain(app)
        async with live.aclient() as client:
            limits = (await client.get("/limits")).json()["limits"]
            job = (await client.get(f"/jobs/{held.id}")).json()["job"]
            dozing = (await client.get(f"/jobs/{snoozed.id}")).json()["job"]
            metrics = samples((await client.get("/metrics")).text)
        from_code = await app.read.limits()  # this app's declarations, not the stored ones
    finally:
        await app.close()

    (limit,) = limits
    assert limit["kind"] == "rate" and limit["jobType"] == "call" and limit["rate"] == "1/60s"
    assert (limit["keys"], limit["running"], limit["waiting"]) == (1, 0, 1)
    assert limit["startedPerSecond"] == 0.1  # one start over the last 10 s
    assert limit["heldUntil"] is not None
    # Keyed by a function: each key has a bucket of its own, whether the reader has the
    # app's code (from_code) or only what the workers stored (the server, the CLI).
    assert limit["perKey"] is True and [row["perKey"] for row in from_code] == [True]
    (hold,) = job["heldBy"]
    assert hold["key"] == "acme" and hold["limit"] == "r:call:0" and hold["until"]
    assert job["snoozedUntil"] is None
    assert dozing["snoozedUntil"] == dozing["runAt"] and dozing["heldBy"] == []
    labels = '{limit="r:call:0",queue="partner-api"}'
    assert metrics[f"taskflare_limit_waiting{labels}"] == 1
    assert metrics[f"taskflare_limit_keys{labels}"] == 1

    stats = tf_json("stats", url=live.database_url)
    assert [(row["limit"], row["perKey"]) for row in stats["limits"]] == [("r:call:0", True)]
    shown = ok("jobs", "show", held.id, url=live.database_url)
    assert "held by rate limit r:call:0 key 'acme' until: 20" in shown
    assert "snoozed until: 20" in ok("jobs", "show", snoozed.id, url=live.database_url)
    table = ok("stats", url=live.database_url)
    assert "limits" in table and "type call" in table and "1/60s burst 1 per key" in table
    assert job["heldBy"][0]["perKey"] is True


def ok(*args: str, url: str) -> str:
    """Run the real `taskflare` executable; it must succeed."""
    taskflare = str(Path(sys.executable).with_name("taskflare"))
    env = {**os.environ, "TASKFLARE_DATABASE_URL": url, "COLUMNS": "200"}
    result = subprocess.run([taskflare, *args], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tf_json(*args: str, url: str) -> Any:
    return json.loads(ok(*args, "--json", url=url))


def with_keyed_limits(url: str, recorder: Recorder) -> App:
    """The e2e app plus `per-tenant`, whose limits are keyed by the keys given."""
    app = build_app(url, recorder)
    app.job(
        "per-tenant",
        queue="tenants",
        rate_limit=RateLimit("5/s", per_key=True),
        concurrency=Concurrency(2),
    )(lambda payload: None)
    return app


@pytest.fixture
def keyed_live(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setattr(server, "build_app", with_keyed_limits)
    with live_server(sqlite_url) as running:
        yield running


def test_post_jobs_takes_rate_and_concurrency_keys(keyed_live: LiveServer) -> None:
    payload = {"to": "a@b.c", "subject": "s", "body": "b"}
    with keyed_live.client() as client:
        fine = client.post(
            "/jobs",
            json={"type": "per-tenant", "payload": {}, "rateKey": "acme", "concurrencyKey": "7"},
        )
        assert fine.status_code == 200, fine.text
        bad = client.post("/jobs", json={"type": "per-tenant", "payload": {}, "rateKey": "a\x00b"})
        assert bad.status_code == 422 and "rateKey" in bad.text
        # The library's own check (a C1 control character, which the request model lets
        # through) names the field as the caller spelled it, too; nothing is stored.
        for field in ("rateKey", "concurrencyKey"):
            for type, body in (("per-tenant", {}), ("send-email", payload)):
                c1 = client.post("/jobs", json={"type": type, "payload": body, field: "a\x85"})
                assert 400 <= c1.status_code < 500, c1.text
                assert c1.json()["error"].startswith(f"{field} must be"), c1.text
        listed = client.get("/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [fine.json()["jobId"]]


def test_post_jobs_refuses_a_key_no_limit_of_the_type_uses(live: LiveServer) -> None:
    """`send-email` has no limits: a `rateKey` or `concurrencyKey` sent with it was
    accepted and did nothing. It is a 422 naming the field as sent; nothing is stored."""
    payload = {"to": "a@b.c", "subject": "s", "body": "b"}
    with live.client() as client:
        for field in ("rateKey", "concurrencyKey"):
            response = client.post(
                "/jobs", json={"type": "send-email", "payload": payload, field: "acme"}
            )
            assert response.status_code == 422, response.text
            message = response.json()["error"]
            assert message.startswith(f"{field} was given, but job type 'send-email' has no ")
            assert "rate_key" not in message and "concurrency_key" not in message
        assert client.get("/jobs").json()["jobs"] == []


def test_cli_refuses_an_empty_or_control_key_in_one_line_naming_the_option(
    sqlite_live: LiveServer, tmp_path: Path
) -> None:
    taskflare = str(Path(sys.executable).with_name("taskflare"))
    env = {**os.environ, "TASKFLARE_DATABASE_URL": sqlite_live.database_url}
    payload = '{"to": "a@b.c", "subject": "s", "body": "b"}'
    for option in ("--rate-key", "--concurrency-key"):
        for bad in ("", "a\x7fb"):
            args = [taskflare, "jobs", "enqueue", "send-email", payload, option, bad]
            result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
            assert result.returncode != 0 and result.stdout == ""
            (line,) = result.stderr.splitlines()
            assert line.startswith(f"error: {option} must be"), line
    # A key no stored limit of the type uses (send-email has none): one line, usage error.
    for option in ("--rate-key", "--concurrency-key"):
        args = [taskflare, "jobs", "enqueue", "send-email", payload, option, "acme"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 2 and result.stdout == "", result
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: {option} was given, but job type 'send-email'"), line
    # The same with --from-file: the option's fault, not its first line's (it said
    # 'jobs.jsonl:1: ...' and exited 1).
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(payload + "\n" + payload + "\n")
    for option in ("--rate-key", "--concurrency-key"):
        args = [taskflare, "jobs", "enqueue", "send-email", "--from-file", str(lines)]
        result = subprocess.run(
            [*args, option, "acme"], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 2 and result.stdout == "", result
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: {option} was given, but job type 'send-email'"), line
    assert tf_json("jobs", "list", url=sqlite_live.database_url)["jobs"] == []
