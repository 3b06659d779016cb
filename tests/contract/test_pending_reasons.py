"""The dashboard's "why isn't it running?" for pending jobs, on both backends."""

from __future__ import annotations

from typing import Any

from taskflare import App, RateLimit, Snooze
from taskflare.testing import drain


async def test_reasons_name_run_time_pause_workers_and_limits(app: App) -> None:
    app.job("call", queue="partner-api", rate_limit=RateLimit("1/m", key=lambda p: p["t"]))(
        lambda p: None
    )

    @app.job("poll", queue="partner-api")
    async def poll(payload: Any) -> None:
        raise Snooze(600)

    app.job("later", queue="other")(lambda p: None)
    await app.declare_queues()
    await app.enqueue("call", {"t": "acme"})
    held = await app.enqueue("call", {"t": "acme"})
    snoozed = await app.enqueue("poll", {})
    await drain(app)
    reasons = await app.read.pending_reasons(await held.refresh())
    assert any(
        "waiting on the rate limit 1/60s of job type 'call' for key 'acme'" in r for r in reasons
    ), reasons
    assert any("no live worker serves queue 'partner-api'" in r for r in reasons)
    dozing = await app.read.pending_reasons(await snoozed.refresh())
    assert any(r.startswith("snoozed by its handler until") for r in dozing), dozing
    later = await app.enqueue("later", {}, delay_seconds=3600)
    await app.get_queue("other").pause()
    words = await app.read.pending_reasons(later)
    assert words[0].startswith("scheduled for later") and "in 60 min" in words[0]
    assert "queue 'other' is paused" in words
    done = await app.read.pending_reasons(await (await app.enqueue("later", {})).refresh())
    assert "nothing holds it back" not in " ".join(done)  # no worker: said so instead
