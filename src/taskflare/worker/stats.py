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

from ..backends.base import ACKED, SettleResult, State, StatsMinute

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
    # What `take_minutes` last handed out, per queue: processed, retried, failed, the
    # histogram and the duration sum (the history stores deltas).
    _taken: dict[str, tuple[int, int, int, list[int], float]] = field(default_factory=dict)

    def record(self, queue: str, result: SettleResult, ids: list[str], duration: float) -> None:
        """Add one handler call: the deliveries it covered (`ids`) as stored, and its
        duration [s]."""
        self.batches[queue] += 1
        self.delivered[queue] += len(ids)
        # One id (a job): no Counter to build, the same tally.
        tally = (
            ((result.states.get(ids[0]), 1),)
            if len(ids) == 1
            else Counter(map(result.states.get, ids)).items()
        )
        for state, count in tally:
            if state in (ACKED, State.COMPLETED):
                self.acked[queue] += count
            elif state == State.READY:
                self.retried[queue] += count
            elif state == State.FAILED:
                self.failed[queue] += count
            elif state == State.CANCELLED:
                self.cancelled[queue] += count
        buckets = self.durations.setdefault(queue, [0] * (len(DURATION_BUCKETS) + 1))
        buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum[queue] = self.duration_sum.get(queue, 0.0) + duration

    def record_rescued(self, queue: str, retried: int, failed: int, cancelled: int) -> None:
        """Add the outcomes this worker's lease rescuer stored for deliveries whose worker
        died (no handler call of this worker: batches, deliveries and durations stay)."""
        self.retried[queue] += retried
        self.failed[queue] += failed
        self.cancelled[queue] += cancelled

    def take_minutes(self, now: float | None = None) -> list[StatsMinute]:
        """What happened per queue since the previous call, as deltas for the current
        minute (`now`: epoch seconds), for the stored throughput and latency history."""
        minute = int((time.time() if now is None else now) // 60 * 60)
        taken = []
        for queue in set(self.delivered) | set(self.durations):
            current = (
                self.acked[queue],
                self.retried[queue],
                self.failed[queue],
                list(self.durations.get(queue, [])),
                self.duration_sum.get(queue, 0.0),
            )
            before = self._taken.get(queue, (0, 0, 0, [0] * len(current[3]), 0.0))
            histogram = tuple(c - b for c, b in zip(current[3], before[3], strict=False))
            delta = StatsMinute(
                minute,
                queue,
                current[0] - before[0],
                current[1] - before[1],
                current[2] - before[2],
                current[4] - before[4],
                histogram,
            )
            self._taken[queue] = current
            if delta.processed or delta.retried or delta.failed or any(histogram):
                taken.append(delta)
        return taken

    def to_json(self, now: float | None = None, info: dict[str, object] | None = None) -> str:
        """The counters as JSON, for the worker's periodic report, with each counter's
        rate per second over the interval since the previous report, and `info` (what
        the worker serves: queues, concurrency, work in flight) under "worker"."""
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
                "worker": info or {},
                "durations": {
                    "buckets": list(DURATION_BUCKETS),
                    "counts": self.durations,
                    "sum": dict(self.duration_sum),
                },
            }
        ).decode()
