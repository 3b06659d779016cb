"""Shared fixtures: a fresh database per test, on every backend the contract suite covers.

PostgreSQL tests need a server (default postgresql://postgres@127.0.0.1:5432/test, or
$TASKFLARE_TEST_DATABASE_URL, the variable the pytest plugin reads; the old name
$TASKFLARE_TEST_POSTGRES_URL still works). Without one they are skipped loudly; with
TASKFLARE_REQUIRE_POSTGRES=1 (set by .ci/run) a missing server is a failure instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from taskflare import App

# Hypothesis's per-example deadline (200 ms) is a timed assertion: on a loaded machine it
# fails examples that are merely slow. Properties are judged on their outcome only.
hypothesis_settings.register_profile("taskflare", deadline=None)
hypothesis_settings.load_profile("taskflare")

# `PYTHONPATH=src pytest ...` (a worktree's own code): a relative entry means another
# folder to a subprocess started elsewhere (a CLI run in tmp_path, a docs block), which
# then imports the installed taskflare instead, silently. Absolute, it is this code.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(entry) if entry else entry
        for entry in os.environ["PYTHONPATH"].split(os.pathsep)
    )

PG_URL = (
    os.environ.get("TASKFLARE_TEST_DATABASE_URL")
    or os.environ.get("TASKFLARE_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("TASKFLARE_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgres"]


def _postgres_unavailable() -> str | None:
    try:
        import taskflare.backends.postgres.backend  # noqa: F401
    except ImportError as exc:
        return f"the PostgreSQL backend is not built yet ({exc})"
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            pass
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL} ({exc})"
    return None


_PG_REASON: list[str | None] = []


def postgres_skip_reason() -> str | None:
    """Why PostgreSQL tests cannot run here (cached), or None."""
    if not _PG_REASON:
        _PG_REASON.append(_postgres_unavailable())
    return _PG_REASON[0]


def pytest_report_header(config: pytest.Config) -> str:
    reason = postgres_skip_reason()
    if reason is None:
        return f"taskflare: PostgreSQL tests run against {PG_URL}"
    return f"taskflare: !!! skipped: no PostgreSQL: {reason} !!!"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL for a new SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'taskflare.db'}"


def _fresh_postgres_url() -> Iterator[str]:
    reason = postgres_skip_reason()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (TASKFLARE_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(f"skipped: no PostgreSQL: {reason}")
    import psycopg

    schema = f"tf_test_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend: a new SQLite file, a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'taskflare.db'}"
    else:
        yield from _fresh_postgres_url()


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[App]:
    """An App on a fresh database, closed after the test."""
    application = App(database_url)
    yield application
    await application.close()
