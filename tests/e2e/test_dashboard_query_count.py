"""The dashboard's live parts cost a fixed number of statements per refresh, whatever the
number of queues or rows: a refresh re-reads the page, and every page reads through the
shared read model with grouped, bounded statements (none per queue or per row)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from taskflare import App
from taskflare.web import Tokens, create_dashboard

from .test_dashboard_mount import serving

PAGES = (
    "/",
    "/queues/q0",
    "/queues/q0/messages",
    "/jobs",
    "/jobs?status=pending",
    "/workers",
    "/batches",
    "/cron",
)


def statements(app: App) -> int:
    backend = app._backend
    assert backend is not None
    return int(backend.statements_run)  # type: ignore[attr-defined]


def fill(url: str, queues: range, jobs_per_queue: int) -> None:
    async def run() -> None:
        producer = App(url)
        for n in queues:
            q = producer.queue(f"q{n}")
            await q.send_batch([{"body": {"i": i}} for i in range(jobs_per_queue)])
            producer.job(f"type{n}", queue=f"q{n}")(lambda payload: None)
            await producer.enqueue_many(f"type{n}", [{"i": i} for i in range(jobs_per_queue)])
        await producer.close()

    asyncio.run(run())


@pytest.mark.timeout(300)
def test_a_refresh_costs_the_same_statements_for_3_or_15_queues(database_url: str) -> None:
    app = App(database_url)
    dashboard = create_dashboard(app, Tokens(write="w-token", read=None))
    # 20 jobs a queue: the jobs pages are full with 3 queues already (a page that is not
    # full also asks where its bounded window ended: one statement more, whatever the
    # number of queues).
    fill(database_url, range(3), 20)
    try:
        with serving(dashboard) as url, httpx.Client(base_url=url, timeout=30) as client:
            form = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            signed = client.post("/login", data={"csrf": csrf.group(1), "token": "w-token"})
            assert signed.status_code == 303

            def cost() -> dict[str, int]:
                spent = {}
                for page in PAGES:
                    client.get(page)  # warm: a first visit may create what it reads
                    before = statements(app)
                    answer = client.get(page)
                    assert answer.status_code == 200, (page, answer.text[:300])
                    spent[page] = statements(app) - before
                return spent

            few = cost()
            fill(database_url, range(3, 15), 40)
            many = cost()
    finally:
        app.close_sync()
    assert many == few, f"statements per page, 3 queues {few} vs 15 queues {many}"
