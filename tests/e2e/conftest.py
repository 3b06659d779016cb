"""Fixtures: a real uvicorn server on 127.0.0.1 serving the test app (see `server.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import LiveServer, live_server


@pytest.fixture
def live(database_url: str) -> Iterator[LiveServer]:
    """The server on a fresh database of each backend."""
    with live_server(database_url) as server:
        yield server


@pytest.fixture
def sqlite_live(sqlite_url: str) -> Iterator[LiveServer]:
    """The server on a fresh SQLite file (for endpoints that are not about the backend)."""
    with live_server(sqlite_url) as server:
        yield server
