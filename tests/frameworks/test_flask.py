"""The Flask extension and SQLAlchemy sessions, against the real PostgreSQL: a job (and a
message) exists if and only if the session commits; `flask taskflare worker` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from conftest import PG_URL, _fresh_postgres_url
from frameworks.flask_project import shop
from integration.procs import wait_for
from taskflare.errors import InvalidConfig, InvalidMessage
from taskflare.integrations.flask import TaskFlare
from taskflare.integrations.sqlalchemy import psycopg_connection

PROJECT = Path(shop.__file__).parent
FLASK = str(Path(sys.executable).with_name("flask"))
TIMEOUT = 60


@pytest.fixture
def config() -> Iterator[dict[str, str]]:
    """A fresh schema holding the app's `signups` table and taskflare's tables; the Flask
    config pointing at it."""
    for url in _fresh_postgres_url():
        schema = url.rpartition("schema=")[2]
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(f'CREATE TABLE "{schema}".signups (email text PRIMARY KEY)')
        base = PG_URL.split("?")[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield {
            "SQLALCHEMY_URL": f"{base}?options=-csearch_path%3D{schema}",
            "TASKFLARE_DATABASE_URL": url,
        }


@pytest.fixture
def flask_app(config: dict[str, str]) -> Iterator[Flask]:
    app = shop.create_app(config)
    try:
        yield app
    finally:
        shop.taskflare.app.close_sync()
        app.extensions["engine"].dispose()


def test_job_and_messages_exist_iff_the_session_commits(flask_app: Flask) -> None:
    client = flask_app.test_client()
    kept = client.post("/signup", data={"email": "kept@example.com"})
    refused = client.post("/signup", data={"email": "refused@example.com", "rollback": "1"})
    assert (kept.status_code, refused.status_code) == (200, 409)
    assert client.get("/signups").json == ["kept@example.com"]
    app = shop.taskflare.app
    kept_job, refused_job = kept.json["job"], refused.json["job"]  # type: ignore[index]
    assert app.get_job_sync(kept_job) is not None
    assert app.get_job_sync(refused_job) is None
    assert [job.id for job in app.list_jobs_sync(type="send-welcome").jobs] == [kept_job]
    # enqueue_many(session=): the committed session's batch, whole; the other one, gone.
    kept_tags = app.get_batch_sync(kept.json["tags"])  # type: ignore[index]
    assert kept_tags is not None and kept_tags.total == 2
    assert app.get_batch_sync(refused.json["tags"]) is None  # type: ignore[index]
    tags = app.list_jobs_sync(type="tag-signup").jobs
    assert sorted(j.payload["tag"] for j in tags) == ["new", "web"]
    assert {j.payload["email"] for j in tags} == {"kept@example.com"}
    depth = app.run_sync(app.read.queue_depths("audit"))[0]
    assert depth["ready"] == 2  # the message and the batch of the committed session only


def test_flask_taskflare_worker_runs_the_apps_jobs(
    flask_app: Flask, config: dict[str, str], tmp_path: Path
) -> None:
    job_id = flask_app.test_client().post("/signup", data={"email": "a@example.com"}).json["job"]  # type: ignore[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TASKFLARE_"))}
    env.update({f"FLASK_{key}": value for key, value in config.items()})
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [FLASK, "--app", "shop:create_app", "taskflare", "worker", "-c", "2"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:

        def completed() -> Any:
            assert worker.poll() is None, f"worker exited:\n{log.read_text()}"
            job = shop.taskflare.app.get_job_sync(job_id)
            return job if job is not None and job.status == "completed" else None

        job = wait_for(completed, TIMEOUT, "the worker to complete the job")
        assert job.result == {"welcomed": "a@example.com"}
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(TIMEOUT) == 0, log.read_text()


def test_a_session_not_on_psycopg_is_refused_naming_it(flask_app: Flask, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with Session(engine) as session, pytest.raises(InvalidMessage, match="session="):
            shop.taskflare.enqueue("send-welcome", {"email": "x"}, session=session)
        assert shop.taskflare.app.list_jobs_sync().jobs == []
    finally:
        engine.dispose()


def test_init_app_with_another_database_while_connected_is_refused(
    flask_app: Flask, tmp_path: Path
) -> None:
    shop.taskflare.app.list_jobs_sync()  # connected now
    other = Flask("other")
    other.config["TASKFLARE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(InvalidConfig, match="close it"):
        shop.taskflare.init_app(other)


def test_config_from_the_flask_app_and_the_extension_registered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tf.db'}"
    extension = TaskFlare()
    app = Flask("factory")
    app.config["TASKFLARE_DATABASE_URL"] = url
    extension.init_app(app)
    assert extension.app.database_url == url and app.extensions["taskflare"] is extension
    assert "taskflare" in app.cli.commands
    bad = Flask("bad")
    bad.config["TASKFLARE_DATABASE_URL"] = 5
    with pytest.raises(InvalidConfig, match="TASKFLARE_DATABASE_URL must be a string"):
        TaskFlare(bad)


def test_psycopg_connection_accepts_a_connection_and_refuses_other_objects(
    flask_app: Flask,
) -> None:
    engine = flask_app.extensions["engine"]
    with engine.connect() as connection:
        assert isinstance(psycopg_connection(connection), psycopg.Connection)
    with pytest.raises(InvalidMessage, match="SQLAlchemy Session or Connection"):
        psycopg_connection("not a session")
