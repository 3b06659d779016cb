"""An idempotency key guards one job at a time, manual retries included.

A failed or cancelled job frees its key (decisions.md), so a new job may take it. Retrying
the old job must not bring back a second job under the same key: it is refused while
another job holds the key, and a retried job holds its key again.
"""

from __future__ import annotations

from typing import Any

import pytest

from taskflare import App, InvalidJobState, JobStatus, PermanentError
from taskflare.testing import drain

from .conftest import serve


def declare(app: App, fail: list[bool]) -> None:
    @app.job("charge", max_attempts=1)
    async def charge(payload: Any) -> str:
        if fail[0]:
            raise PermanentError("gateway down")
        return f"charged {payload}"


async def test_retrying_a_job_whose_key_a_new_job_took_is_refused(app: App) -> None:
    fail = [True]
    declare(app, fail)
    first = await app.enqueue("charge", 1, idempotency_key="order-42")
    await drain(app)
    second = await app.enqueue("charge", 2, idempotency_key="order-42")
    assert second.id != first.id and not second.duplicate  # the failed job freed the key

    with pytest.raises(InvalidJobState, match=second.id):
        await app.retry(first.id)
    still = await app.get_job(first.id)
    assert still is not None and still.status is JobStatus.FAILED

    fail[0] = False
    await drain(app)  # the new job completes and keeps the key
    with pytest.raises(InvalidJobState, match=second.id):
        await app.retry(first.id)
    again = await app.enqueue("charge", 3, idempotency_key="order-42")
    assert again.id == second.id and again.duplicate


async def test_a_retried_job_holds_its_key_again(app: App) -> None:
    fail = [True]
    declare(app, fail)
    first = await app.enqueue("charge", 1, idempotency_key="order-7")
    await drain(app)
    # Another job took the key and failed too: the key is free again.
    second = await app.enqueue("charge", 2, idempotency_key="order-7")
    await drain(app)
    assert (await app.get_job(second.id)).status is JobStatus.FAILED  # type: ignore[union-attr]

    retried = await app.retry(first.id)
    assert retried.status is JobStatus.PENDING
    duplicate = await app.enqueue("charge", 3, idempotency_key="order-7")
    assert duplicate.id == first.id and duplicate.duplicate
    # ...and the other failed job cannot come back beside it.
    with pytest.raises(InvalidJobState, match=first.id):
        await app.retry(second.id)
    fail[0] = False
    await drain(app)
    done = await app.get_job(first.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == "charged 1"


async def test_a_job_without_a_key_or_with_its_own_key_retries_as_before(app: App) -> None:
    fail = [True]
    declare(app, fail)
    plain = await app.enqueue("charge", 1)
    keyed = await app.enqueue("charge", 2, idempotency_key="order-9")
    await drain(app)
    assert (await app.retry(plain.id)).status is JobStatus.PENDING
    assert (await app.retry(keyed.id)).status is JobStatus.PENDING
    duplicate = await app.enqueue("charge", 5, idempotency_key="order-9")
    assert duplicate.id == keyed.id and duplicate.duplicate


def test_http_retry_of_a_job_whose_key_was_taken_is_409(database_url: str) -> None:
    fail = [True]
    worker = App(database_url)
    declare(worker, fail)

    async def setup() -> tuple[str, str]:
        first = await worker.enqueue("charge", 1, idempotency_key="order-1")
        await drain(worker)
        second = await worker.enqueue("charge", 2, idempotency_key="order-1")
        return first.id, second.id

    first_id, second_id = worker.run_sync(setup())
    served = App(database_url)
    declare(served, fail)
    with serve(served) as client:
        answer = client.post(f"/jobs/{first_id}/retry")
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "wrong_state"
        assert second_id in answer.json()["error"]
        assert client.get(f"/jobs/{first_id}").json()["job"]["status"] == "failed"
    worker.close_sync()
