"""The dashboard's "apply to all that match" count is bounded: it looks into the newest
entries of the index that drives the filter, and says whether that was every job the
filter could match (else the page shows "at least")."""

from __future__ import annotations

from typing import Any

from taskflare import App
from taskflare.readmodel import JobQuery


def _noop(payload: Any) -> None:
    return None


async def test_a_count_past_its_window_is_marked_incomplete(app: App) -> None:
    app.queue("billing")
    app.queue("emails")
    app.job("charge", queue="billing")(_noop)
    app.job("mail", queue="emails")(_noop)
    await app.enqueue_many("charge", [{"n": n} for n in range(6)])
    await app.enqueue_many("mail", [{"n": n} for n in range(6)])
    read = app.read

    async def counted(limit: int, **filters: Any) -> tuple[int, bool]:
        query = JobQuery(**filters)
        return (
            await read.job_search_count(query, limit),
            await read.job_search_count_complete(query, limit),
        )

    # A queue none of the newest 5 jobs is on: none found there, and more lie beyond.
    assert await counted(4, queue="billing") == (0, False)
    assert await counted(20, queue="billing") == (6, True)
    assert await counted(4, type="charge") == (5, False)  # 5 > 4: "more than 4"
    assert await counted(20, type="charge", queue="billing") == (6, True)
    assert await counted(4, status="pending", type="mail") == (5, False)
    assert await counted(20, status="pending", queue="nowhere") == (0, True)
