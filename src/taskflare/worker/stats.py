"""What a worker did, per queue: counters and handler durations, for its periodic report.

`/metrics`, `taskflare stats` and `taskflare dev` read these (every worker's report
summed); the JSON shape is what the reports store.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from ..backends.base import ACKED, SettleResult, State

# Upper bounds [s] of the handler-duration histogram (the last bucket is +Inf).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNTERS = ("batches", "delivered", "acked", "retried", "failed", "cancelled")


@dataclass(slots=True)
class WorkerStats:
    """Counters of what a worker did, per queue.

    `batches`: handler calls (a batch, or one job); `delivered`: deliveries claimed;
    `acked`: messages acked and jobs completed; `retried`, `failed`, `cancelled`: as
    stored (a cancel that won over a completion counts as cancelled).
    """

    batches: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    # Handler durations per queue: bucket counts (last = +Inf) and their sum [s].
    durations: dict[str, list[int]] = field(default_factory=dict)
    duration_sum: dict[str, float] = field(default_factory=dict)
    # The counters at the previous report, and when (monotonic seconds): the rates in a
    # report are measured over the interval since.
    _previous: tuple[float, dict[str, dict[str, int]]] | None = None

    def record(self, queue: str, result: SettleResult, ids: list[str], duration: float) -> None:
        """Add one handler call: the deliveries it covered (`ids`) as stored, and its
        duration [s]."""
        self.batches[queue] += 1
        self.delivered[queue] += len(ids)
        for message_id in ids:
            state = result.states.get(message_id)
            if state in (ACKED, State.COMPLETED):
                self.acked[queue] += 1
            elif state == State.READY:
                self.retried[queue] += 1
            elif state == State.FAILED:
                self.failed[queue] += 1
            elif state == State.CANCELLED:
                self.cancelled[queue] += 1
        buckets = self.durations.setdefault(queue, [0] * (len(DURATION_BUCKETS) + 1))
        buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum[queue] = self.duration_sum.get(queue, 0.0) + duration

    def to_json(self, now: float | None = None) -> str:
        """The counters as JSON, for the worker's periodic report, with each counter's
        rate per second over the interval since the previous report."""
        now = time.monotonic() if now is None else now
        counters = {name: dict(getattr(self, name)) for name in COUNTERS}
        rates: dict[str, dict[str, float]] = {}
        if self._previous is not None and now > self._previous[0]:
            span = now - self._previous[0]
            before = self._previous[1]
            rates = {
                name: {
                    queue: round((value - before.get(name, {}).get(queue, 0)) / span, 3)
                    for queue, value in per_queue.items()
                }
                for name, per_queue in counters.items()
            }
        self._previous = (now, counters)
        return orjson.dumps(
            {
                "counters": counters,
                "rates": rates,
                "durations": {
                    "buckets": list(DURATION_BUCKETS),
                    "counts": self.durations,
                    "sum": dict(self.duration_sum),
                },
            }
        ).decode()
