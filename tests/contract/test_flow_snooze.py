"""Snooze: a handler puts its job back to pending for a while without spending an attempt;
the attempt history shows it as `snoozed`."""

from __future__ import annotations

from typing import Any

import pytest

from job_helpers import drain_until, job_of
from taskflare import App, JobContext, JobStatus, Snooze
from taskflare.testing import drain


async def test_raise_snooze_puts_the_job_back_without_spending_an_attempt(app: App) -> None:
    @app.job("poll-export", max_attempts=1)
    async def poll(payload: Any) -> None:
        raise Snooze(60)

    job = await app.enqueue("poll-export", {"export": 1})
    await drain(app)
    snoozed = await job_of(app, job.id)
    assert snoozed.status is JobStatus.PENDING
    assert snoozed.attempts == 0  # max_attempts=1, yet not failed: no attempt was spent
    assert [a.outcome for a in snoozed.history] == ["snoozed"]
    assert snoozed.history[0].attempt == 1
    assert snoozed.error is None
    last = snoozed.history[-1]
    assert last.finished_at is not None
    assert (snoozed.run_at - last.finished_at).total_seconds() == pytest.approx(60, abs=1)


async def test_return_ctx_snooze_runs_again_later_then_completes(app: App) -> None:
    calls: list[int] = []

    @app.job("wait-ready", max_attempts=1)
    async def wait_ready(payload: Any, ctx: JobContext) -> Any:
        calls.append(ctx.attempt)
        if len(calls) < 3:
            return ctx.snooze(0.05)
        return {"done": True}

    job = await app.enqueue("wait-ready")

    async def finished() -> bool:
        return (await job_of(app, job.id)).status is JobStatus.COMPLETED

    await drain_until(app, finished, what="job to complete after two snoozes")
    done = await job_of(app, job.id)
    assert done.result == {"done": True}
    assert calls == [1, 1, 1]  # every run is attempt 1: snoozes spend nothing
    assert done.attempts == 1
    assert [a.outcome for a in done.history] == ["snoozed", "snoozed", "completed"]


async def test_snooze_refuses_a_bad_delay() -> None:
    with pytest.raises(ValueError, match="Snooze seconds"):
        Snooze(-1)
    with pytest.raises(TypeError, match="Snooze seconds"):
        Snooze("soon")  # type: ignore[arg-type]
