"""A small app with something on every dashboard page (used for the docs' screenshots).

    TASKFLARE_DATABASE_URL=sqlite:///demo.db python examples/dashboard_demo.py   # fill it
    taskflare dev examples/dashboard_demo.py:app                                 # look

`fill()` stores finished, failed, delayed and scheduled jobs, a batch, messages and dead
letters; `taskflare dev` (or `serve` plus a `worker`) then shows them.
"""

import asyncio
import random

from taskflare import App, JobContext, MessageBatch, PermanentError

app = App()
emails = app.queue("emails", max_batch_timeout=0, max_retries=1, dead_letter_queue="emails-dlq")
app.queue("emails-dlq")


@emails.consumer
async def send_emails(batch: MessageBatch) -> None:
    for message in batch.messages:
        body = message.body if isinstance(message.body, dict) else {}
        await asyncio.sleep(random.uniform(0.005, 0.05))
        if body.get("bounce"):
            message.retry()
        else:
            message.ack()


@app.job("render-invoice", queue="invoices", max_attempts=2)
async def render_invoice(payload: dict, ctx: JobContext) -> dict:
    for step in range(4):
        await asyncio.sleep(random.uniform(0.01, 0.1))
        await ctx.progress((step + 1) / 4, f"page {step + 1} of 4")
    if payload.get("customer", "").startswith("ACME"):
        raise PermanentError(f"customer {payload['customer']} has no billing address")
    return {"pdf": f"invoices/{payload['invoice']}.pdf", "pages": 4}


@app.job("sync-crm", queue="crm", max_attempts=3)
async def sync_crm(payload: dict) -> dict:
    await asyncio.sleep(random.uniform(0.01, 0.2))
    return {"synced": payload.get("contacts", 0)}


@app.cron("0 0 * * *", name="nightly-cleanup", queue="crm")
async def nightly_cleanup(event: object) -> None:
    await asyncio.sleep(0.05)


@app.cron("*/15 9-17 * * 1-5", name="office-hours-sync", tz="Europe/Paris", queue="crm")
async def office_hours_sync(event: object) -> None:
    await asyncio.sleep(0.02)


async def fill(count: int = 60) -> None:
    """Store a mix of work for the dashboard to show."""
    customers = ["Globex", "Initech", "ACME Corp", "Umbrella", "Hooli"]
    for n in range(count):
        customer = customers[n % len(customers)]
        await app.enqueue(
            "render-invoice",
            {"invoice": f"INV-{1000 + n}", "customer": customer, "lines": n % 7 + 1},
            correlation_id=f"order-{5000 + n}",
        )
    await app.enqueue_many("sync-crm", [{"contacts": n * 10} for n in range(25)])
    await app.enqueue("sync-crm", {"contacts": 5}, delay_seconds=3600)
    for n in range(20):
        await emails.send({"to": f"user{n}@example.com", "bounce": n % 6 == 0})
    await emails.send("a plain-text body", content_type="text")


async def producer(app_: App) -> None:
    """`taskflare dev`'s producer: a trickle of new work."""
    n = 0
    while True:
        n += 1
        await app_.enqueue("sync-crm", {"contacts": n})
        await emails.send({"to": f"live{n}@example.com", "bounce": n % 9 == 0})
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(fill())
    app.close_sync()
