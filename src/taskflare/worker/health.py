"""Is a worker alive? Judged from the heartbeats workers store (`workers.last_seen`).

Every worker upserts a report every `REPORT_INTERVAL` seconds (5 s). A supervisor's probe
(`taskflare worker health`) reads those rows and fails when the workers running on this
machine have not reported for longer than `max_age` seconds: the process is stopped
(SIGSTOP), stuck in a blocking call on its event loop, or cannot reach the database.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..backends.base import Backend, WorkerListParams, WorkerReport
from ..errors import InvalidWorkerConfig
from .runtime import REPORT_INTERVAL

# A worker that has not reported for this long is unhealthy [s] (six missed reports).
DEFAULT_MAX_AGE = 30.0
# The smallest limit that does not flap: two report intervals [s].
MIN_MAX_AGE = 2 * REPORT_INTERVAL
# Reports older than this are not looked at (a machine's past workers) [s].
LOOKBACK_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The probe's answer: `healthy` (exit 0) or not (exit 1), and one line saying why."""

    healthy: bool
    line: str


def pid_running(pid: int) -> bool:
    """True if a process with this id exists here (signal 0: nothing is sent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OverflowError:
        return False
    return True


def judge(
    reports: Iterable[WorkerReport],
    *,
    hostname: str,
    now: float,
    max_age: float,
    pids: tuple[int, ...] = (),
    running: Callable[[int], bool] = pid_running,
) -> Verdict:
    """Healthy when every selected worker reported within `max_age` seconds of `now`.

    Selected: the workers of `hostname` with one of `pids`, else every worker of
    `hostname` whose process is `running` here. A pid reused by a later worker (a
    restarted container's PID 1) counts by its newest report. Unhealthy when nothing is
    selected, a given pid has no report or is not running, or any report is stale.
    """
    newest: dict[int, WorkerReport] = {}
    for report in reports:
        if report.hostname != hostname:
            continue
        seen = newest.get(report.pid)
        if seen is None or report.started_at > seen.started_at:
            newest[report.pid] = report
    if pids:
        for pid in pids:
            if pid not in newest:
                return Verdict(
                    False, f"unhealthy: no worker with pid {pid} on {hostname} has reported"
                )
            if not running(pid):
                return Verdict(False, f"unhealthy: worker pid {pid} on {hostname} is not running")
        chosen = [newest[pid] for pid in pids]
    else:
        chosen = [r for pid, r in sorted(newest.items()) if running(pid)]
        if not chosen:
            return Verdict(
                False, f"unhealthy: no running worker on {hostname} has reported its heartbeat"
            )
    ages = [(r.pid, max(now - r.last_seen, 0.0)) for r in chosen]
    stale = [(pid, age) for pid, age in ages if age > max_age]
    if stale:
        listed = ", ".join(f"pid {pid} {age:.1f} s ago" for pid, age in stale)
        return Verdict(
            False,
            f"unhealthy: heartbeat stale on {hostname} (limit {max_age:g} s): last report {listed}",
        )
    listed = ", ".join(f"pid {pid} {age:.1f} s ago" for pid, age in ages)
    count = f"{len(ages)} worker{'s' if len(ages) != 1 else ''}"
    return Verdict(True, f"ok: {count} on {hostname} reported within {max_age:g} s ({listed})")


def check_max_age(max_age: float) -> float:
    """`max_age` [s] if it is at least `MIN_MAX_AGE`; else `InvalidWorkerConfig`."""
    if not MIN_MAX_AGE <= max_age < math.inf:
        raise InvalidWorkerConfig(
            f"max_age must be at least {MIN_MAX_AGE:g} seconds (workers report every "
            f"{REPORT_INTERVAL:g} s), got {max_age:g}",
            fields=("max_age",),
        )
    return max_age


async def worker_health(
    backend: Backend, *, max_age: float = DEFAULT_MAX_AGE, pids: tuple[int, ...] = ()
) -> Verdict:
    """Judge this machine's workers (`socket.gethostname()`) from the stored reports.

    Raises `InvalidWorkerConfig` for a `max_age` under `MIN_MAX_AGE`, and what the backend
    raises when the database cannot be read (`BackendUnavailable`)."""
    check_max_age(max_age)
    now = time.time()
    reports = await backend.worker_list(WorkerListParams(now - LOOKBACK_SECONDS))
    return judge(reports, hostname=socket.gethostname(), now=now, max_age=max_age, pids=pids)
