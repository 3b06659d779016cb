"""Fixtures for tests that run real `taskflare worker` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskflare import App
from taskflare.backends.base import (
    MessageGetParams,
    MessageListParams,
    MessageRecord,
    QueueCountsParams,
)

from .procs import WorkerProcess, write_app


class Harness:
    """An app module on disk, the workers started from it, and a view of the database."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url
        self.spec = write_app(folder)
        self.env: dict[str, str] = {"TF_URL": url}
        self.workers: list[WorkerProcess] = []
        self.app = App(url)
        self.work = self.app.queue("work")

    def start_worker(self, *args: str, **env: str) -> WorkerProcess:
        """Start `taskflare worker` on the test app with extra TF_* settings."""
        worker = WorkerProcess(self.spec, self.folder, {**self.env, **env}, *args)
        self.workers.append(worker)
        return worker

    def get(self, message_id: str) -> MessageRecord | None:
        """The stored message, read through the backend protocol."""

        async def read() -> MessageRecord | None:
            return await (await self.app.backend()).message_get(MessageGetParams(message_id))

        return self.app.run_sync(read())

    def listed(self, queue: str, state: str | None = None) -> list[MessageRecord]:
        """Messages of `queue` (optionally in `state`)."""

        async def read() -> list[MessageRecord]:
            return await (await self.app.backend()).message_list(
                MessageListParams(queue, state, 100_000)
            )

        return self.app.run_sync(read())

    def counts(self, queue: str) -> dict[str, int]:
        """Messages of `queue` by state."""

        async def read() -> Any:
            return await (await self.app.backend()).queue_counts(QueueCountsParams(queue))

        rows = self.app.run_sync(read())
        return dict(rows[0].by_state) if rows else {}

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.app.close_sync()


@pytest.fixture
def harness(tmp_path: Path, sqlite_url: str) -> Iterator[Harness]:
    """A harness on a fresh SQLite file."""
    h = Harness(tmp_path, sqlite_url)
    yield h
    h.close()


@pytest.fixture
def any_harness(tmp_path: Path, database_url: str) -> Iterator[Harness]:
    """A harness on a fresh database of each backend."""
    h = Harness(tmp_path, database_url)
    yield h
    h.close()
