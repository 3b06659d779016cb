"""Four worker processes share one PostgreSQL queue; one is killed with SIGKILL mid-run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from taskflare.worker import DEFAULT_CONCURRENCY

from .conftest import Harness
from .procs import delivery_counts, wait_for

TOTAL = 20_000


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_four_workers_20k_messages_one_killed_and_restarted(
    tmp_path: Path, database_url: str
) -> None:
    harness = Harness(tmp_path, database_url)
    try:
        for start in range(0, TOTAL, 100):
            harness.work.send_batch_sync(
                [{"body": {"n": n, "sleep": 0.002}} for n in range(start, start + 100)]
            )
        env = {"TF_BATCH": "50", "TF_VT": "3"}
        workers = [harness.start_worker(**env) for _ in range(4)]

        def delivered() -> int:
            return sum(delivery_counts(tmp_path).values())

        wait_for(lambda: delivered() >= TOTAL // 4, 120, "a quarter of the deliveries")
        victim = workers[0]
        victim.signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        workers.append(harness.start_worker(**env))

        wait_for(lambda: len(delivery_counts(tmp_path)) >= TOTAL, 120, "every message")
        wait_for(lambda: not harness.counts("work"), 60, "the queue to empty (all acked)")

        counts = delivery_counts(tmp_path)
        assert len(counts) == TOTAL, "no message lost"
        redeliveries = sum(c - 1 for c in counts.values())
        print(f"\n{TOTAL} messages, 4 workers, one SIGKILLed: {redeliveries} redeliveries")
        # A worker holds at most `concurrency` running batches plus one waiting batch per
        # fetcher (WorkerConfig.fetchers_per_queue, default 2).
        held = DEFAULT_CONCURRENCY * 50 + 2 * 50
        assert redeliveries <= held, "only what the killed worker held is redelivered"
        for worker in workers[1:]:
            assert worker.proc.poll() is None, worker.stderr
    finally:
        harness.close()
