"""`taskflare worker` beside the other commands, and its `--processes` supervisor."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_run import (
    Follower,
    logged_ids,
    ok,
    pid_alive,
    send_in_process,
    tf,
    tf_json,
    write_cli_app,
)
from .procs import wait_for


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.kill()


def _job_status(job_id: str, url: str, wanted: str) -> bool:
    return bool(tf_json("jobs", "show", job_id, url=url)["status"] == wanted)


def test_worker_runs_what_send_and_jobs_enqueue_put_in(
    database_url: str, tmp_path: Path, followers: list[Follower]
) -> None:
    spec = write_cli_app(tmp_path)
    worker = Follower(tmp_path, "worker", spec, "--concurrency", "4", url=database_url)
    followers.append(worker)
    # A started worker stores its app's queues; from then on `send` knows the queue.
    wait_for(
        lambda: tf("queues", "info", "work", url=database_url).returncode == 0,
        60,
        "the worker to declare its queues",
    )
    sent = [ok("send", "work", f'{{"i": {i}}}', url=database_url).strip() for i in range(3)]
    good = ok("jobs", "enqueue", "double", '{"n": 21}', "--app", spec, url=database_url).strip()
    # Without --app the type's queue is named explicitly.
    plain = ok("jobs", "enqueue", "double", '{"n": 1}', "--queue", "jobs", url=database_url).strip()
    bad = ok("jobs", "enqueue", "boom", '{"n": 7}', "--app", spec, url=database_url).strip()

    wait_for(lambda: set(sent) <= set(logged_ids(tmp_path)), 60, "the sent messages consumed")
    wait_for(lambda: _job_status(good, database_url, "completed"), 60, "double to complete")
    shown = tf_json("jobs", "show", good, url=database_url)
    assert shown["result"] == {"n": 42} and shown["progress"] == 1.0
    assert [a["outcome"] for a in shown["history"]] == ["completed"]
    wait_for(lambda: _job_status(plain, database_url, "completed"), 60, "plain double")
    wait_for(lambda: _job_status(bad, database_url, "failed"), 60, "boom to fail")

    text = ok("jobs", "show", bad, url=database_url)
    assert "attempt 1" in text and "error: RuntimeError: kaboom 7" in text
    assert "Traceback (most recent call last)" in text and 'raise RuntimeError("kaboom "' in text
    failed = tf_json("jobs", "list", "--status", "failed", url=database_url)
    assert [j["id"] for j in failed["jobs"]] == [bad]

    ok("jobs", "retry", bad, url=database_url)
    wait_for(
        lambda: len(tf_json("jobs", "show", bad, url=database_url)["history"]) == 2,
        60,
        "the retried job to run again",
    )
    assert tf_json("jobs", "show", bad, url=database_url)["status"] == "failed"
    stats = tf_json("stats", "--interval", "0.2", url=database_url)
    assert (stats["jobs"]["completed"], stats["jobs"]["failed"]) == (2, 1)
    assert stats["workers"] == 1
    assert worker.stop() == 0


STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def _children(supervisor: Follower) -> dict[int, list[int]]:
    """Each slot's pids, in the order the supervisor logged them."""
    slots: dict[int, list[int]] = {}
    for slot, pid in STARTED.findall(supervisor.stderr):
        slots.setdefault(int(slot), []).append(int(pid))
    return slots


def test_supervisor_restarts_a_killed_child_and_sigterm_stops_all_gracefully(
    database_url: str, tmp_path: Path, followers: list[Follower]
) -> None:
    spec = write_cli_app(tmp_path)
    supervisor = Follower(tmp_path, "worker", spec, "--processes", "2", url=database_url)
    followers.append(supervisor)

    def both_started() -> dict[int, list[int]] | None:
        assert supervisor.proc.poll() is None, supervisor.stderr
        slots = _children(supervisor)
        return slots if len(slots) == 2 else None

    slots = wait_for(both_started, 60, "two workers started")
    first = [slots[0][0], slots[1][0]]
    early = send_in_process(database_url, "work", [{"i": i} for i in range(10)])
    wait_for(lambda: set(early) <= set(logged_ids(tmp_path)), 60, "the first messages consumed")

    os.kill(first[0], signal.SIGKILL)
    supervisor.wait_for_output(
        rf"worker 0 \(pid {first[0]}\) exited with code -9; restarting in \d+\.\ds",
        20,
        stream="stderr",
    )
    wait_for(lambda: len(_children(supervisor)[0]) == 2, 60, "worker 0 restarted")
    replacement = _children(supervisor)[0][1]
    assert replacement not in first and pid_alive(replacement) and pid_alive(first[1])

    late = send_in_process(database_url, "work", [{"i": i} for i in range(10, 30)])
    wait_for(lambda: set(late) <= set(logged_ids(tmp_path)), 60, "work continued")

    assert supervisor.stop(signal.SIGTERM, timeout=60) == 0
    err = supervisor.stderr
    assert "stopping 2 workers" in err and "all workers stopped" in err
    assert "did not stop in time" not in err and "Traceback" not in err
    assert not pid_alive(replacement) and not pid_alive(first[1])
