"""The six built-in job types in one app, run against local stand-ins (no internet needed):

    python examples/job_types.py

starts a local SMTP server, webhook receiver, website and OpenAI-compatible API
(examples/local_services.py), points the job types at them through the same
`TASKFLARE_*` variables you would set in production, enqueues one job of each type
(the payloads of the Queue Service), runs a worker until they are done and prints what
happened. Imports go into your own SQLite table through a sink; crawled pages and
embeddings go into taskflare's document store.

In production: `taskflare worker examples/job_types.py:app` with the variables set.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from taskflare import App, JobStatus, Worker, WorkerConfig, contrib

sys.path.insert(0, str(Path(__file__).resolve().parent))

import local_services

db = sqlite3.connect(os.environ.get("EXAMPLE_SHOP_DB", "shop.db"))
db.execute("CREATE TABLE IF NOT EXISTS products (sku TEXT PRIMARY KEY, name TEXT, price REAL)")


async def products_table(namespace: str, records: list[tuple[str, Any]]) -> None:
    """A sink: batch-import writes into this table instead of the document store."""
    with db:
        db.executemany(
            "INSERT INTO products (sku, name, price) VALUES (?, ?, ?) "
            "ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price = excluded.price",
            [(key, item["name"], item["price"]) for key, item in records],
        )


app = App()
app.use(
    contrib.email(),
    contrib.webhooks(),
    contrib.crawler(),
    contrib.imports(sink=products_table),
    contrib.embeddings(),
    contrib.content(),
)


def jobs(webhook_url: str, site_url: str) -> list[tuple[str, dict[str, Any]]]:
    """One job of each type, in the Queue Service's payload shapes."""
    return [
        (
            "send-email",
            {"to": "user@example.com", "subject": "Welcome!", "body": "Welcome to our service..."},
        ),
        ("generate-embedding", {"text": "Text to embed", "model": "@cf/baai/bge-base-en-v1.5"}),
        ("crawl-website", {"url": f"{site_url}/page/0", "maxPages": 20}),
        (
            "generate-content",
            {"prompt": "Write a blog post about queues", "model": "@cf/meta/llama-3.1-8b-instruct"},
        ),
        (
            "batch-import",
            {
                "items": [
                    {"sku": "a-1", "name": "Lamp", "price": 12.5},
                    {"sku": "a-2", "name": "Desk", "price": 99},
                ],
                "namespace": "products",
                "key": "sku",
            },
        ),
        (
            "webhook-delivery",
            {"url": webhook_url, "method": "POST", "body": {"event": "order.created", "id": 42}},
        ),
    ]


async def run_all(webhook_url: str, site_url: str) -> None:
    """Enqueue one job of each type, run a worker until they (and the crawl) are done."""
    enqueued = [await app.enqueue(t, payload) for t, payload in jobs(webhook_url, site_url)]
    worker = Worker(app, WorkerConfig(concurrency=20))
    running = asyncio.create_task(worker.run())
    try:
        for job in enqueued:
            done = await app.jobs.wait_finished(job.id, timeout=60)
            print(f"{job.type}: {done.status.value} {summary(job.type, done.result)}")
            if done.status is not JobStatus.COMPLETED:
                print(f"  error: {done.error}")
        crawl = next(j for j in enqueued if j.type == "crawl-website")
        for _ in range(600):
            batch = await app.get_batch(crawl.id)
            if batch is not None and batch.total and not (batch.pending or batch.processing):
                break
            await asyncio.sleep(0.1)
        print(f"crawl: {batch.completed} of {batch.total} pages stored" if batch else "no crawl")
        print("products table:", db.execute("SELECT * FROM products ORDER BY sku").fetchall())
    finally:
        worker.stop()
        await running
        await app.close()


def summary(type: str, result: Any) -> str:
    """The part of a result worth printing."""
    if not isinstance(result, dict):
        return ""
    keys = {
        "send-email": ("messageId", "accepted"),
        "generate-embedding": ("model", "dimensions"),
        "crawl-website": ("batchId", "seeded"),
        "generate-content": ("text", "finishReason"),
        "batch-import": ("imported", "invalidCount"),
        "webhook-delivery": ("status", "webhookId"),
    }[type]
    return " ".join(f"{k}={result.get(k)!r}" for k in keys)


def main() -> None:
    """Start the local stand-ins, point the job types at them, run one job of each."""
    ai_calls = local_services.AiCalls(api_key=local_services.AI_API_KEY)
    with (
        local_services.smtp_server() as (smtp_url, inbox),
        local_services.serve(local_services.webhook_receiver(local_services.Received())) as hooks,
        local_services.serve(local_services.demo_site(slow_seconds=0.2)) as site,
        local_services.serve(local_services.openai_compatible(ai_calls)) as ai,
    ):
        os.environ.update(local_services.environment(smtp_url, hooks, site, ai))
        asyncio.run(run_all(f"{hooks}/ok", site))
        print(f"emails received by the local SMTP server: {len(inbox.messages)}")


if __name__ == "__main__":
    main()
