"""A SQLite claim reads as many messages as it takes (and, with limits, the few more its
scan may need), never the whole backlog: what one claim costs must not grow with the
number of ready messages. Counted in SQLite's own virtual-machine steps (its progress
handler), not timed. A filter that no row passes, put in a WHERE with a LIMIT, is the
shape that breaks it: SQLite evaluates an uncorrelated subquery there once but still
reads every row of the index looking for `limit` rows that pass (a paused queue; a
claim with limits that no limit crowds)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from taskflare import App, Concurrency, RateLimit
from taskflare.backends.sqlite.sql import SQL
from taskflare.backends.store import flow_scan

STEP = 100  # VM instructions per progress-handler call
SMALL, LARGE = 50, 3000


def steps(path: Path, name: str, args: dict[str, Any], *, paused: bool = False) -> int:
    """The VM instructions statement `name` runs (in a transaction rolled back)."""
    conn = sqlite3.connect(path, isolation_level=None)
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    try:
        conn.execute("BEGIN IMMEDIATE")
        if paused:
            conn.execute("UPDATE queues SET paused = 1 WHERE name = :queue", args)
        conn.set_progress_handler(tick, STEP)
        conn.execute(SQL[name], {**args, "now": time.time()}).fetchall()
        conn.set_progress_handler(None, 0)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return count[0] * STEP


Declare = Callable[[App], None]


def unreached(app: App) -> None:
    app.job("call", rate_limit="1000000/s", max_concurrency=10_000)(lambda p: None)


def per_key(app: App) -> None:
    # Concurrency 2 per key is below a claim's limit: every claim checks the head's keys.
    app.job(
        "call",
        rate_limit=RateLimit("100/s", key=lambda p: p["tenant"]),
        concurrency=Concurrency(2, key=lambda p: p["tenant"]),
    )(lambda p: None)


def crowded(app: App) -> None:
    # Three keys, two at a time each: the head of 10 crowds them, and the claim ranks
    # the jobs of its scan per key.
    app.job("call", concurrency=Concurrency(2, key=lambda p: p["group"]))(lambda p: None)


def plain(app: App) -> None:
    app.job("call")(lambda p: None)


async def claim_steps(
    tmp_path: Path, declare: Declare, name: str, *, paused: bool = False
) -> tuple[int, int]:
    """The steps of statement `name` reading a claim of 10 with SMALL, then LARGE jobs
    ready."""
    path = tmp_path / "taskflare.db"
    app = App(f"sqlite:///{path}")
    try:
        declare(app)
        spec = app.registry.queue(app.registry.job_types["call"].queue)
        limits = spec.flow_limits()
        args = {
            "queue": spec.name,
            "limit": 10,
            "scan": flow_scan(10),
            "lease_id": "lease",
            "owner": "test",
            "visibility_timeout": 30.0,
            "types": orjson.dumps(["call"]).decode(),
            "limits": orjson.dumps(
                [[lim.family, lim.amount, lim.period, lim.burst] for lim in limits]
            ).decode(),
        }
        found = []
        ready = 0
        for total in (SMALL, LARGE):
            payloads = [{"tenant": f"t{i}", "group": i % 3} for i in range(ready, total)]
            await app.enqueue_many("call", payloads)
            ready = total
            await app.get_queue(spec.name).resume()  # the queue's row exists
            found.append(steps(path, name, args, paused=paused))
        return found[0], found[1]
    finally:
        await app.close()


FAST, LIMITED = "message_claim_limited_fast", "message_claim_limited"


@pytest.mark.parametrize(
    ("declare", "name"),
    [
        (plain, "message_claim_many"),
        (unreached, FAST),
        (unreached, LIMITED),
        (per_key, FAST),
        (per_key, LIMITED),
        (crowded, LIMITED),
    ],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
async def test_a_claim_reads_no_more_with_a_long_backlog(
    tmp_path: Path, declare: Declare, name: str, paused: bool
) -> None:
    small, large = await claim_steps(tmp_path, declare, name, paused=paused)
    # Reading the backlog would cost LARGE / SMALL = 60 times more; a claim that reads
    # only what it takes costs about the same (index depth grows by a level at most).
    assert large < 2 * small + 2_000, (small, large)
