"""The Django integration, in a real Django project (tests/frameworks/django_project)
served by `manage.py runserver`: a job exists if and only if the view's transaction
committed — written on Django's own connection on PostgreSQL, after the commit on
SQLite — and `manage.py taskflare worker` runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PG_URL, _fresh_postgres_url
from helpers import HTTP_TIMEOUT
from integration.procs import wait_for
from taskflare import App

PROJECT = Path(__file__).with_name("django_project")
TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def audit_delayed(app: App) -> tuple[int, int]:
    """Messages in the project's 'audit' queue: ready, and delayed."""
    depth = app.run_sync(app.read.queue_depths("audit"))[0]
    return depth["ready"], depth["delayed"]


def manage(
    env: dict[str, str], *args: str, project: Path = PROJECT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@contextmanager
def running(
    env: dict[str, str], *args: str, log: Path, project: Path = PROJECT
) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py <args>` in the background; stopped with SIGTERM."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=project, env=env, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT)


@contextmanager
def runserver(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with running(env, "runserver", "--noreload", f"127.0.0.1:{port}", log=log) as server:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert server.poll() is None, f"runserver exited:\n{log.read_text()}"
            try:
                return httpx.get(f"{url}/signups/", timeout=HTTP_TIMEOUT).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, TIMEOUT, "runserver to answer")
        yield url


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TASKFLARE_"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


@pytest.fixture
def postgres_project() -> Iterator[tuple[dict[str, str], str]]:
    """The project on a fresh PostgreSQL schema (Django's and taskflare's tables both),
    migrated; yields its environment and taskflare's URL."""
    import psycopg

    for url in _fresh_postgres_url():
        schema = url.rpartition("schema=")[2]
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        env = base_env(SHOP_PG_URL=PG_URL.split("?")[0], SHOP_SCHEMA=schema)
        migrated = manage(env, "migrate", "--verbosity", "0")
        assert migrated.returncode == 0, migrated.stderr
        yield env, url


@pytest.fixture
def sqlite_project(tmp_path: Path) -> tuple[dict[str, str], str]:
    url = f"sqlite:///{tmp_path / 'taskflare.db'}"
    env = base_env(SHOP_SQLITE=str(tmp_path / "shop.db"), SHOP_TASKFLARE_URL=url)
    migrated = manage(env, "migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr
    return env, url


def sign_up(url: str, email: str, *, rollback: bool = False) -> httpx.Response:
    form = {"email": email, **({"rollback": "1"} if rollback else {})}
    return httpx.post(f"{url}/signup/", data=form, timeout=TIMEOUT)


def jobs_for(app: App, email: str) -> list[Any]:
    jobs = app.list_jobs_sync(type="send-welcome").jobs
    return [job for job in jobs if job.payload == {"email": email}]


def test_postgres_job_exists_iff_the_views_transaction_commits(
    postgres_project: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, tf_url = postgres_project
    app = App(tf_url)
    try:
        with runserver(env, tmp_path / "server.log") as url:
            kept = sign_up(url, "kept@example.com")
            assert kept.status_code == 200, kept.text
            refused = sign_up(url, "refused@example.com", rollback=True)
            assert refused.status_code == 409, refused.text
            signups = httpx.get(f"{url}/signups/", timeout=TIMEOUT).json()["signups"]
        # Written on Django's connection (a job id exists at once), invisible to others
        # until the commit, and gone with the rollback.
        kept_ids, refused_ids = kept.json(), refused.json()
        assert kept_ids["job"] and kept_ids["message"] and len(kept_ids["batch"]) == 1
        assert refused_ids["job"] and refused_ids["message"] and len(refused_ids["batch"]) == 1
        assert kept_ids["jobs_visible_before_commit"] == 0
        # enqueue_many: on Django's connection too; the rolled-back batch left nothing.
        kept_tags = app.get_batch_sync(kept_ids["tags"])
        assert kept_tags is not None and kept_tags.total == 2
        assert refused_ids["tags"] and app.get_batch_sync(refused_ids["tags"]) is None
        assert {j.payload["email"] for j in app.list_jobs_sync(type="tag-signup").jobs} == {
            "kept@example.com"
        }
        assert [s["email"] for s in signups] == ["kept@example.com"]
        job = app.get_job_sync(kept_ids["job"])
        assert job is not None and job.payload == {"email": "kept@example.com"}
        assert app.get_job_sync(refused_ids["job"]) is None
        assert [j.id for j in app.list_jobs_sync(type="send-welcome").jobs] == [job.id]
        assert audit_delayed(app) == (1, 1)
    finally:
        app.close_sync()


def test_manage_py_taskflare_worker_runs_the_projects_jobs(
    postgres_project: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, tf_url = postgres_project
    app = App(tf_url)
    try:
        with runserver(env, tmp_path / "server.log") as url:
            job_id = sign_up(url, "worker@example.com").json()["job"]
            log = tmp_path / "worker.log"
            # Supervised: the worker processes load the project from DJANGO_SETTINGS_MODULE.
            with running(env, "taskflare", "worker", "--processes", "2", log=log) as worker:

                def done() -> Any:
                    assert worker.poll() is None, f"worker exited:\n{log.read_text()}"
                    job = app.get_job_sync(job_id)
                    return job if job is not None and job.status == "completed" else None

                job = wait_for(done, TIMEOUT, "the worker to complete the job")
            assert worker.returncode == 0, log.read_text()
            assert job.result == {"welcomed": "worker@example.com"}
            signups = httpx.get(f"{url}/signups/", timeout=TIMEOUT).json()["signups"]
            assert signups == [{"email": "worker@example.com", "welcomed": True}]
        listed = manage(env, "taskflare", "jobs", "list", "--type", "send-welcome", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job_id]
    finally:
        app.close_sync()


def test_sqlite_job_is_enqueued_on_commit_and_dropped_on_rollback(
    sqlite_project: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, tf_url = sqlite_project
    app = App(tf_url)
    try:
        with runserver(env, tmp_path / "server.log") as url:
            kept = sign_up(url, "kept@example.com")
            assert kept.status_code == 200, kept.text
            refused = sign_up(url, "refused@example.com", rollback=True)
            assert refused.status_code == 409, refused.text
        # Deferred to the commit: no id to return, nothing stored before it.
        assert kept.json() == {
            "job": None,
            "message": None,
            "batch": None,
            "tags": None,
            "jobs_visible_before_commit": 0,
        }
        assert len(jobs_for(app, "kept@example.com")) == 1
        assert jobs_for(app, "refused@example.com") == []
        tags = app.list_jobs_sync(type="tag-signup").jobs
        assert sorted((j.payload["email"], j.payload["tag"]) for j in tags) == [
            ("kept@example.com", "new"),
            ("kept@example.com", "web"),
        ]
        assert audit_delayed(app) == (1, 1)
    finally:
        app.close_sync()


def test_unknown_taskflare_setting_is_refused_naming_the_key(
    sqlite_project: tuple[dict[str, str], str],
) -> None:
    env, _ = sqlite_project
    result = manage({**env, "SHOP_BAD_SETTING": "1"}, "taskflare", "jobs", "list")
    assert result.returncode != 0
    assert "TASKFLARE has unknown key(s) 'QUEUES'" in result.stderr


def test_manage_py_taskflare_help_is_taskflares(
    sqlite_project: tuple[dict[str, str], str],
) -> None:
    env, _ = sqlite_project
    result = manage(env, "taskflare", "--help")
    assert result.returncode == 0, result.stderr
    assert "python manage.py taskflare" in result.stdout and "worker" in result.stdout
