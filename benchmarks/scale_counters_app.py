"""`scale_app` with counters, for `scale_counters.py`: the claims, settles, notifications
and event-loop wake-ups of one worker process. SIGUSR1 zeroes them, SIGUSR2 writes them
to `$SCALE_COUNTERS_OUT.<pid>.json`."""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from scale_app import app

from taskflare.backends.changes import ChangeSignal
from taskflare.backends.postgres.backend import PostgresBackend

__all__ = ["app"]

COUNTS: Counter[str] = Counter()
BACKENDS: list[PostgresBackend] = []


def wrap(cls: Any, name: str, make: Callable[[Any], Any]) -> None:
    setattr(cls, name, make(getattr(cls, name)))


def claim(orig: Any) -> Any:
    async def counted(self: PostgresBackend, params: Any) -> Any:
        if self not in BACKENDS:
            BACKENDS.append(self)
        result = await orig(self, params)
        rows = len(result.messages)
        COUNTS["claims"] += 1
        COUNTS["claim_rows"] += rows
        COUNTS["claim_limit"] += params.limit
        COUNTS["claims_empty"] += rows == 0
        COUNTS["claims_short"] += rows < params.limit
        return result

    return counted


def settle(orig: Any) -> Any:
    async def counted(self: PostgresBackend, settlement: Any) -> Any:
        result = await orig(self, settlement)
        COUNTS["settles"] += 1
        COUNTS["settle_rows"] += settlement.size
        return result

    return counted


def heard(orig: Any) -> Any:
    def counted(self: ChangeSignal, topics: Any) -> None:
        topics = list(topics)
        for topic in topics:
            COUNTS["heard_" + topic.split(":")[0]] += 1
        orig(self, topics)

    return counted


def select(orig: Any) -> Any:
    def counted(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        ready = orig(self, timeout)
        if timeout != 0:
            COUNTS["blocking_waits"] += 1
            listening = {
                res.listen_conn.pgconn.socket
                for backend in BACKENDS
                for res in backend._db._loops.values()
                if res.listen_conn is not None
            }
            if ready and all(key.fd in listening for key, _ in ready):
                COUNTS["woken_by_notification_alone"] += 1
        return ready

    return counted


wrap(PostgresBackend, "message_claim_many", claim)
wrap(PostgresBackend, "message_settle_many", settle)
wrap(ChangeSignal, "raise_topics", heard)
wrap(selectors.EpollSelector, "select", select)


def start(*_: Any) -> None:
    COUNTS.clear()
    COUNTS["cpu0_ms"] = round(1000 * time.process_time())


def write(*_: Any) -> None:
    COUNTS["cpu_ms"] = round(1000 * time.process_time()) - COUNTS.pop("cpu0_ms", 0)
    with open(f"{os.environ['SCALE_COUNTERS_OUT']}.{os.getpid()}.json", "w") as out:
        json.dump(COUNTS, out)


signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, write)
