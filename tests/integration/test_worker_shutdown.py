"""SIGTERM/SIGINT: stop claiming, finish running batches within the grace period, exit 0."""

from __future__ import annotations

import signal

import pytest

from taskflare import Job, JobStatus

from .conftest import Harness
from .procs import delivery_counts, job_starts, wait_for


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_finishes_running_batch_and_returns_unstarted_ones(
    harness: Harness, sig: signal.Signals
) -> None:
    release = harness.folder / "release"
    running = harness.work.send_sync({"until": str(release)})
    waiting = harness.work.send_sync({"n": 2})
    worker = harness.start_worker("--concurrency", "1", TF_BATCH="1")
    wait_for(lambda: delivery_counts(harness.folder)[running] == 1, 60, "the slow batch to start")

    def prefetched() -> bool:
        record = harness.get(waiting)
        return record is not None and record.state == "leased"

    wait_for(prefetched, 60, "the second batch to be claimed while it waits for a slot")
    worker.signal(sig)

    def handed_back() -> bool:
        record = harness.get(waiting)
        return record is not None and record.state == "ready"

    # The running batch may finish only once the worker has acted on the stop: a loaded
    # machine can deliver the signal late, and a slot freed first would start the
    # prefetched batch before the stop was seen.
    wait_for(handed_back, 60, "the prefetched batch to be handed back on the stop")
    release.touch()
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
    wait_for(lambda: delivery_counts(harness.folder)[stuck] == 1, 60, "the batch to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.stderr
    record = harness.get(stuck)
    assert record is not None
    assert (record.state, record.attempts) == ("ready", 1)
    assert "shut down" in (record.last_error or "")


def _job(harness: Harness, job_id: str) -> Job:
    job = harness.app.get_job_sync(job_id)
    assert job is not None
    return job


@pytest.mark.parametrize("kind", ["slow", "slow-sync"])
def test_a_job_cut_off_by_shutdown_is_recorded_retried_before_the_process_exits(
    any_harness: Harness, kind: str
) -> None:
    """The promised outcome ("the worker shut down") is in the database when the worker's
    process has exited: nothing is left `processing` for a rescuer to find later."""
    harness = any_harness
    harness.app.job(kind, queue="jobs")(lambda payload: None)
    job = harness.app.enqueue_sync(kind, {"sleep": 30})
    worker = harness.start_worker("--shutdown-grace", "1", "--queue", "jobs")
    wait_for(lambda: job_starts(harness.folder), 60, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.stderr
    stored = _job(harness, job.id)
    assert stored.status is JobStatus.PENDING, "retried, not left processing"
    assert stored.attempts == 1
    [attempt] = stored.history
    assert attempt.outcome == "retried"
    assert attempt.error is not None and "worker shut down" in attempt.error


def test_a_job_on_its_last_attempt_cut_off_by_shutdown_is_recorded_failed(
    any_harness: Harness,
) -> None:
    harness = any_harness
    harness.app.job("slow", queue="jobs", max_attempts=1)(lambda payload: None)
    job = harness.app.enqueue_sync("slow", {"sleep": 30})
    worker = harness.start_worker("--shutdown-grace", "1", "--queue", "jobs", TF_JOB_ATTEMPTS="1")
    wait_for(lambda: job_starts(harness.folder), 60, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.stderr
    stored = _job(harness, job.id)
    assert stored.status is JobStatus.FAILED
    assert stored.error is not None and "worker shut down" in stored.error
    assert [a.outcome for a in stored.history] == ["failed"]


def test_a_job_ignoring_its_cancellation_does_not_keep_the_process_from_exiting(
    any_harness: Harness,
) -> None:
    """asyncio cannot kill a coroutine: past `--cancel-grace` the worker records the job
    as cut off by the shutdown (retried at once, its lease released) and exits."""
    harness = any_harness
    harness.app.job("stubborn", queue="jobs")(lambda payload: None)
    job = harness.app.enqueue_sync("stubborn", {})
    worker = harness.start_worker(
        "--shutdown-grace", "0.5", "--cancel-grace", "0.5", "--queue", "jobs"
    )
    wait_for(lambda: job_starts(harness.folder), 30, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    stored = _job(harness, job.id)
    assert (stored.status, stored.attempts) == (JobStatus.PENDING, 1), "available again now"
    [attempt] = stored.history
    assert attempt.outcome == "retried"
    assert attempt.error is not None and "ignored its cancellation for 0.5s" in attempt.error
    assert f"job {job.id} (stubborn) ignored the shutdown" in worker.stderr


def test_a_consumer_ignoring_its_cancellation_does_not_keep_the_process_from_exiting(
    any_harness: Harness,
) -> None:
    harness = any_harness
    stuck = harness.work.send_sync({"stubborn": True})
    worker = harness.start_worker("--shutdown-grace", "0.5", "--cancel-grace", "0.5")
    wait_for(lambda: delivery_counts(harness.folder)[stuck] == 1, 30, "the batch to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    record = harness.get(stuck)
    assert record is not None
    assert (record.state, record.attempts) == ("ready", 1), "available again now"
    assert "the consumer ignored its cancellation for 0.5s" in (record.last_error or "")


def test_a_wait_until_task_ignoring_its_cancellation_does_not_keep_the_process_from_exiting(
    harness: Harness,
) -> None:
    harness.app.job("leave-behind", queue="jobs")(lambda payload: None)
    job = harness.app.enqueue_sync("leave-behind", {})
    worker = harness.start_worker("--cancel-grace", "0.5", "--queue", "jobs", TF_WAIT_UNTIL="0.5")
    wait_for(lambda: _job(harness, job.id).status is JobStatus.COMPLETED, 30, "the job to complete")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    assert "ignored its cancellation for 0.5s; leaving it behind" in worker.stderr
