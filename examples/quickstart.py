"""The quick-start app: an email queue with a batched consumer, retries and a dead-letter queue.

Run it with `./scripts/dev` (or `taskflare dev examples/quickstart.py:app`): a worker
consumes the queue while `producer` below sends messages, and a live table shows what
happens. About one message in ten fails its first delivery and is retried; the body
"poison" always fails and ends in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import random

from taskflare import App, MessageBatch

app = App()  # $TASKFLARE_DATABASE_URL, else sqlite:///taskflare.db

emails = app.queue(
    "emails",
    max_batch_size=10,
    max_batch_timeout=1,
    max_retries=3,
    retry_delay=1,
    dead_letter_queue="emails-dlq",
)


@emails.consumer
async def deliver(batch: MessageBatch[dict[str, str]]) -> None:
    """Pretend to send each email; flaky on first delivery, hopeless for 'poison'."""
    for message in batch.messages:
        if message.body.get("to") == "poison":
            message.retry()
        elif message.attempts == 1 and random.random() < 0.1:
            message.retry(delay_seconds=min(2**message.attempts, 30))
        else:
            await asyncio.sleep(0.001)
            message.ack()


async def producer(app: App) -> None:
    """Send a steady trickle of messages, in batches and one by one."""
    n = 0
    await emails.send({"to": "poison", "subject": "never works"})
    while True:
        await emails.send_batch(
            [{"body": {"to": f"user{n + i}@example.com", "subject": "hi"}} for i in range(20)]
        )
        n += 20
        await emails.send({"to": f"late{n}@example.com"}, delay_seconds=2)
        await asyncio.sleep(0.5)
