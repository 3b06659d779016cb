"""SIGTERM/SIGINT: stop claiming, finish running batches within the grace period, exit 0."""

from __future__ import annotations

import signal

import pytest

from .conftest import Harness
from .procs import delivery_counts, wait_for


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_finishes_running_batch_and_returns_unstarted_ones(
    harness: Harness, sig: signal.Signals
) -> None:
    running = harness.work.send_sync({"sleep": 1.5})
    waiting = harness.work.send_sync({"n": 2})
    worker = harness.start_worker("--concurrency", "1", TF_BATCH="1")
    wait_for(lambda: delivery_counts(harness.folder)[running] == 1, 20, "the slow batch to start")

    def prefetched() -> bool:
        record = harness.get(waiting)
        return record is not None and record.state == "leased"

    wait_for(prefetched, 20, "the second batch to be claimed while it waits for a slot")
    worker.signal(sig)
    assert worker.wait(20) == 0, worker.stderr

    assert harness.get(running) is None, "the running batch finished and was acked"
    returned = harness.get(waiting)
    assert returned is not None
    assert returned.state == "ready"
    assert returned.attempts == 0, "handing back an unstarted message does not count an attempt"
    assert delivery_counts(harness.folder)[waiting] == 0


def test_batch_still_running_after_the_grace_period_is_cancelled_and_retried(
    harness: Harness,
) -> None:
    stuck = harness.work.send_sync({"sleep": 120})
    worker = harness.start_worker("--shutdown-grace", "0.5")
    wait_for(lambda: delivery_counts(harness.folder)[stuck] == 1, 20, "the batch to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.stderr
    record = harness.get(stuck)
    assert record is not None
    assert (record.state, record.attempts) == ("ready", 1)
    assert "shut down" in (record.last_error or "")
