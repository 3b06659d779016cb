"""The pytest plugin in a user's test run (a real `pytest` process): throwaway databases
on both backends, and assertion messages that show what waits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conftest import PG_URL, postgres_skip_reason

USER_TESTS = """
import pytest
from taskflare.testing import assert_enqueued

pytest_plugins = ["taskflare.pytest_plugin"]


@pytest.mark.asyncio
async def test_records_its_database(taskflare_app, taskflare_database_url):
    q = taskflare_app.queue("emails")
    await q.send({"to": "a"})
    with open("urls.txt", "a") as out:
        out.write(taskflare_database_url + "\\n")
    await assert_enqueued(taskflare_app, "emails", body={"to": "a"})


@pytest.mark.asyncio
async def test_a_wrong_expectation_shows_what_waits(taskflare_app):
    q = taskflare_app.queue("emails")
    await q.send({"to": "b"})
    await assert_enqueued(taskflare_app, "emails", body={"to": "zzz"})
"""


def run_user_tests(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (folder / "test_user.py").write_text(USER_TESTS)
    (folder / "pytest.ini").write_text("[pytest]\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLARE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=folder,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sqlite_by_default_and_failures_show_what_waits(tmp_path: Path) -> None:
    result = run_user_tests(tmp_path)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "matching {'to': 'zzz'}; found 0. Waiting there: [{'to': 'b'}]" in result.stdout
    [url] = (tmp_path / "urls.txt").read_text().split()
    assert url.startswith("sqlite:///") and url.endswith("taskflare-test.db")


def test_a_postgres_schema_per_test_dropped_after(tmp_path: Path) -> None:
    reason = postgres_skip_reason()
    if reason is not None:
        pytest.skip(f"no PostgreSQL: {reason}")
    result = run_user_tests(tmp_path, TASKFLARE_TEST_DATABASE_URL=PG_URL)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    [url] = (tmp_path / "urls.txt").read_text().split()
    schema = url.rpartition("schema=")[2]
    assert url.startswith(PG_URL.partition("?")[0]) and schema.startswith("tf_test_")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", [schema]
        ).fetchone()
    assert left == (0,)
