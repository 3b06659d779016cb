"""`GET /metrics` over a real server, after a real in-process worker ran and reported."""

from __future__ import annotations

import re

from helpers import running_worker, wait_until

from .server import LiveServer

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+|\+Inf)$")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, checking that every line is valid exposition format."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text: {line!r}"
        out[match[1] + (match[2] or "")] = float(match[3])
    return out


async def test_metrics_after_a_worker_ran(sqlite_live: LiveServer) -> None:
    async with sqlite_live.aclient() as client, sqlite_live.worker_app() as app:
        for _ in range(3):
            payload = {"to": "a", "subject": "b", "body": "c"}
            (
                await client.post("/jobs", json={"type": "send-email", "payload": payload})
            ).raise_for_status()
        (await client.post("/jobs", json={"type": "always-fails"})).raise_for_status()
        (await client.post("/jobs", json={"type": "flaky"})).raise_for_status()
        (await client.post("/queues/pull/messages", json={"body": 1})).raise_for_status()
        (
            await client.post("/queues/pull/messages", json={"body": 2, "delaySeconds": 600})
        ).raise_for_status()

        async def scraped() -> dict[str, float] | None:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            values = samples(response.text)
            done = values.get('taskflare_processed_total{queue="default"}') == 4
            return values if done and values.get("taskflare_workers") == 1 else None

        async with running_worker(app):
            # Workers report every 5 s: poll until the report with the finished jobs lands.
            values = await wait_until(scraped, timeout=20, interval=0.25, what="the report")
    assert values['taskflare_retried_total{queue="default"}'] == 1
    assert values['taskflare_failed_total{queue="default"}'] == 1
    assert values['taskflare_delivered_total{queue="default"}'] == 6
    count = values['taskflare_handler_duration_seconds_count{queue="default"}']
    assert count >= 1
    assert values['taskflare_handler_duration_seconds_bucket{queue="default",le="+Inf"}'] == count
    assert 'taskflare_handler_duration_seconds_sum{queue="default"}' in values
    assert values['taskflare_messages{queue="pull",state="ready"}'] == 2
    assert values['taskflare_jobs{queue="default",type="send-email",status="completed"}'] == 3
    assert values['taskflare_jobs{queue="default",type="always-fails",status="failed"}'] == 1
    assert values['taskflare_queue_paused{queue="pull"}'] == 0
    assert values['taskflare_queue_oldest_pending_age_seconds{queue="pull"}'] >= 0
