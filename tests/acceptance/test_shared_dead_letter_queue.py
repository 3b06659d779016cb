"""A dead-letter queue is an ordinary queue, so several queues may name the same one (as
Cloudflare allows). Replaying the dead letters *of a queue* sends back that queue's dead
letters only: another queue's poison messages stay where they are, whether the replay
comes from Python, HTTP or the command line."""

from __future__ import annotations

from typing import Any

from integration.cli_run import ok, one_line_error, tf
from taskflare import App, JobContext, MessageBatch, PermanentError
from taskflare.testing import drain

from .conftest import serve


def declare(app: App, delivered: list[tuple[str, Any]]) -> None:
    for name in ("a", "b"):
        q = app.queue(name, max_batch_timeout=0, max_retries=0, dead_letter_queue="shared-dlq")

        def make(queue_name: str) -> Any:
            async def consume(batch: MessageBatch[Any]) -> None:
                delivered.extend((queue_name, m.body) for m in batch.messages)
                raise RuntimeError(f"{queue_name} is broken")

            return consume

        q.consumer(make(name))

    app.queue("billing", max_retries=0, dead_letter_queue="shared-dlq")

    @app.job("charge", queue="billing", max_attempts=1)
    async def charge(payload: Any, ctx: JobContext) -> None:
        delivered.append(("charge", payload))
        raise PermanentError("card declined")


async def dead_letters(app: App) -> list[tuple[str | None, Any]]:
    stored = await app.get_queue("shared-dlq").list_messages(limit=100)
    return sorted((m.origin_queue, m.body) for m in stored)


async def fill(app: App) -> dict[str, str]:
    await app.get_queue("a").send("from-a")
    await app.get_queue("b").send("from-b")
    await app.enqueue("charge", {"order": 1})
    await drain(app)
    stored = await app.get_queue("shared-dlq").list_messages(limit=100)
    assert sorted((m.origin_queue, str(m.body)) for m in stored) == [
        ("a", "from-a"),
        ("b", "from-b"),
        ("billing", "{'order': 1}"),
    ]
    return {str(m.body): m.id for m in stored}


async def test_replaying_one_queues_dead_letters_leaves_the_others(app: App) -> None:
    delivered: list[tuple[str, Any]] = []
    declare(app, delivered)
    ids = await fill(app)

    assert await app.get_queue("a").replay_dead_letters() == 1
    assert await dead_letters(app) == [("b", "from-b"), ("billing", {"order": 1})]
    delivered.clear()
    await drain(app)
    assert delivered == [("a", "from-a")]

    # A job queue sharing the dead-letter queue: its job comes back, nothing else.
    assert await app.get_queue("billing").replay_dead_letters() == 1
    delivered.clear()
    await drain(app)
    assert delivered == [("charge", {"order": 1})]

    # By id: b's dead letter is not one of a's.
    assert await app.get_queue("a").replay_dead_letters([ids["from-b"]]) == 0
    assert await app.get_queue("b").replay_dead_letters([ids["from-b"]]) == 1
    delivered.clear()
    await drain(app)
    assert delivered == [("b", "from-b")]


def test_http_reprocess_of_a_queue_touches_only_its_dead_letters(database_url: str) -> None:
    worker_app = App(database_url)
    delivered: list[tuple[str, Any]] = []
    declare(worker_app, delivered)
    ids = worker_app.run_sync(fill(worker_app))

    served = App(database_url)
    declare(served, [])
    with serve(served) as client:
        refused = client.post("/queues/a/dlq/reprocess", json={"ids": [ids["from-b"]]})
        assert refused.status_code == 404, refused.text
        assert refused.json()["code"] == "not_found" and ids["from-b"] in refused.json()["error"]
        answer = client.post("/queues/a/dlq/reprocess")
        assert answer.status_code == 200, answer.text
        assert answer.json()["reprocessed"] == 1
    assert worker_app.run_sync(dead_letters(worker_app)) == [
        ("b", "from-b"),
        ("billing", {"order": 1}),
    ]
    worker_app.close_sync()


def test_cli_reprocess_of_a_queue_touches_only_its_dead_letters(database_url: str) -> None:
    app = App(database_url)
    declare(app, [])
    ids = app.run_sync(fill(app))
    app.run_sync(app.backend())  # the queues' settings are stored: the CLI knows them
    error = one_line_error(tf("dlq", "reprocess", "a", "--id", ids["from-b"], url=database_url))
    assert ids["from-b"] in error
    assert "reprocessed 1 messages" in ok("dlq", "reprocess", "a", url=database_url)
    assert app.run_sync(dead_letters(app)) == [("b", "from-b"), ("billing", {"order": 1})]
    app.close_sync()
