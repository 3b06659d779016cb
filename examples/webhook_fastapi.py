"""A webhook receiver: check the signature, store a job, answer 200 at once.

The pattern of seed 001 ("immediately acknowledge webhooks, process async"): the sender
gets its answer in milliseconds and never retries because processing was slow; the work
itself runs in a worker, is retried on failure, and runs once per event even when the
sender delivers the same event twice (the event id is the job's idempotency key).

Run it (two processes):

    WEBHOOK_SECRET=s3cret taskflare worker examples/webhook_fastapi.py:app
    WEBHOOK_SECRET=s3cret uvicorn --app-dir examples webhook_fastapi:api
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

from taskflare import App, JobContext, PermanentError

app = App()  # $TASKFLARE_DATABASE_URL, else sqlite:///taskflare.db
api = FastAPI()
SECRET = os.environ.get("WEBHOOK_SECRET", "dev-secret").encode()
LEDGER = os.environ.get("LEDGER_DB", "ledger.db")


def sign(body: bytes, secret: bytes = SECRET) -> str:
    """The signature a sender puts in `X-Signature`: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


class PaymentEvent(BaseModel):
    """The job's payload: what the handler needs, not the whole request."""

    event_id: str
    type: str
    amount_cents: int


@app.job("payment-event", queue="webhooks", max_attempts=5)
def record_payment(event: PaymentEvent, ctx: JobContext) -> str:
    """Apply the event to the ledger (a plain function: it runs in a worker thread)."""
    if event.amount_cents < 0:
        raise PermanentError(f"negative amount in {event.event_id}")  # no point retrying
    with sqlite3.connect(LEDGER, timeout=10) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS payments "
            "(event_id TEXT PRIMARY KEY, type TEXT, amount_cents INTEGER)"
        )
        db.execute(
            "INSERT OR IGNORE INTO payments VALUES (?, ?, ?)",
            (event.event_id, event.type, event.amount_cents),
        )
    return f"recorded {event.event_id}"


@api.post("/webhooks/payments")
async def payment_webhook(
    request: Request, x_signature: str = Header(default="")
) -> dict[str, Any]:
    body = await request.body()
    if not hmac.compare_digest(sign(body), x_signature):
        raise HTTPException(401, "bad signature")
    event = json.loads(body)
    job = await app.enqueue(
        "payment-event",
        {"event_id": event["id"], "type": event["type"], "amount_cents": event["amount"]},
        idempotency_key=f"payment-event:{event['id']}",  # a redelivered event is one job
    )
    return {"received": True, "job": job.id, "duplicate": job.duplicate}
