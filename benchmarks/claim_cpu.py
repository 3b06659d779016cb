"""CPU of a PostgreSQL worker's claims: per claim of one job, and per idle pickup.

    python benchmarks/claim_cpu.py [--claims 1800] [--pickups 1500]

Two measures, in one process on a fresh schema, calling the backend as a worker does:

    claim     `--claims` jobs are stored, then claimed one a claim, each claim expecting
              work (`describe_empty=False`: a woken worker's claim)
    pickup    `--pickups` times: one job is enqueued, then claimed as a woken worker does,
              then what the worker sends next: the claim alone and, when it takes
              nothing, `queue_ready_info` (this checkout), or one claim that describes
              the empty queue (`--describing`, what the worker sent before)

and prints the process's CPU (client) and that of the server processes of its
connections, per claim or per pickup (the pickup's server figure includes the enqueue's
statement). To compare two checkouts, run it with `PYTHONPATH=<other checkout>/src`
alternately. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from taskflare import App
from taskflare.backends.base import ClaimParams, ReadyInfoParams
from taskflare.ids import uuid7

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far [s] (a gone one: 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(tag: str) -> list[int]:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (tag,)
        ).fetchall()
    return [row[0] for row in rows]


async def measure(which: str, count: int, describing: bool) -> tuple[float, float]:
    """Client and server CPU [ms] per claim (`claim`) or per pickup (`pickup`)."""
    schema = f"claimcpu_{uuid.uuid4().hex[:10]}"
    tag = f"tf_{schema}"
    app = App(f"{SERVER_URL}?schema={schema}&application_name={tag}")
    app.job("noop")(lambda payload: None)
    try:
        backend = await app.backend()
        queue = app.registry.job_types["noop"].queue

        def params(limit: int, describe: bool = False) -> ClaimParams:
            return ClaimParams(
                queue, limit, uuid7(), "w", 30.0, types=("noop",), describe_empty=describe
            )

        async def pickup() -> float:
            await app.enqueue("noop", {})
            began = time.process_time()
            assert len((await backend.message_claim_many(params(10))).messages) == 1
            if describing:
                assert (await backend.message_claim_many(params(10, True))).ready is not None
            else:
                assert not (await backend.message_claim_many(params(10))).messages
                await backend.queue_ready_info(ReadyInfoParams(queue, 10, ("noop",)))
            return time.process_time() - began

        warm = 30
        if which == "claim":
            await app.enqueue_many("noop", [{}] * (count + warm))
            for _ in range(warm):
                await backend.message_claim_many(params(1))
        else:
            for _ in range(warm):
                await pickup()
        pids = server_pids(tag)
        served, client = sum(map(cpu_seconds, pids)), 0.0
        for _ in range(count):
            if which == "claim":
                began = time.process_time()
                assert len((await backend.message_claim_many(params(1))).messages) == 1
                client += time.process_time() - began
            else:
                client += await pickup()
        served = sum(map(cpu_seconds, pids)) - served
    finally:
        await app.close()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
    return client / count * 1e3, served / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, default=1800)
    parser.add_argument("--pickups", type=int, default=1500)
    parser.add_argument("--describing", action="store_true")
    args: Any = parser.parse_args()
    for which, count in (("claim", args.claims), ("pickup", args.pickups)):
        client, server = asyncio.run(measure(which, count, args.describing))
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        unit = "claim" if which == "claim" else "pickup"
        print(
            f"{which}: client {client:.3f} ms, server {server:.3f} ms per {unit} "
            f"({count} {unit}s, load {load})"
        )


if __name__ == "__main__":
    main()
