"""An App declared from a wrangler file runs its consumers and cron triggers (both backends)."""

from __future__ import annotations

from pathlib import Path

from taskflare import App, MessageBatch, ScheduledEvent
from taskflare.testing import drain

FILES = Path(__file__).resolve().parents[1] / "fixtures" / "wrangler"


async def test_queues_from_a_wrangler_file_take_their_settings_and_consumers_by_name(
    app: App,
) -> None:
    config = app.use_wrangler(str(FILES / "external-api.toml"))
    queue = app.get_queue("external-api-queue")
    assert (queue.config.max_batch_size, queue.config.max_batch_timeout) == (10, 30)
    assert queue.config.dead_letter_queue == "external-api-dlq"
    assert app.get_queue("pull-queue").config.visibility_timeout == 5.0
    seen: list[int] = []

    @queue.consumer
    async def call_api(batch: MessageBatch[dict[str, int]]) -> None:
        seen.extend(m.body["n"] for m in batch.messages)

    await queue.send_batch([{"body": {"n": n}} for n in range(3)])
    await drain(app, ["external-api-queue"])
    assert sorted(seen) == [0, 1, 2]
    assert {q.name for q in config.queues} == set(app.queues)


async def test_cron_triggers_from_a_wrangler_file_run_one_handler_told_which(app: App) -> None:
    ran: list[str] = []

    async def scheduled(event: ScheduledEvent) -> None:
        ran.append(event.cron)

    app.use_wrangler(str(FILES / "cleanup.jsonc"), scheduled=scheduled)
    triggers = app.cron_triggers
    assert sorted(t.schedule.expression for t in triggers.values()) == sorted(
        ["0 0 * * *", "0 */6 * * *", "0 9 * * 1"]
    )
    name = next(n for n, t in triggers.items() if t.schedule.expression == "0 9 * * 1")
    await app.jobs.fire_cron(name)
    await drain(app)
    assert ran == ["0 9 * * 1"]
