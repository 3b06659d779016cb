"""One measure of one adapter, in a fresh process on a fresh database:

    python -m peers.client <adapter> <enqueue|bulk|drain|pickup> <out.json>

Sizes come from `$PB_SCALE` (1 = 5 000 enqueues, 5 000 in one bulk call, a drain of
20 000 pre-enqueued jobs by one worker process, 200 pickups). Adapted from peerbench's
`harness/client.py`; the worker reports by UDP (`hits.py`) instead of Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from peers import hits

SCALE = float(os.environ.get("PB_SCALE", "1"))
N_ENQUEUE = max(100, round(5_000 * SCALE))
N_DRAIN = max(200, round(20_000 * SCALE))
N_PICKUP = max(20, round(200 * SCALE))
DRAIN_TIMEOUT = 180.0  # from spawning the worker
PICKUP_BUDGET = 45.0
WARM_UP = 50


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (as peerbench)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@contextlib.contextmanager
def worker(adapter: str, mode: str, port: int, target: int = 0) -> Iterator[None]:
    """The adapter's worker in its own process; stopped (SIGTERM, then SIGKILL) on exit."""
    env = {**os.environ, "PB_MODE": mode, "PB_TARGET": str(target), "PB_UDP_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "peers.worker", adapter], env=env)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def measure_enqueue(m: ModuleType) -> dict[str, float]:
    """N_ENQUEUE sequential single enqueues from one process, after WARM_UP untimed ones."""
    await m.setup()
    await m.open()
    for _ in range(WARM_UP):
        await m.enqueue(0.0)
    latencies = []
    start = time.perf_counter()
    for _ in range(N_ENQUEUE):
        t0 = time.perf_counter()
        await m.enqueue(0.0)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    await m.close()
    return {
        "n": N_ENQUEUE,
        "jobs_s": N_ENQUEUE / elapsed,
        **{f"p{p}_ms": percentile(latencies, p) * 1e3 for p in (50, 95, 99)},
    }


async def measure_bulk(m: ModuleType) -> dict[str, float]:
    """One bulk call of N_ENQUEUE jobs (after one untimed single enqueue: connect, migrate)."""
    await m.setup()
    await m.open()
    await m.enqueue(0.0)
    start = time.perf_counter()
    await m.bulk([0.0] * N_ENQUEUE)
    elapsed = time.perf_counter() - start
    await m.close()
    return {"n": N_ENQUEUE, "jobs_s": N_ENQUEUE / elapsed}


async def measure_drain(m: ModuleType, adapter: str) -> dict[str, Any]:
    """N_DRAIN pre-enqueued jobs, one worker process: first task start to the N-th."""
    await m.setup()
    await m.open()
    if m.BULK_API:
        for first in range(0, N_DRAIN, 5_000):
            await m.bulk([0.0] * min(5_000, N_DRAIN - first))
    else:
        for _ in range(N_DRAIN):
            await m.enqueue(0.0)
    await m.close()
    listener = hits.Listener()
    spawn = time.time()
    with worker(adapter, "drain", listener.port, N_DRAIN):
        done = listener.wait("done", DRAIN_TIMEOUT)
    listener.close()
    if done is None:  # report the rate so far, marked as timed out
        seen = listener.progress
        n, first = seen.get("n", 0), seen.get("first") or spawn
        rate = n / max(1e-9, seen.get("ts", spawn) - first) if n else 0.0
        return {"n": N_DRAIN, "done": n, "jobs_s": rate, "timed_out": True}
    return {
        "n": N_DRAIN,
        "done": N_DRAIN,
        "jobs_s": N_DRAIN / (done["last"] - done["first"]),
        "jobs_s_incl_startup": N_DRAIN / (done["last"] - spawn),
        "timed_out": False,
    }


async def measure_pickup(m: ModuleType, adapter: str) -> dict[str, Any]:
    """An idle worker in another process; one job at a time; enqueue call -> task start."""
    await m.setup()
    await m.open()
    listener = hits.Listener()
    rng = random.Random(7)
    latencies, misses = [], 0
    try:
        with worker(adapter, "pickup", listener.port):
            await m.enqueue(time.time())  # warm-up: wait until the worker is up
            if listener.wait("pickup", 60) is None:
                raise RuntimeError("the warm-up job was not run within 60 s")
            await asyncio.sleep(1.0)
            end = time.time() + PICKUP_BUDGET
            for _ in range(N_PICKUP):
                if time.time() > end:
                    break
                await asyncio.sleep(rng.uniform(0, 0.02))  # de-phase from pollers' sleeps
                await m.enqueue(time.time())
                got = listener.wait("pickup", 15)
                if got is None:
                    misses += 1
                else:
                    latencies.append(got["latency"])
    finally:
        listener.close()
        await m.close()
    return {
        "n": len(latencies),
        "misses": misses,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
        "mean_ms": statistics.mean(latencies) * 1e3,
    }


async def measure(adapter: str, what: str) -> dict[str, Any]:
    m = importlib.import_module(f"peers.{adapter}_peer")
    if what == "enqueue":
        return await measure_enqueue(m)
    if what == "bulk":
        return await measure_bulk(m)
    if what == "drain":
        return await measure_drain(m, adapter)
    if what == "pickup":
        return await measure_pickup(m, adapter)
    raise SystemExit(f"unknown measure {what!r}")


def main() -> None:
    adapter, what, out = sys.argv[1:4]
    result = asyncio.run(measure(adapter, what))
    m = sys.modules[f"peers.{adapter}_peer"]
    result.update(name=m.NAME, config=m.CONFIG, bulk_api=m.BULK_API)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
