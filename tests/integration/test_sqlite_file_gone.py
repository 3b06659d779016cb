"""A SQLite file deleted, replaced or moved away under a running process: every read and
write through its open connection raises `BackendUnavailable` (none goes to the orphaned
file, where no other process would ever see it), and a worker logs it, claims nothing,
and carries on once the file is back at its path.

SQLite only: an open SQLite connection keeps using a file that is no longer at its path;
a PostgreSQL connection fails when its database goes away (`test_postgres_outage.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.conftest import OWNER, claim_one, enqueue, message
from taskflare import App, BackendUnavailable, Queue
from taskflare.backends import Backend
from taskflare.backends.base import (
    ClaimedMessage,
    ClaimParams,
    CronTick,
    CronTickRecordParams,
    JobFilter,
    LeaseExtendParams,
    LeaseRef,
    MessageListParams,
    PruneParams,
    QueueCountsParams,
    ReadyInfoParams,
    Settlement,
    StatsHistoryParams,
    WorkerListParams,
)
from taskflare.ids import uuid7

from .conftest import Harness
from .procs import delivery_counts, wait_for


def make_go_away(db: Path, how: str) -> None:
    """`rm taskflare.db` (its -wal and -shm files stay), or `mv other.db taskflare.db`
    with `other.db` a taskflare database of its own."""
    if how == "deleted":
        db.unlink()
        return
    other = App(f"sqlite:///{db.with_name('other.db')}")
    other.queue("work").send_sync({"from": "the other file"})
    other.close_sync()
    os.replace(db.with_name("other.db"), db)


@dataclass
class Live:
    """What the operations act on: the app, its queue and backend, a message it holds."""

    app: App
    work: Queue
    backend: Backend
    held: ClaimedMessage


Operation = Callable[[Live], Awaitable[object]]

# Every kind of call a process makes through its connection: producers, a worker's claim,
# ack, heartbeat, cron, pruner and metrics reads, the dashboard's and CLI's reads.
OPERATIONS: dict[str, Operation] = {
    "enqueue": lambda x: x.app.enqueue("note", {"n": 2}),
    "send": lambda x: x.work.send({"n": 2}),
    "send_batch": lambda x: x.work.send_batch([{"body": {"n": 2}}]),
    "claim": lambda x: x.backend.message_claim_many(
        ClaimParams(queue="work", limit=10, lease_id=uuid7(), owner=OWNER, visibility_timeout=30)
    ),
    "ready info (pull consumers, idle workers)": lambda x: x.backend.queue_ready_info(
        ReadyInfoParams("work", 10)
    ),
    "ack": lambda x: x.backend.message_settle_many(
        Settlement(acks=[LeaseRef(x.held.id, x.held.lease_id)])
    ),
    "heartbeat": lambda x: x.backend.lease_extend_many(LeaseExtendParams([x.held.lease_id], 30)),
    "cron tick": lambda x: x.backend.cron_tick_record(
        CronTickRecordParams(CronTick("nightly", time.time() // 60 * 60, "skipped"))
    ),
    "pruner": lambda x: x.backend.job_prune(PruneParams(time.time(), time.time())),
    "stats": lambda x: x.backend.queue_counts(QueueCountsParams()),
    "stats history": lambda x: x.backend.stats_history(StatsHistoryParams(0.0)),
    "dashboard job list": lambda x: x.backend.job_list(JobFilter()),
    "message list": lambda x: x.backend.message_list(MessageListParams("work")),
    "worker list": lambda x: x.backend.worker_list(WorkerListParams(0.0)),
    "ping (GET /health)": lambda x: x.backend.ping(),
}


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_every_read_and_write_raises_once_the_file_is_deleted_or_replaced(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "taskflare.db"
    app = App(f"sqlite:///{db}")
    work = app.queue("work")

    @app.job("note")
    async def note(payload: object) -> object:
        return payload

    try:
        await app.enqueue("note", {"n": 1})
        backend = await app.backend()
        await enqueue(backend, message("work"))
        live = Live(app, work, backend, await claim_one(backend, "work"))

        make_go_away(db, how)

        for name, operation in OPERATIONS.items():
            try:
                await operation(live)
            except BackendUnavailable as exc:
                assert f"the database file was {how}" in str(exc), name
            else:
                pytest.fail(f"{name}: went through to the orphaned file")
    finally:
        await app.close()
    if how == "deleted":
        assert not db.exists(), "nothing was created in its place"


async def test_the_process_carries_on_when_its_file_is_moved_back(tmp_path: Path) -> None:
    db = tmp_path / "taskflare.db"
    app = App(f"sqlite:///{db}")
    work = app.queue("work")
    try:
        first = await work.send({"n": 1})
        db.rename(db.with_name("away.db"))
        with pytest.raises(BackendUnavailable, match="was deleted"):
            await work.send({"n": 2})
        assert not db.exists(), "nothing was created in its place"
        db.with_name("away.db").rename(db)
        second = await work.send({"n": 3})
        backend = await app.backend()
        listed = {m.id for m in await backend.message_list(MessageListParams("work"))}
        assert listed == {first, second}
    finally:
        await app.close()


def delivered(harness: Harness) -> int:
    return sum(delivery_counts(harness.folder).values())


@pytest.mark.parametrize("how", ["deleted", "moved away and back"])
def test_a_worker_claims_nothing_while_its_file_is_away(harness: Harness, how: str) -> None:
    db = Path(harness.url.removeprefix("sqlite:///"))
    release = harness.folder / "release"
    harness.work.send_sync({"until": str(release)})
    harness.work.send_batch_sync([{"body": {"n": n}} for n in range(5)])
    worker = harness.start_worker("--concurrency", "1", TF_BATCH="1")
    # One message runs (until released); each of the two fetchers holds one more, claimed
    # and waiting for the slot. Those three may run; nothing else may be claimed.
    wait_for(lambda: harness.counts("work").get("leased") == 3, 60, "three claimed")
    harness.app.close_sync()  # only the worker has the file open

    if how == "deleted":
        db.unlink()
    else:
        db.rename(db.with_name("away.db"))
    release.touch()  # the first message's handler returns: its ack cannot be written

    wait_for(
        lambda: "the database file was deleted while this process had it open" in worker.stderr,
        60,
        "the worker to log that its file is gone",
    )
    wait_for(lambda: delivered(harness) == 3, 60, "the three claimed before to run")
    tries = worker.stderr.count("cannot claim")
    wait_for(
        lambda: (
            worker.stderr.count("cannot claim") >= tries + 2 and "could not record" in worker.stderr
        ),
        60,
        "the worker to retry its claims and its acks",
    )
    assert worker.proc.poll() is None, worker.stderr
    assert delivered(harness) == 3, "nothing was claimed from the orphaned file"

    if how == "deleted":
        return
    db.with_name("away.db").rename(db)
    wait_for(lambda: delivered(harness) == 6, 60, "the other messages, once it is back")
    wait_for(lambda: not harness.counts("work"), 60, "every message acked")
    assert set(delivery_counts(harness.folder).values()) == {1}, "each delivered once"
    assert "the database file is back at its path" in worker.stderr
    assert "database reachable again" in worker.stderr
    assert "Traceback" not in worker.stderr, worker.stderr
