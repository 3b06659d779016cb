"""`GET /metrics` over a real server, after a real in-process worker ran and reported."""

from __future__ import annotations

import re

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from helpers import running_worker, wait_until

from .metrics_before import render_metrics as render_before
from .server import LiveServer

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+|\+Inf)$")


def samples(text: str) -> dict[str, float]:
    """`name{labels, sorted}` -> value, checking that every line is valid exposition."""
    for line in text.splitlines():
        if not line.startswith("#"):
            assert SAMPLE.match(line), f"not Prometheus text: {line!r}"
    return parsed(text)


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
            assert response.headers["content-type"].startswith("text/plain; version=")
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
    assert values['taskflare_handler_duration_seconds_bucket{le="+Inf",queue="default"}'] == count
    assert 'taskflare_handler_duration_seconds_sum{queue="default"}' in values
    assert values['taskflare_messages{queue="pull",state="ready"}'] == 2
    assert values['taskflare_jobs{queue="default",status="completed",type="send-email"}'] == 3
    assert values['taskflare_jobs{queue="default",status="failed",type="always-fails"}'] == 1
    assert values['taskflare_queue_paused{queue="pull"}'] == 0
    assert values['taskflare_queue_oldest_pending_age_seconds{queue="pull"}'] >= 0


def parsed(text: str, openmetrics: bool = False) -> dict[str, float]:
    """Every sample of an exposition, parsed by `prometheus-client`'s own parsers:
    `name{label="value",...}` (labels sorted; no braces without labels) -> value."""
    parse = om_families if openmetrics else text_string_to_metric_families
    out = {}
    for family in parse(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


async def test_metrics_have_the_same_numbers_as_before_and_speak_openmetrics(
    live: LiveServer,
) -> None:
    async with live.aclient() as client, live.worker_app() as app:
        for n in range(3):
            payload = {"to": f"{n}", "subject": "b", "body": "c"}
            (
                await client.post("/jobs", json={"type": "send-email", "payload": payload})
            ).raise_for_status()
        (await client.post("/jobs", json={"type": "flaky"})).raise_for_status()
        (await client.post("/queues/pull/messages", json={"body": 1})).raise_for_status()

        async def reported() -> bool:
            counters = await app.read.worker_counters()
            return counters.totals.get("acked", {}).get("default") == 4 and counters.alive == 1

        async with running_worker(app):
            await wait_until(reported, timeout=20, interval=0.25, what="the report")
        before = parsed(await render_before(app))
        text = await client.get("/metrics")
        om = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        ages_after = await render_before(app)
    now = parsed(text.text)
    assert text.headers["content-type"].startswith("text/plain; version=")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    in_om = parsed(om.text, openmetrics=True)
    ages = [k for k in before if k.startswith("taskflare_queue_oldest_pending_age_seconds")]
    for key, value in before.items():
        if key in ages:  # time passes between the two reads: it only grows
            assert before[key] <= now[key] <= parsed(ages_after)[key], key
            continue
        if key.startswith("taskflare_handler_duration_seconds_created"):
            continue
        assert now[key] == value, key
    # OpenMetrics: the same series (counters keep `_total`), plus nothing else but `_created`.
    assert {k for k in in_om if not k.startswith(tuple(a.split("{")[0] for a in ages))} >= {
        k for k in before if k not in ages
    }
    assert in_om['taskflare_processed_total{queue="default"}'] == 4
    assert in_om['taskflare_jobs{queue="default",status="completed",type="send-email"}'] == 3
    unit = [line for line in om.text.splitlines() if line.startswith("# UNIT")]
    assert "# UNIT taskflare_handler_duration_seconds seconds" in unit
