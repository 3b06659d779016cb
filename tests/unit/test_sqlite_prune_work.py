"""A SQLite prune pass reads the finished jobs past retention (at most a chunk of them),
never the finished jobs still kept: every worker's pruner runs it every minute, with the
write lock held, so its cost must not grow with the jobs retained. Counted in SQLite's
own virtual-machine steps (its progress handler), not timed. The shape that breaks it:
one OR of the two cutoffs, which SQLite answered by scanning the whole table."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from taskflare import App
from taskflare.backends.sqlite.sql import SQL

STEP = 100  # VM instructions per progress-handler call
SMALL, LARGE = 50, 5000
DAY = 86_400.0


def add_finished(path: Path, prefix: str, first: int, last: int, *, age: float) -> None:
    """Jobs `first`..`last - 1`, finished `age` seconds ago: completed, failed and
    cancelled in turn."""
    if first >= last:
        return
    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.execute(
            """WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n
                                       WHERE i < :last - 1)
            INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                created_at, available_at, type, max_attempts, finished_at)
            SELECT :prefix || i, 'jobs', CASE i % 3 WHEN 0 THEN 'completed'
                                                   WHEN 1 THEN 'failed' ELSE 'cancelled' END,
                X'7b7d', 'json', 0, 1, :at, :at, 'call', 3, :at FROM n""",
            {"prefix": prefix, "first": first, "last": last, "at": now - age},
        )
    conn.close()


def prune_steps(path: Path, *, completed_age: float, failed_age: float) -> tuple[int, int]:
    """The VM instructions of one `job_prune` chunk of 10 and the rows it deleted (in a
    transaction rolled back)."""
    conn = sqlite3.connect(path, isolation_level=None)
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    now = time.time()
    args = {
        "completed_before": now - completed_age,
        "failed_before": now - failed_age,
        "limit": 10,
    }
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_progress_handler(tick, STEP)
        deleted = len(conn.execute(SQL["job_prune"], args).fetchall())
        conn.set_progress_handler(None, 0)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return count[0] * STEP, deleted


@pytest.mark.parametrize("past", [0, 30], ids=["nothing-past-retention", "some-past-retention"])
@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
async def test_a_prune_reads_no_more_with_many_finished_jobs_kept(
    tmp_path: Path, past: int, analyzed: bool
) -> None:
    path = tmp_path / "taskflare.db"
    app = App(f"sqlite:///{path}")
    try:
        app.job("call")(lambda p: None)
        await app.enqueue("call", 0)  # the schema exists
    finally:
        await app.close()
    found = []
    kept = 0
    for total in (SMALL, LARGE):
        add_finished(path, "kept-", kept, total, age=DAY)  # within both cutoffs
        # Past both cutoffs, and stored after the kept ones (a scan meets them last).
        add_finished(path, f"past-{total}-", 0, past, age=40 * DAY)
        kept = total
        if analyzed:
            with sqlite3.connect(path) as conn:
                conn.execute("ANALYZE")
            conn.close()
        steps, deleted = prune_steps(path, completed_age=7 * DAY, failed_age=30 * DAY)
        assert deleted == (10 if past else 0)
        found.append(steps)
    small, large = found
    # Reading the kept jobs would cost about LARGE / SMALL = 100 times more; a prune
    # that reads only what is past its cutoffs costs about the same (index depth grows
    # by a level at most).
    assert large < 2 * small + 2_000, (small, large)
