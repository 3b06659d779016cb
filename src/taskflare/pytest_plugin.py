"""pytest fixtures for apps built on taskflare; opt in from a `conftest.py`:

    pytest_plugins = ["taskflare.pytest_plugin"]

`taskflare_database_url` is a throwaway database per test: a SQLite file in the test's
temporary folder, or, when `TASKFLARE_TEST_DATABASE_URL` names a PostgreSQL database, a
new schema there (dropped after the test). `taskflare_app` is an `App` on it;
`taskflare_drain` runs its consumers until nothing is ready; `taskflare_clock` freezes
the clock (SQLite) so delays can be stepped over.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import pytest

from .app import App
from .testing import DrainResult, drain

TEST_DATABASE_ENV = "TASKFLARE_TEST_DATABASE_URL"


@pytest.fixture
def taskflare_database_url(tmp_path: object) -> Iterator[str]:
    """A database no other test sees: SQLite in `tmp_path`, or a fresh PostgreSQL schema
    of `$TASKFLARE_TEST_DATABASE_URL` (dropped afterwards)."""
    base = os.environ.get(TEST_DATABASE_ENV, "")
    if not base.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{tmp_path}/taskflare-test.db"
        return
    import psycopg

    schema = f"tf_test_{uuid.uuid4().hex[:12]}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    with psycopg.connect(base.partition("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def taskflare_app(taskflare_database_url: str) -> Iterator[App]:
    """An `App` on the throwaway database (declare queues and jobs on it in the test, or
    build your own app from `taskflare_database_url`); closed after the test."""
    app = App(taskflare_database_url)
    yield app
    app.close_sync()


@pytest.fixture
def taskflare_drain(taskflare_app: App) -> Callable[..., Awaitable[DrainResult]]:
    """`await taskflare_drain()` (or `taskflare_drain(["emails"])`): `drain(taskflare_app)`."""
    return functools.partial(drain, taskflare_app)


class FrozenClock:
    """The wall clock (`time.time()`), stopped at `start` until moved with `advance`."""

    def __init__(self, start: float) -> None:
        self.seconds = start

    @property
    def now(self) -> datetime:
        """The frozen time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.seconds, UTC)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (delays and `run_at` come due; cron ticks pass)."""
        self.seconds += seconds

    def time(self) -> float:
        """What `time.time()` answers while frozen."""
        return self.seconds


@pytest.fixture
def taskflare_clock(
    monkeypatch: pytest.MonkeyPatch, taskflare_database_url: str
) -> Iterator[FrozenClock]:
    """Freeze `time.time()` at the real time now; `clock.advance(600)` makes a message
    sent with `delay_seconds=600` ready for `drain`. SQLite only: PostgreSQL reads its
    own clock (the test is skipped there)."""
    if not taskflare_database_url.startswith("sqlite"):
        pytest.skip("taskflare_clock needs SQLite: PostgreSQL reads its own clock")
    clock = FrozenClock(time.time())
    monkeypatch.setattr(time, "time", clock.time)
    yield clock
