"""Backend lifecycle: migrating a fresh database, closing."""

from __future__ import annotations

from taskflare.backends import Backend
from taskflare.backends.base import State

from .conftest import claim_one, enqueue, message, record


async def test_migrate_applies_every_migration_once_in_order(backend: Backend) -> None:
    applied = await backend.migrate()
    assert applied and applied[0] == 1 and applied == sorted(set(applied))
    assert await backend.migrate() == []
    sent = message("q")
    await enqueue(backend, sent)
    assert (await claim_one(backend, "q")).id == sent.id
    assert (await record(backend, sent.id)).state == State.LEASED


async def test_a_fresh_database_is_migrated_on_first_use(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    assert await backend.migrate() == []


async def test_close_is_safe_twice(backend: Backend) -> None:
    await enqueue(backend, message("q"))
    await backend.close()
    await backend.close()
