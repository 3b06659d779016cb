"""The leases a worker holds: which to extend, and when one is done with."""

from __future__ import annotations

import threading
from collections import Counter


class HeldLeases:
    """Lease ids per queue, each with how many of its deliveries are still unsettled.

    A claim takes one lease for several deliveries; the jobs of one claim finish one by
    one, so a lease is held until the last of them has been settled. Read from the
    worker's lease guard thread too, hence the lock.
    """

    def __init__(self) -> None:
        self._held: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def add(self, queue: str, lease_id: str, count: int) -> None:
        """`count` deliveries of `queue` are now held under `lease_id`."""
        with self._lock:
            self._held.setdefault(queue, Counter())[lease_id] += count

    def done(self, queue: str, lease_id: str, count: int = 1) -> None:
        """`count` deliveries under `lease_id` are settled (or handed back)."""
        with self._lock:
            leases = self._held.get(queue)
            if leases is None:
                return
            leases[lease_id] -= count
            if leases[lease_id] <= 0:
                del leases[lease_id]

    def by_queue(self) -> dict[str, list[str]]:
        """Every held lease id, by queue (queues holding none left out)."""
        with self._lock:
            return {queue: sorted(leases) for queue, leases in self._held.items() if leases}

    def of(self, queues: set[str]) -> list[str]:
        """Held lease ids of these queues."""
        with self._lock:
            return [lease for q in queues for lease in self._held.get(q, ())]
