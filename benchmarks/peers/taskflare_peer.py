"""taskflare through its public API, `$PB_VARIANT` jobs (`app.enqueue`, one handler call per
job) or messages (`queue.send`, a batch consumer), on the backend its URL names."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from peers import hits
from taskflare import App, MessageBatch

VARIANT = os.environ.get("PB_VARIANT", "jobs")
URL = os.environ["PB_DATABASE_URL"]
NAME = f"taskflare ({VARIANT})"
BACKEND = "sqlite" if URL.startswith("sqlite") else "postgres"
if VARIANT == "jobs":
    BULK_API = "App.enqueue_many (default chunk_size: 5000 on PostgreSQL)"
    CONFIG = "`@app.job` no-op on its default queue, `taskflare worker` with defaults"
else:
    BULK_API = "Queue.send_batch (100 a call)"
    CONFIG = (
        "queue max_batch_size=100, max_batch_timeout=0, no-op batch consumer,"
        " `taskflare worker` with defaults"
    )

app = App(URL)
queue = None
if VARIANT == "jobs":

    @app.job("noop")
    async def noop(payload: dict[str, Any]) -> None:
        hits.hit(payload["t"])

else:
    queue = app.queue("noop", max_batch_size=100, max_batch_timeout=0)

    @queue.consumer
    async def consume(batch: MessageBatch) -> None:
        for message in batch.messages:
            hits.hit(message.body["t"])


if os.environ.get("PB_TASKFLARE_WORKER") == "1":
    hits.start_reporter()  # inside the `taskflare worker` process


async def setup() -> None:
    await app.backend()  # migrates the fresh database, declares the queue


async def open() -> None:
    await app.backend()


async def enqueue(t: float) -> None:
    if queue is None:
        await app.enqueue("noop", {"t": t})
    else:
        await queue.send({"t": t})


async def bulk(ts: list[float]) -> None:
    if queue is None:
        await app.enqueue_many("noop", [{"t": t} for t in ts])
    else:
        for first in range(0, len(ts), 100):
            await queue.send_batch([{"body": {"t": t}} for t in ts[first : first + 100]])


async def close() -> None:
    await app.close()


def worker_main() -> None:
    """Become `taskflare worker peers.taskflare_peer:app` of this interpreter's environment."""
    exe = str(Path(sys.executable).with_name("taskflare"))
    os.environ["PB_TASKFLARE_WORKER"] = "1"
    os.execv(exe, [exe, "worker", "peers.taskflare_peer:app", "--log-level", "WARNING"])
