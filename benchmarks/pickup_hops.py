"""Where an idle worker's pickup time goes, hop by hop.

    python benchmarks/pickup_hops.py [--backend postgres|sqlite|both] [--n 200]

One `taskflare worker` process (the same `run_worker` the CLI uses) waits on an empty
queue; this process enqueues one job at a time (after a random 0-20 ms pause, as
`compare.py`'s pickup does) and the job's handler reports when it started. The worker's
backend and signal are wrapped (in the worker process only, by this script) to note the
wall-clock time of each hop, so the table shows, per hop, the median and p95 of the time
since the enqueue call began, and of the step from the hop before it:

    enqueued    the enqueue call returned (its commit is done)
    signal      the worker heard of the change (PostgreSQL: its LISTEN connection's
                NOTIFY; SQLite: `PRAGMA data_version` moved after the kernel's hint)
    woken       the claim loop's wait returned
    claim sent  the claim statement was sent / claimed: its rows came back
    handler     the job's handler started (what `compare.py` calls pickup)

and the worker's share (the handler's start minus the enqueue call's return), the worker
process's CPU time per pickup and, on PostgreSQL, that of the server processes of its
connections (found by the application name the worker's connections carry).

Both processes read `time.time()` on the same machine. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
HOPS = ("enqueued", "signal", "woken", "claim sent", "claimed", "handler")


# -- the worker process ------------------------------------------------------------------


def note_hops(hops: dict[str, float]) -> None:
    """Wrap the change signal and both backends' wait and claim to note each hop's time."""
    from taskflare.backends import changes
    from taskflare.backends.postgres.backend import PostgresBackend
    from taskflare.backends.sqlite.backend import SQLiteBackend

    def note(name: str) -> None:
        hops.setdefault(name, time.time())

    raise_topics = changes.ChangeSignal.raise_topics
    raise_all = changes.ChangeSignal.raise_all

    def noted_raise_topics(self: Any, topics: Any) -> None:
        topics = list(topics)
        if any(t.startswith("ready:") for t in topics):
            note("signal")
        raise_topics(self, topics)

    def noted_raise_all(self: Any) -> None:
        note("signal")
        raise_all(self)

    changes.ChangeSignal.raise_topics = noted_raise_topics  # type: ignore[method-assign]
    changes.ChangeSignal.raise_all = noted_raise_all  # type: ignore[method-assign]

    for cls in (PostgresBackend, SQLiteBackend):
        wait, claim = cls.wait_for_change, cls.message_claim_many

        def wrap(wait: Any = wait, claim: Any = claim, cls: Any = cls) -> None:
            async def noted_wait(self: Any, topic: str, since: int, timeout: float) -> bool:
                moved = await wait(self, topic, since, timeout)
                if topic.startswith("ready:") and "signal" in hops:
                    note("woken")
                return bool(moved)

            async def noted_claim(self: Any, params: Any) -> Any:
                if "woken" in hops:
                    note("claim sent")
                result = await claim(self, params)
                if result.messages:
                    note("claimed")
                return result

            cls.wait_for_change = noted_wait
            cls.message_claim_many = noted_claim

        wrap()


def worker_main(url: str, port: int) -> None:
    """Run a worker with its hops noted; each handler call sends them to `port`."""
    from taskflare import App
    from taskflare.cli.run import run_worker
    from taskflare.worker import Worker

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hops: dict[str, float] = {}
    note_hops(hops)
    app = App(url)

    @app.job("noop")
    async def noop(payload: dict[str, Any]) -> None:
        now = time.time()
        sent = dict(hops, handler=now, t=payload["t"])
        hops.clear()
        sock.sendto(json.dumps(sent).encode(), ("127.0.0.1", port))

    run_worker(app, Worker(app))


# -- the measuring process ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far [s] (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(url: str, application_name: str) -> list[int]:
    """The PostgreSQL server processes of the connections named `application_name`
    (none on SQLite)."""
    if "schema=" not in url:
        return []
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return [row[0] for row in rows]


def server_cpu(pids: list[int]) -> float:
    """User + system CPU time of these server processes so far [s] (a gone one: 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


async def measure(
    url: str, n: int, listen: socket.socket, pid: int, application_name: str
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    from taskflare import App

    app = App(url)

    @app.job("noop")
    async def noop(payload: dict[str, Any]) -> None:  # runs in the worker process only
        pass

    await app.backend()
    rng = random.Random(7)
    since: dict[str, list[float]] = {h: [] for h in HOPS}
    steps: dict[str, list[float]] = {h: [] for h in HOPS}
    since["worker side"] = []
    try:
        await app.enqueue("noop", {"t": time.time()})  # warm-up: the worker is up
        listen.settimeout(60)
        listen.recv(4096)
        listen.settimeout(15)
        await asyncio.sleep(1.0)
        pids = server_pids(url, application_name)
        cpu, began, served = cpu_seconds(pid), time.monotonic(), server_cpu(pids)
        for _ in range(n):
            await asyncio.sleep(rng.uniform(0, 0.02))
            start = time.time()
            await app.enqueue("noop", {"t": start})
            enqueued = time.time()
            got = json.loads(listen.recv(4096))
            got["enqueued"] = enqueued
            previous = start
            for hop in HOPS:
                if hop in got:
                    since[hop].append((got[hop] - start) * 1e3)
                    steps[hop].append((got[hop] - previous) * 1e3)
                    previous = got[hop]
            since["worker side"].append((got["handler"] - enqueued) * 1e3)
        cpu, began = cpu_seconds(pid) - cpu, time.monotonic() - began
        # Connections the worker opened during the run (its pool grows on demand) count
        # too, all of their CPU: they did not exist when the run began.
        opened = sorted(set(server_pids(url, application_name)) - set(pids))
        served = server_cpu(pids) + server_cpu(opened) - served
        since["worker CPU ms per pickup"] = [cpu / n * 1e3]
        since["worker CPU per wall second"] = [cpu / began]
        if pids:
            since["server CPU ms per pickup"] = [served / n * 1e3]
    finally:
        await app.close()
    return since, steps


async def migrate(url: str) -> None:
    """Create the fresh database's schema before the worker starts."""
    from taskflare import App

    app = App(url)
    await app.backend()
    await app.close()


def run(url: str, n: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Start the worker, measure `n` pickups, stop the worker."""
    asyncio.run(migrate(url))
    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.bind(("127.0.0.1", 0))
    listen.settimeout(15)
    # The worker's connections carry this name, so their server processes can be found.
    application_name = f"pickup-hops-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        # This script's folder, then the caller's path (PYTHONPATH=<other checkout>/src
        # runs the worker on that checkout, for an A/B).
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p
        ),
        "PGAPPNAME": application_name,
    }
    worker = subprocess.Popen(
        [sys.executable, __file__, "--worker", url, str(listen.getsockname()[1])], env=env
    )
    try:
        return asyncio.run(measure(url, n, listen, worker.pid, application_name))
    finally:
        worker.terminate()
        worker.wait(30)
        listen.close()


def fresh_url(backend: str, folder: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder}/hops.db"
    schema = "hops_" + uuid.uuid4().hex[:10]
    return f"{SERVER_URL}?schema={schema}"


def drop(url: str) -> None:
    if "schema=" in url:
        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="both", choices=("postgres", "sqlite", "both"))
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    backends = ("postgres", "sqlite") if args.backend == "both" else (args.backend,)
    for backend in backends:
        with tempfile.TemporaryDirectory() as folder:
            url = fresh_url(backend, folder)
            try:
                since, steps = run(url, args.n)
            finally:
                drop(url)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\n{backend}, {args.n} pickups, load {load}; ms since the enqueue call began")
        print(f"{'hop':<12} {'p50':>7} {'p95':>7} {'step p50':>9} {'step p95':>9} {'n':>5}")
        for hop in HOPS:
            values, step = since[hop], steps[hop]
            if values:
                print(
                    f"{hop:<12} {statistics.median(values):7.2f} {pct(values, 95):7.2f} "
                    f"{statistics.median(step):9.2f} {pct(step, 95):9.2f} {len(values):5d}"
                )
        side = since["worker side"]
        print(
            f"worker side (enqueue returned -> handler): p50 {statistics.median(side):.2f} ms, "
            f"p95 {pct(side, 95):.2f} ms"
        )
        print(
            f"worker CPU: {since['worker CPU ms per pickup'][0]:.2f} ms per pickup (idle time "
            f"between pickups included), {since['worker CPU per wall second'][0]:.3f} s/s"
        )
        if "server CPU ms per pickup" in since:
            print(
                "server CPU (the worker's PostgreSQL connections): "
                f"{since['server CPU ms per pickup'][0]:.2f} ms per pickup"
            )


if __name__ == "__main__":
    main()
