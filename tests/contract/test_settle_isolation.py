"""An outcome the database refuses is isolated: the others written with it are stored,
the refused one is recorded failed with a cleaned error (and still dead-lettered), and
the buffer drains, so shutdown is never held. Both backends refuse a lone surrogate."""

from __future__ import annotations

from helpers import get
from taskflare import App, JobStatus
from taskflare.backends.base import (
    AttemptRecord,
    CancelOutcome,
    ClaimParams,
    CompleteOutcome,
    FailOutcome,
    LeaseRef,
    Settlement,
)
from taskflare.ids import uuid7
from taskflare.worker.settle import OutcomeBuffer

BAD = "refused \ud800 value"  # a lone surrogate: no UTF-8 database can store it


async def claim(app: App, queue: str, n: int) -> list[tuple[str, str]]:
    backend = await app.backend()
    claimed = await backend.message_claim_many(
        ClaimParams(queue=queue, limit=n, lease_id=uuid7(), owner="w", visibility_timeout=30)
    )
    assert len(claimed.messages) == n
    return [(m.id, m.lease_id) for m in claimed.messages]


async def test_a_refused_job_outcome_does_not_hold_back_the_others(app: App) -> None:
    app.job("k")(lambda payload: None)
    jobs = [await app.enqueue("k", n) for n in range(3)]
    (a, la), (b, lb), (c, lc) = await claim(app, "default", 3)
    backend = await app.backend()
    buffer = OutcomeBuffer(backend)
    now = 1.0

    def attempt(job_id: str, outcome: str, error: str | None = None) -> AttemptRecord:
        return AttemptRecord(job_id, 1, "w", now, now, outcome, error)

    result = await buffer.settle(
        Settlement(
            completes=[CompleteOutcome(a, la, b'"ok"'), CompleteOutcome(c, lc, b'"ok"')],
            cancels=[CancelOutcome(b, lb, BAD)],
            attempts=[
                attempt(a, "completed"),
                attempt(b, "cancelled", BAD),
                attempt(c, "completed"),
            ],
        )
    )
    await buffer.drain(timeout=5)
    assert result.states == {a: "completed", b: "failed", c: "completed"}
    by_id = {j.id: await app.get_job(j.id) for j in jobs}
    assert by_id[a] is not None and by_id[a].status is JobStatus.COMPLETED
    assert by_id[c] is not None and by_id[c].status is JobStatus.COMPLETED
    refused = by_id[b]
    assert refused is not None and refused.status is JobStatus.FAILED
    assert refused.error is not None and "the database refused this outcome" in refused.error
    assert "\ud800" not in refused.error
    assert [h.outcome for h in refused.history] == ["failed"]


async def test_a_refused_message_failure_still_reaches_its_dead_letter_queue(app: App) -> None:
    q = app.queue("q", max_retries=0, dead_letter_queue="q-dlq")
    first = await q.send({"n": 1})
    second = await q.send({"n": 2})
    (x, lx), (y, ly) = await claim(app, "q", 2)
    assert {x, y} == {first, second}
    buffer = OutcomeBuffer(await app.backend())
    result = await buffer.settle(
        Settlement(
            acks=[LeaseRef(y, ly)],
            fails=[FailOutcome(x, lx, BAD, "q-dlq", uuid7())],
        )
    )
    await buffer.drain(timeout=5)
    assert result.states[x] == "failed"
    assert await get(app, y) is None, "the ack written beside the refused outcome was stored"
    failed = await get(app, x)
    assert failed is not None and failed.state == "failed"
    assert "the database refused this outcome" in (failed.last_error or "")
    dead = await app.read.messages("q-dlq")
    assert [m["originId"] for m in dead] == [x]
