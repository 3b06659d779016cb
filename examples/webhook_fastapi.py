"""A webhook receiver: check the signature, store a job, answer 200 at once.

Acknowledge a webhook at once, process it in the background: the sender gets its answer
in milliseconds and never retries because processing was slow; the work itself runs in a
worker, is retried on failure, and runs once per event even when the sender delivers the
same event twice (the signed event id is the job's idempotency key).

`app.webhook(...)` does the checking: `POST /webhooks/payments` of the FastAPI app that
`create_api(app)` builds verifies the `Stripe-Signature` header (HMAC-SHA256 of
`"<t>.<body>"`, refused after 5 minutes), answers 400/401 to anything else, and enqueues
the event as a `payment-event` job. No signature code of our own.

Run it (two processes):

    WEBHOOK_SECRET=s3cret taskflare worker examples/webhook_fastapi.py:app
    WEBHOOK_SECRET=s3cret TASKFLARE_API_TOKEN=admin-s3cret \
        uvicorn --app-dir examples webhook_fastapi:api

(`TASKFLARE_API_TOKEN` guards the other endpoints, /jobs, /queues and /metrics; webhooks
authenticate with their signature.) Send a signed event as the provider would:

    BODY='{"id": "evt_1", "type": "payment.succeeded", "amount": 1250}'
    T=$(date +%s)
    SIG=$(printf '%s' "$T.$BODY" | openssl dgst -sha256 -hmac s3cret | sed 's/^.* //')
    curl -s localhost:8000/webhooks/payments -H "Stripe-Signature: t=$T,v1=$SIG" -d "$BODY"
"""

from __future__ import annotations

import os
import sqlite3

from pydantic import BaseModel

from taskflare import App, JobContext, PermanentError
from taskflare.web import create_api

app = App()  # $TASKFLARE_DATABASE_URL, else sqlite:///taskflare.db
LEDGER = os.environ.get("LEDGER_DB", "ledger.db")


class PaymentEvent(BaseModel):
    """The fields of the provider's event the handler needs (the others are ignored)."""

    id: str
    type: str
    amount: int


@app.job("payment-event", queue="webhooks", max_attempts=5)
def record_payment(event: PaymentEvent, ctx: JobContext) -> str:
    """Apply the event to the ledger (a plain function: it runs in a worker thread)."""
    if event.amount < 0:
        raise PermanentError(f"negative amount in {event.id}")  # no point retrying
    with sqlite3.connect(LEDGER, timeout=10) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS payments "
            "(event_id TEXT PRIMARY KEY, type TEXT, amount_cents INTEGER)"
        )
        db.execute(
            "INSERT OR IGNORE INTO payments VALUES (?, ?, ?)",
            (event.id, event.type, event.amount),
        )
    return f"recorded {event.id}"


app.webhook(
    "payments",
    secret=os.environ.get("WEBHOOK_SECRET", "dev-secret"),
    job_type="payment-event",
    scheme="stripe",
)
api = create_api(app)  # the HTTP API, with POST /webhooks/payments
