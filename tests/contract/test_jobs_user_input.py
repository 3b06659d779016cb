"""What users hand the job API: every value is stored as given or refused with a typed
error naming it, identically on both backends (nothing silently dropped, nothing that
reaches the database as a raw driver error)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ConfigDict

from taskflare import (
    App,
    InvalidDelay,
    InvalidMessage,
    InvalidPayload,
    JobContext,
    JobStatus,
    MessageTooLarge,
)
from taskflare.testing import drain


class Email(BaseModel):
    to: str


class LenientEmail(BaseModel):
    model_config = ConfigDict(extra="ignore")
    to: str


class OpenEmail(BaseModel):
    model_config = ConfigDict(extra="allow")
    to: str


async def test_a_payload_field_the_model_lacks_is_refused_naming_it(app: App) -> None:
    @app.job("email")
    async def email(payload: Email) -> None:
        pass

    with pytest.raises(InvalidPayload, match=r"unknown field.*subject"):
        await app.enqueue("email", {"to": "a@b.c", "subject": "lost?"})
    assert (await app.list_jobs()).jobs == []


async def test_a_model_that_says_so_may_ignore_or_keep_extra_fields(app: App) -> None:
    seen: list[object] = []

    @app.job("lenient")
    async def lenient(payload: LenientEmail) -> None:
        seen.append(payload.model_dump())

    @app.job("open")
    async def open_(payload: OpenEmail) -> None:
        seen.append(payload.model_dump())

    await app.enqueue("lenient", {"to": "a", "subject": "dropped as the model asks"})
    await app.enqueue("open", {"to": "b", "subject": "kept"})
    await drain(app)
    assert {"to": "a"} in seen and {"to": "b", "subject": "kept"} in seen


async def test_a_job_payload_has_the_message_size_limit_of_its_queue(app: App) -> None:
    @app.job("big")
    async def big(payload: dict[str, str]) -> None:
        pass

    with pytest.raises(MessageTooLarge, match=r"300 0.. bytes.*131 072 bytes"):
        await app.enqueue("big", {"blob": "x" * 300_000})
    app.queue("roomy", max_message_bytes=1_000_000)
    app.job("roomy-job", queue="roomy")(lambda payload: None)
    await app.enqueue("roomy-job", {"blob": "x" * 300_000})  # this queue allows it


async def test_a_naive_run_at_is_refused_saying_how_to_fix_it(app: App) -> None:
    app.job("later")(lambda payload: None)
    with pytest.raises(InvalidDelay, match=r"has no time zone.*aware datetime"):
        await app.enqueue("later", None, run_at=datetime.now() + timedelta(hours=1))
    job = await app.enqueue("later", None, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert job.status is JobStatus.PENDING


async def test_a_run_at_past_a_year_names_the_date_and_the_limit(app: App) -> None:
    app.job("later")(lambda payload: None)
    when = datetime.now(UTC) + timedelta(days=800)
    with pytest.raises(InvalidDelay, match=rf"run_at {when.year}-.* days away; the limit"):
        await app.enqueue("later", None, run_at=when)


@pytest.mark.parametrize("field", ["idempotency_key", "correlation_id"])
async def test_a_nul_in_a_key_is_refused_with_a_typed_error_on_every_backend(
    app: App, field: str
) -> None:
    app.job("k")(lambda payload: None)
    with pytest.raises(InvalidMessage, match=f"{field} must not contain a NUL"):
        await app.enqueue("k", None, **{field: "a\x00b"})


async def test_a_nul_in_a_progress_note_is_refused_and_the_job_goes_on(app: App) -> None:
    outcome: list[str] = []

    @app.job("noted")
    async def noted(payload: None, ctx: JobContext) -> str:
        try:
            await ctx.progress(0.5, "half\x00way")
        except InvalidMessage as exc:
            outcome.append(str(exc))
        await ctx.progress(0.5, "halfway")
        return "done"

    job = await app.enqueue("noted", None)
    await drain(app)
    assert outcome == ["progress note must not contain a NUL character (\\x00)"]
    assert (await job.refresh()).result == "done"


async def test_an_error_holding_a_nul_is_stored_cleaned_on_every_backend(app: App) -> None:
    @app.job("nul", max_attempts=1)
    async def nul(payload: None) -> None:
        raise RuntimeError("a\x00b")

    @app.job("fine")
    async def fine(payload: None) -> str:
        return "ok"

    bad = await app.enqueue("nul", None)
    good = await app.enqueue("fine", None)
    await drain(app)
    failed = await bad.refresh()
    assert failed.status is JobStatus.FAILED
    assert failed.error == "RuntimeError: a\\x00b"
    assert failed.history[0].traceback is not None and "\x00" not in failed.history[0].traceback
    assert (await good.refresh()).status is JobStatus.COMPLETED


async def test_refresh_updates_the_job_in_place_and_returns_it(app: App) -> None:
    app.job("r")(lambda payload: 42)
    job = await app.enqueue("r", None)
    held = job
    await drain(app)
    assert job.status is JobStatus.PENDING  # a snapshot until refreshed
    refreshed = await job.refresh()
    assert refreshed is held
    assert (held.status, held.result, held.attempts) == (JobStatus.COMPLETED, 42, 1)
    assert [a.outcome for a in held.history] == ["completed"]
