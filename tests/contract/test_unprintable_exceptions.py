"""An exception whose own `__str__` raises is still recorded as the code's failure.

User code may raise an exception class with a broken `__str__` (a library's error that
formats lazily from a missing attribute, say). The worker formatted the error with
`str(exc)`, which raised in turn: the job stayed `processing` with no history, the
runner's task died ("Task exception was never retrieved"), and `drain` raised the
`__str__`'s error. The error text now reads `<exception str() failed>`, the traceback
module's words for the same case.
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers import running_worker
from job_helpers import job_of, wait_for_status
from taskflare import App, InvalidMessage, JobStatus, RateLimit
from taskflare.testing import drain


class Unprintable(Exception):
    """An exception whose message cannot be made."""

    def __str__(self) -> str:
        raise ValueError("this __str__ is broken")


def _register(app: App) -> None:
    @app.job("async-broken", max_attempts=1)
    async def async_broken(payload: Any) -> None:
        raise Unprintable()

    @app.job("sync-broken", max_attempts=1)
    def sync_broken(payload: Any) -> None:
        raise Unprintable()


async def test_drain_fails_a_job_whose_exception_cannot_be_printed(app: App) -> None:
    _register(app)
    jobs = [await app.enqueue(name) for name in ("async-broken", "sync-broken")]
    await drain(app)
    for job in jobs:
        stored = await job_of(app, job.id)
        assert stored.status is JobStatus.FAILED, job.type
        assert stored.error == "Unprintable: <exception str() failed>"
        [attempt] = stored.history
        assert attempt.outcome == "failed"
        assert attempt.traceback is not None and "raise Unprintable()" in attempt.traceback


async def test_a_worker_fails_a_job_whose_exception_cannot_be_printed(app: App) -> None:
    _register(app)
    jobs = [await app.enqueue(name) for name in ("async-broken", "sync-broken")]
    async with running_worker(app):
        for job in jobs:
            stored = await wait_for_status(app, job.id, JobStatus.FAILED)
            assert stored.error == "Unprintable: <exception str() failed>"
            assert [a.outcome for a in stored.history] == ["failed"]


async def test_a_key_function_raising_an_unprintable_exception_is_refused_by_name(
    app: App,
) -> None:
    def broken_key(payload: Any) -> str:
        raise Unprintable()

    app.job("limited", rate_limit=RateLimit("10/s", key=broken_key))(lambda payload: None)
    with pytest.raises(InvalidMessage, match=r"key function failed .*Unprintable: <exception"):
        await app.enqueue("limited", {"tenant": "a"})
