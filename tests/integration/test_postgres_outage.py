"""PostgreSQL goes away under running workers: they log it, reconnect, and finish the work.

Runs against a private PostgreSQL cluster (see `pg_server`), so stopping the server
cannot disturb the rest of the suite running in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Harness
from .pg_server import PrivatePostgres
from .procs import WorkerProcess, delivery_counts, wait_for

TOTAL = 3_000


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def delivered(folder: Path) -> int:
    return sum(delivery_counts(folder).values())


def logged_outage(worker: WorkerProcess) -> bool:
    text = worker.stderr
    return "cannot claim" in text or "could not record" in text


def test_workers_survive_a_database_stop_and_a_restart(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    harness = Harness(tmp_path, f"{private_pg.url}?schema=tf_outage")
    try:
        for start in range(0, TOTAL, 100):
            harness.work.send_batch_sync(
                [{"body": {"n": n, "sleep": 0.005}} for n in range(start, start + 100)]
            )
        harness.app.close_sync()  # the test's own connections must not outlive the server
        env = {"TF_BATCH": "10", "TF_VT": "20"}
        workers = [harness.start_worker("--concurrency", "2", **env) for _ in range(2)]
        pids = [w.proc.pid for w in workers]

        wait_for(lambda: delivered(tmp_path) >= TOTAL // 5, 60, "a fifth of the deliveries")
        private_pg.stop()
        wait_for(lambda: all(logged_outage(w) for w in workers), 60, "both workers to log it")
        for w in workers:
            assert w.proc.poll() is None, f"worker died during the outage:\n{w.stderr}"
        private_pg.start()

        wait_for(lambda: delivered(tmp_path) >= TOTAL * 3 // 5, 60, "work to resume")
        private_pg.restart()

        wait_for(lambda: delivered(tmp_path) >= TOTAL, 60, "every delivery")
        wait_for(lambda: not harness.counts("work"), 60, "the queue to empty (all acked)")

        counts = delivery_counts(tmp_path)
        assert len(counts) == TOTAL, "every message was handled"
        twice = {m: c for m, c in counts.items() if c > 1}
        assert not twice, f"{len(twice)} messages were handled more than once"
        for w, pid in zip(workers, pids, strict=True):
            assert w.proc.poll() is None and w.proc.pid == pid, "no crash, no restart"
            assert "database reachable again" in w.stderr, w.stderr
            assert "Traceback" not in w.stderr, w.stderr

        # Idle now: each worker sleeps on LISTEN. Restart once more; the listeners
        # reconnect and a new message is still picked up.
        private_pg.restart()
        wait_for(
            lambda: all("listening for new work again" in w.stderr for w in workers),
            60,
            "the LISTEN connections to come back",
        )
        late_id = harness.work.send_sync({"n": "late"})
        wait_for(lambda: delivery_counts(tmp_path)[late_id] == 1, 60, "the late message")
        harness.app.close_sync()
    finally:
        harness.close()
