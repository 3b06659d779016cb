"""Two services on one database: a worker claims only the job types its app declares, so
it never spends the attempts of jobs another service runs."""

from __future__ import annotations

from typing import Any

from helpers import running_worker, wait_until
from taskflare import App, JobStatus


async def test_a_worker_never_claims_a_job_type_its_app_does_not_declare(
    database_url: str,
) -> None:
    billing, mailer = App(database_url), App(database_url)
    ran: list[str] = []

    @billing.job("charge")
    async def charge(payload: Any) -> str:
        ran.append("charge")
        return "charged"

    @mailer.job("send-email")
    async def send_email(payload: Any) -> str:
        ran.append("send-email")
        return "sent"

    try:
        email = await billing.enqueue("send-email", {"to": "a@b.c"}, strict=False)
        payment = await billing.enqueue("charge", {"amount": 10})
        async with running_worker(billing):
            assert await payment.wait(timeout=60) == "charged"
            # The email job sat on the same queue ("default") the whole time, untouched.
            untouched = await billing.get_job(email.id)
            assert untouched is not None
            assert (untouched.status, untouched.attempts) == (JobStatus.PENDING, 0)
        async with running_worker(mailer):
            assert await email.wait(timeout=60) == "sent"
        assert ran == ["charge", "send-email"]
    finally:
        await billing.close()
        await mailer.close()


async def test_a_pending_job_of_an_unknown_type_does_not_stop_the_known_ones(
    database_url: str,
) -> None:
    app = App(database_url)
    done: list[int] = []

    @app.job("known")
    async def known(payload: int) -> None:
        done.append(payload)

    try:
        for i in range(5):
            await app.enqueue("foreign", i, strict=False, priority=10)
        jobs = [await app.enqueue("known", i) for i in range(20)]
        async with running_worker(app):
            await wait_until(lambda: len(done) == 20, what="the 20 known jobs")
        assert sorted(done) == list(range(20))
        foreign = (await app.list_jobs(type="foreign")).jobs
        assert [j.status for j in foreign] == [JobStatus.PENDING] * 5
        assert all(j.attempts == 0 for j in foreign)
        for job in jobs:
            assert (await job.refresh()).status is JobStatus.COMPLETED
    finally:
        await app.close()
