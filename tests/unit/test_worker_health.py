"""How `taskflare worker health` judges the stored heartbeats (the pure part)."""

from __future__ import annotations

import pytest

from taskflare import InvalidWorkerConfig
from taskflare.backends.base import WorkerReport
from taskflare.worker.health import MIN_MAX_AGE, check_max_age, judge


def report(pid: int, started: float, seen: float, host: str = "box") -> WorkerReport:
    return WorkerReport(f"w-{pid}-{started}", host, pid, started, seen, "{}")


def test_a_reused_pid_counts_by_its_newest_worker() -> None:
    """A restarted container's worker is PID 1 again: the old row's stale heartbeat does
    not make the new worker unhealthy."""
    rows = [report(1, started=0, seen=10), report(1, started=50, seen=98)]
    verdict = judge(rows, hostname="box", now=100, max_age=30, running=lambda pid: True)
    assert verdict.healthy and "pid 1 2.0 s ago" in verdict.line


def test_one_stale_worker_of_several_fails_and_other_hosts_do_not_count() -> None:
    rows = [report(7, 0, 99), report(8, 0, 40), report(9, 0, 0, host="elsewhere")]
    verdict = judge(rows, hostname="box", now=100, max_age=30, running=lambda pid: True)
    assert not verdict.healthy
    assert verdict.line == (
        "unhealthy: heartbeat stale on box (limit 30 s): last report pid 8 60.0 s ago"
    )
    only_7 = judge(rows, hostname="box", now=100, max_age=30, pids=(7,), running=lambda p: True)
    assert only_7.healthy


def test_workers_whose_process_is_gone_are_not_looked_at() -> None:
    rows = [report(7, 0, 99), report(8, 0, 10)]
    verdict = judge(rows, hostname="box", now=100, max_age=30, running=lambda pid: pid == 7)
    assert verdict.healthy and "1 worker on box" in verdict.line
    none = judge(rows, hostname="box", now=100, max_age=30, running=lambda pid: False)
    assert not none.healthy and "no running worker on box" in none.line


def test_max_age_below_two_report_intervals_is_refused() -> None:
    assert check_max_age(MIN_MAX_AGE) == MIN_MAX_AGE
    with pytest.raises(InvalidWorkerConfig, match="max_age must be at least"):
        check_max_age(MIN_MAX_AGE - 1)
