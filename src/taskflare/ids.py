"""Time-ordered identifiers (UUID version 7) for messages, leases and workers."""

from __future__ import annotations

import os
import random
import threading
import time

_lock = threading.Lock()
# Random bits from a generator of our own, seeded from the OS (and again in every forked
# child), so an application's `random.seed()` can never make two processes' ids collide;
# one `getrandbits` call costs a fraction of an `os.urandom` system call.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """Return a new UUIDv7 string: sortable by creation time, unique across processes.

    Within one millisecond a 12-bit counter keeps ids from one process in order;
    the remaining 62 bits are random.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= _random.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_many(count: int) -> list[str]:
    """`count` new UUIDv7 strings in creation order, as `count` calls of `uuid7` would
    give (the same clock, counter and random bits), at a fraction of their cost: the
    lock is taken once and each millisecond's prefix is formatted once."""
    global _last_ms, _counter
    if count <= 0:
        return []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms, first = _last_ms, _counter + 1
        else:
            first = 0
        # (millisecond, first counter, how many) runs: the counter rolls into the next
        # millisecond after 0xFFF, as in `uuid7`.
        runs: list[tuple[int, int, int]] = []
        left = count
        while left:
            if first > 0xFFF:
                ms, first = ms + 1, 0
            take = min(left, 0x1000 - first)
            runs.append((ms, first, take))
            first += take
            left -= take
        _last_ms, _counter = ms, first - 1
    bits = _random.getrandbits
    variant = 0b10 << 62
    out: list[str] = []
    for run_ms, start, take in runs:
        t = f"{run_ms & ((1 << 48) - 1):012x}"
        prefix = f"{t[:8]}-{t[8:]}-7"
        for counter in range(start, start + take):
            r = f"{variant | bits(62):016x}"
            out.append(f"{prefix}{counter:03x}-{r[:4]}-{r[4:]}")
    return out
