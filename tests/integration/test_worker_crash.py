"""A worker that dies (kill -9, os._exit) loses nothing: its messages come back after the lease."""

from __future__ import annotations

import signal

from .conftest import Harness
from .procs import deliveries, delivery_counts, job_starts, wait_for


def test_message_of_sigkilled_worker_is_redelivered_after_its_lease_expires(
    harness: Harness,
) -> None:
    message_id = harness.work.send_sync({"sleep": 60})
    first = harness.start_worker(TF_VT="1")
    wait_for(lambda: delivery_counts(harness.folder)[message_id] == 1, 60, "first delivery")
    first.signal(signal.SIGKILL)
    first.wait(10)
    record = harness.get(message_id)
    assert record is not None and record.state == "leased"

    harness.start_worker(TF_VT="1")
    wait_for(lambda: delivery_counts(harness.folder)[message_id] == 2, 60, "redelivery")
    assert [d[2] for d in deliveries(harness.folder) if d[0] == message_id] == [1, 2]


def test_message_that_kills_its_worker_every_time_ends_in_the_dlq(harness: Harness) -> None:
    """Attempts are counted at claim time, so a poison message cannot loop forever."""
    message_id = harness.work.send_sync({"crash": True})
    env = {"TF_VT": "1", "TF_RETRIES": "2", "TF_DLQ": "work-dlq"}
    for expected in (1, 2, 3):
        worker = harness.start_worker(**env)
        assert worker.wait(30) == 1, worker.stderr
        assert delivery_counts(harness.folder)[message_id] == expected

    survivor = harness.start_worker(**env)

    def failed() -> bool:
        record = harness.get(message_id)
        return record is not None and record.state == "failed"

    wait_for(failed, 60, "the message to fail after its last delivery")
    assert survivor.proc.poll() is None, "the worker must not crash again"
    assert delivery_counts(harness.folder)[message_id] == 3
    record = harness.get(message_id)
    assert record is not None and "lease expired" in (record.last_error or "")
    dead = harness.listed("work-dlq")
    assert [(d.origin_id, d.body) for d in dead] == [(message_id, b'{"crash":true}')]


def test_jobs_claimed_ahead_by_a_sigkilled_worker_all_run_after_their_lease(
    harness: Harness,
) -> None:
    """A worker draining a backlog of short jobs holds some claimed but not started (its
    buffer); killed, it loses none of them: their leases expire and another worker runs
    them."""
    harness.app.job("slow", queue="jobs")(lambda payload: None)
    harness.app.enqueue_many_sync("slow", [{"sleep": 0.01, "i": i} for i in range(400)])
    first = harness.start_worker("--queue", "jobs", "--concurrency", "5", TF_JOBS_VT="1")
    wait_for(lambda: len(job_starts(harness.folder)) >= 100, 60, "a hundred jobs to start")
    first.signal(signal.SIGKILL)
    first.wait(10)
    harness.start_worker("--queue", "jobs", "--concurrency", "5", TF_JOBS_VT="1")

    def all_completed() -> bool:
        return {k: n for k, n in harness.counts("jobs").items() if n} == {"completed": 400}

    wait_for(all_completed, 60, "every job to complete")
    started = {payload["i"] for _, payload in job_starts(harness.folder)}
    assert started == set(range(400))


def test_an_async_handler_blocking_the_loop_past_its_lease_is_not_run_twice(
    any_harness: Harness,
) -> None:
    """A blocking call in an `async def` handler stalls the worker's event loop, and with
    it the lease heartbeat: the lease ran out while the handler still ran, a second
    worker ran the same message again (and again, until it failed as out of attempts
    with every run having succeeded). A guard thread keeps the leases of a stalled loop."""
    harness = any_harness
    harness.app.job("blocking", queue="jobs")(lambda payload: None)
    message_id = harness.work.send_sync({"block": 4})
    job = harness.app.enqueue_sync("blocking", {"sleep": 4})
    env = {"TF_VT": "1", "TF_JOBS_VT": "1"}
    first = harness.start_worker(**env)
    wait_for(lambda: delivery_counts(harness.folder)[message_id] == 1, 60, "first delivery")
    harness.start_worker(**env)  # its lease rescuer would take an expired lease at once

    def finished() -> bool:
        stored = harness.app.get_job_sync(job.id)
        return harness.get(message_id) is None and stored is not None and stored.status.finished

    wait_for(finished, 60, "the message acked and the job finished")
    assert delivery_counts(harness.folder)[message_id] == 1
    assert [kind for kind, _ in job_starts(harness.folder)] == ["blocking"]
    stored = harness.app.get_job_sync(job.id)
    assert stored is not None and stored.status.value == "completed" and stored.attempts == 1
    assert "extending its leases from a guard thread" in first.stderr


def test_a_message_acked_before_its_worker_is_killed_is_not_delivered_again(
    any_harness: Harness,
) -> None:
    """Cloudflare: "Messages that are explicitly acknowledged will not be re-delivered,
    even if your queue consumer fails". The consumer acks one message of its batch, then
    works on the other; the worker is killed -9 meanwhile: only the other comes back."""
    harness = any_harness
    acked, slow = harness.work.send_batch_sync([{"body": {"ack": True}}, {"body": {"sleep": 60}}])
    first = harness.start_worker(TF_VT="1")
    wait_for(lambda: harness.get(acked) is None, 60, "the explicit ack to be stored")
    first.signal(signal.SIGKILL)
    first.wait(10)

    harness.start_worker(TF_VT="1")
    wait_for(lambda: delivery_counts(harness.folder)[slow] == 2, 60, "the redelivery")
    assert delivery_counts(harness.folder)[acked] == 1
