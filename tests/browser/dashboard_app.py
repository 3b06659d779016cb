"""The app the dashboard's browser tests serve (`taskflare serve`) and run (`taskflare
worker`), each in its own process, on one database ($TF_URL). Behaviour is chosen by the
payload or message body; $TF_FLAG names a file whose presence makes `flaky` jobs fail."""

import asyncio
import os

from taskflare import App, MessageBatch, PermanentError

app = App(os.environ["TF_URL"])
FLAG = os.environ.get("TF_FLAG", "/nonexistent")


def flag_up() -> bool:
    """Whether the test's flag file exists (failures are switched on by it)."""
    return os.path.exists(FLAG)


emails = app.queue(
    "emails", max_batch_timeout=0, max_retries=0, dead_letter_queue="emails-dlq", max_batch_size=5
)
app.queue("emails-dlq", max_batch_timeout=0)


@emails.consumer
async def send_emails(batch: MessageBatch) -> None:
    for message in batch.messages:
        body = message.body if isinstance(message.body, dict) else {}
        if body.get("sleep"):
            await asyncio.sleep(float(body["sleep"]))
        if body.get("fail") or (body.get("fail_while_flag") and flag_up()):
            message.retry()
        else:
            message.ack()


@app.job("report", queue="reports", max_attempts=1)
async def report(payload: dict) -> dict:
    if payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    if payload.get("flaky") and flag_up():
        raise PermanentError(f"the flag file is there: {payload.get('note', '')}")
    return {"rows": payload.get("rows", 0), "note": payload.get("note")}


@app.cron("0 0 * * *", name="nightly", queue="reports")
async def nightly(event: object) -> None:
    return None
