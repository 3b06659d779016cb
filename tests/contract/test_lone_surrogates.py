"""A lone surrogate ("\\ud800") in a name or a key is refused by name, on every backend.

A Python str may hold one (json.loads of "\\ud800", bytes decoded with surrogateescape,
as the command line does with a non-UTF-8 argument), but no UTF-8 column can: it reached
the database and came back as `StorageRejected` ("SQLite refused a value: 'utf-8' codec
can't encode...") instead of the field's own error, and a job type or cron trigger
registered with one stopped every worker. Ids with one name no job: not found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskflare import (
    App,
    InvalidConfig,
    InvalidCronExpression,
    InvalidJobConfig,
    InvalidMessage,
    InvalidWebhookConfig,
    JobNotFound,
    RateLimit,
    UnknownQueue,
)

LONE = "key-\ud800"


def _noop(payload: Any) -> None:
    return None


def _app(database_url: str) -> App:
    app = App(database_url)
    app.job("work")(_noop)
    app.job("per-tenant", rate_limit=RateLimit("10/s", per_key=True))(_noop)
    return app


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("idempotency_key", lambda app: app.enqueue("work", {}, idempotency_key=LONE)),
        ("correlation_id", lambda app: app.enqueue("work", {}, correlation_id=LONE)),
        ("correlation_id", lambda app: app.enqueue_many("work", [{}], correlation_id=LONE)),
        ("rate_key", lambda app: app.enqueue("per-tenant", {}, rate_key=LONE)),
        ("type", lambda app: app.enqueue(LONE, {})),
    ],
)
async def test_a_key_with_a_lone_surrogate_is_refused_by_name(
    database_url: str, field: str, call: Callable[[App], Any]
) -> None:
    app = _app(database_url)
    try:
        with pytest.raises((InvalidMessage, LookupError)) as caught:
            await call(app)
        assert field in str(caught.value) or LONE in str(caught.value)
        if field in ("idempotency_key", "correlation_id"):
            assert "lone surrogate (U+D800)" in str(caught.value)
        assert (await app.read.jobs()).jobs == []
    finally:
        await app.close()


async def test_an_id_with_a_lone_surrogate_names_no_job(database_url: str) -> None:
    app = _app(database_url)
    try:
        assert await app.get_job(LONE) is None
        for call in (app.cancel, app.retry, app.wait_for_job):
            with pytest.raises(JobNotFound):
                await call(LONE)
    finally:
        await app.close()


async def test_a_queue_name_with_a_lone_surrogate_names_no_queue(database_url: str) -> None:
    """As an id does: `UnknownQueue` naming it, not the database refusing the lookup."""
    app = _app(database_url)
    try:
        await app.queue("emails").send({"n": 1})  # the database exists and has a queue
        for name in ("\udcff", "emails\ud800"):
            for lookup in (app.stored_queue, app.read.queue, app.read.queue_depths):
                with pytest.raises(UnknownQueue, match="no queue named"):
                    await lookup(name)
    finally:
        await app.close()


@pytest.mark.parametrize(
    ("error", "declare"),
    [
        (InvalidJobConfig, lambda app: app.job("send-\ud800")(_noop)),
        (InvalidJobConfig, lambda app: app.job("send\nemail")(_noop)),
        (InvalidCronExpression, lambda app: app.cron("0 0 * * *", name="nightly-\udcff")(_noop)),
        (InvalidCronExpression, lambda app: app.cron("0 0 * * *", name="night\tly")(_noop)),
        (
            InvalidWebhookConfig,
            lambda app: app.webhook("stripe-\ud800", secret="s", job_type="work"),
        ),
    ],
)
async def test_a_name_no_worker_could_store_is_refused_when_declared(
    sqlite_url: str, error: type[InvalidConfig], declare: Callable[[App], Any]
) -> None:
    app = _app(sqlite_url)
    try:
        with pytest.raises(error, match="name"):
            declare(app)
        # What was declared before still runs: a worker starts and drains the queue.
        await app.enqueue("work", {})
        from taskflare.testing import drain

        assert (await drain(app)).acked == 1
    finally:
        await app.close()
