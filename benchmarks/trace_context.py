"""What the trace context column costs on the hot path (docs/tracing.md), on both backends.

1. Claim: the claim statement as shipped (it returns `trace_context`, NULL for untraced
   messages) against the same statement without that column (the statement before
   tracing existed), side by side in one database: 10 000 ready messages claimed 100 at
   a time, then made ready again; rounds alternate (ABBA) so drift hits both alike.
2. Send: `send` (one message) and `send_batch` (100) with the app not instrumented and
   instrumented (an SDK tracer provider without exporter: the span and the stored context
   are paid, the export is not).

Usage: .venv/bin/python benchmarks/trace_context.py [--rounds 4] [--out FILE.md]
(PostgreSQL: $TASKFLARE_BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/test).
Nothing asserts on time; compare the ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from taskflare import App
from taskflare.backends.sqlite import backend as sqlite_backend

MESSAGES = 10_000
BATCH = 100
SENDS = 1_000
PG_URL = os.environ.get("TASKFLARE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _without_column(text: str, postgres: bool) -> str:
    """The shipped claim statement as it was before it returned `trace_context`."""
    if not postgres:
        old = text.replace("correlation_id, trace_context;", "correlation_id;")
    else:
        old = text.replace(", m.trace_context", "").replace(
            "correlation_id, trace_context,", "correlation_id,"
        )
        old = old.replace(
            "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,",
            "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,",
        )
    assert old != text and "trace_context" not in old
    return old


def _register(app_backend: Any, postgres: bool) -> None:
    """Add the statements the benchmark runs next to the backend's own."""
    if postgres:
        sql = app_backend._db.sql
        sql["claim_before"] = _without_column(sql["message_claim_many"], True)
        sql["bench_reset"] = (
            f"UPDATE \"{app_backend.schema}\".messages SET state = 'ready', lease_id = NULL, "
            "lease_owner = NULL, lease_expires_at = NULL, attempts = 0 "
            "WHERE queue = %(queue)s RETURNING 1"
        )
        return
    statements = sqlite_backend._STATEMENTS
    shipped = statements["message_claim_many"].text
    statements.update(
        sqlite_backend._compile(
            {
                "claim_before": _without_column(shipped, False),
                "bench_reset": "UPDATE messages SET state = 'ready', lease_id = NULL, "
                "lease_owner = NULL, lease_expires_at = NULL, attempts = 0 "
                "WHERE queue = :queue RETURNING 1",
            }
        )
    )


async def _drain_claims(app: App, statement: str, postgres: bool) -> tuple[float, float, int]:
    """Claim every ready message 100 at a time with `statement`; (wall seconds, this
    process's CPU seconds, claims)."""
    backend: Any = await app.backend()
    args = {
        "queue": "q",
        "limit": BATCH,
        "lease_id": uuid.uuid4().hex,
        "owner": "bench",
        "visibility_timeout": 300.0,
        "min_count": 1,
        "max_wait": 0.0,
        "types": None,
    }
    claims = 0
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        if postgres:
            rows = await backend._db.fetch(statement, args)
            got = bool(rows.rows) and rows.rows[0][0] is not None
        else:
            rows = await backend._db.fetch(statement, args, durable=False)
            got = bool(rows.rows)
        if not got:
            break
        claims += 1
    return time.perf_counter() - started, time.process_time() - cpu, claims


async def _claim_rounds(url: str, postgres: bool, rounds: int) -> dict[str, list[float]]:
    app = App(url)
    queue = app.queue("q")
    for _ in range(MESSAGES // BATCH):
        await queue.send_batch([{"body": {"n": n, "pad": "x" * 60}} for n in range(BATCH)])
    backend: Any = await app.backend()
    _register(backend, postgres)
    per_claim: dict[str, list[float]] = {}
    order = ["claim_before", "message_claim_many"]
    await _drain_claims(app, "message_claim_many", postgres)  # warm-up
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            await backend._db.fetch("bench_reset", {"queue": "q"})
            seconds, cpu, claims = await _drain_claims(app, name, postgres)
            assert claims == MESSAGES // BATCH, claims
            per_claim.setdefault(name, []).append(seconds / claims * 1e6)
            per_claim.setdefault(f"{name} cpu", []).append(cpu / claims * 1e6)
    await app.close()
    return per_claim


async def _send_rounds(url: str, rounds: int) -> dict[str, list[float]]:
    from opentelemetry.sdk.trace import TracerProvider

    from taskflare.otel import TaskflareInstrumentor

    app = App(url)
    queue = app.queue("s")
    await queue.send(0)  # opens the database
    out: dict[str, list[float]] = {}
    for r in range(rounds):
        for traced in (False, True) if r % 2 == 0 else (True, False):
            if traced:
                TaskflareInstrumentor().instrument(app=app, tracer_provider=TracerProvider())
            key = "traced" if traced else "untraced"
            started, cpu = time.perf_counter(), time.process_time()
            for n in range(SENDS):
                await queue.send({"n": n})
            out.setdefault(f"send {key}", []).append((time.perf_counter() - started) / SENDS * 1e6)
            out.setdefault(f"send {key} cpu", []).append((time.process_time() - cpu) / SENDS * 1e6)
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(SENDS // BATCH):
                await queue.send_batch([{"body": {"n": n}} for n in range(BATCH)])
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            out.setdefault(f"send_batch {key}", []).append(wall / SENDS * 1e6)
            out.setdefault(f"send_batch {key} cpu", []).append(cpu / SENDS * 1e6)
            TaskflareInstrumentor().uninstrument(app=app)
    await app.close()
    return out


def _pair(figures: dict[str, list[float]], without: str, with_: str) -> str:
    cells = []
    for suffix in ("", " cpu"):
        off = statistics.median(figures[without + suffix])
        on = statistics.median(figures[with_ + suffix])
        cells.append(f"{off:.0f} | {on:.0f} | {on / off:.2f}")
    return " | ".join(cells) + " |"


def _pg_url() -> str:
    schema = f"tf_bench_{uuid.uuid4().hex[:10]}"
    return f"{PG_URL}?schema={schema}"


def _drop(url: str) -> None:
    schema = url.split("schema=")[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def main(rounds: int) -> str:
    lines = [
        "# The trace context column on the hot path",
        "",
        f"`benchmarks/trace_context.py --rounds {rounds}`; load average at start "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. Medians of the rounds, in µs: "
        "wall time, and the CPU time of this process (the client; on SQLite the database's "
        "work too, PostgreSQL's server CPU is not in it).",
        "",
        "| backend | figure | without: wall | with: wall | ratio | without: CPU | with: CPU "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("sqlite", "postgres"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}" if name == "sqlite" else _pg_url()
            try:
                claims = await _claim_rounds(url, name == "postgres", rounds)
            finally:
                if name == "postgres":
                    _drop(url)
            url = f"sqlite:///{Path(folder) / 'send.db'}" if name == "sqlite" else _pg_url()
            try:
                sends = await _send_rounds(url, rounds)
            finally:
                if name == "postgres":
                    _drop(url)
        lines.append(
            f"| {name} | claim of 100 (trace_context not returned / returned, all NULL) | "
            + _pair(claims, "claim_before", "message_claim_many")
        )
        for figure in ("send", "send_batch"):
            unit = "per message" if figure == "send_batch" else "per call"
            lines.append(
                f"| {name} | `{figure}` {unit} (not instrumented / instrumented) | "
                + _pair(sends, f"{figure} untraced", f"{figure} traced")
            )
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    options = argparse.ArgumentParser()
    options.add_argument("--rounds", type=int, default=4)
    options.add_argument("--out")
    parsed = options.parse_args()
    report = asyncio.run(main(parsed.rounds))
    if parsed.out:
        Path(parsed.out).write_text(report)
