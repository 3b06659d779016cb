"""One SQLite file shared by a producer process and two worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from .conftest import Harness
from .procs import delivery_counts, wait_for

TOTAL = 20_000


def test_one_producer_two_workers_20k_messages_each_acked_exactly_once(harness: Harness) -> None:
    producer = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(harness.folder)!r})
        from itapp import work
        for start in range(0, {TOTAL}, 100):
            work.send_batch_sync([{{"body": {{"n": n}}}} for n in range(start, start + 100)])
        """
    )
    env = {"TF_BATCH": "50"}
    workers = [harness.start_worker(**env), harness.start_worker(**env)]
    result = subprocess.run(
        [sys.executable, "-c", producer],
        env={**os.environ, "TF_URL": harness.url, "TF_LOG_DIR": str(harness.folder / "logs")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr

    wait_for(lambda: sum(delivery_counts(harness.folder).values()) >= TOTAL, 240, "all deliveries")
    wait_for(lambda: not harness.counts("work"), 60, "the queue to empty")
    counts = delivery_counts(harness.folder)
    assert len(counts) == TOTAL, "every message was delivered"
    assert set(counts.values()) == {1}, "no message was delivered twice"
    for worker in workers:
        assert worker.proc.poll() is None, worker.stderr
        assert "locked" not in worker.stderr.lower(), worker.stderr
    assert "locked" not in result.stderr.lower()
