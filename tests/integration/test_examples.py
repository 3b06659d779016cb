"""The issue-5 examples run as documented and do what they say: seed 000's chat titles
with `wait_until` and with a job, a webhook that enqueues, seed 001's daily cleanup."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from helpers import HTTP_TIMEOUT
from taskflare import App, JobStatus
from taskflare.loader import load_object
from taskflare.testing import drain

from .cli_run import migrated
from .procs import TASKFLARE, WorkerProcess, wait_for
from .servers import serving

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import `examples/<name>.py` afresh (its module-level App reads the environment now)."""
    sys.modules.pop(name, None)  # the loader runs a module once a process
    load_object(f"{EXAMPLES / name}.py:app")
    return sys.modules[name]


@pytest.fixture
def example_env(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "TASKFLARE_DATABASE_URL": sqlite_url,
        "CHAT_DB": str(tmp_path / "chat.db"),
        "APP_DB": str(tmp_path / "app.db"),
        "LEDGER_DB": str(tmp_path / "ledger.db"),
        "WEBHOOK_SECRET": "s3cret",
        "TITLE_DELAY": "0.3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def title_of(url: str, thread_id: int) -> str:
    response = httpx.get(f"{url}/threads/{thread_id}", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    title: str = response.json()["title"]
    return title


def test_chat_titles_with_wait_until(
    example_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    module = load_example("chat_titles_wait_until")
    try:
        with serving(module.api) as (url, _):
            created = httpx.post(
                f"{url}/threads",
                json={"first_message": "how do I reverse a list in python?"},
                timeout=HTTP_TIMEOUT,
            )
            assert created.status_code == 200
            assert created.json()["title"] == "New chat"  # answered before the AI call ended
            thread_id = created.json()["id"]
            wait_for(lambda: title_of(url, thread_id) != "New chat", 60, "the title")
            assert title_of(url, thread_id) == "How do i reverse a"

            # A failing AI call is logged with its traceback; the thread keeps its title.
            empty = httpx.post(
                f"{url}/threads", json={"first_message": "   "}, timeout=HTTP_TIMEOUT
            )
            assert empty.status_code == 200
            wait_for(lambda: "cannot title an empty message" in caplog.text, 60, "the error log")
            assert "Traceback" in caplog.text
            assert title_of(url, empty.json()["id"]) == "New chat"
    finally:
        module.app.close_sync()


def test_chat_titles_with_a_job_and_a_real_worker(
    tmp_path: Path, example_env: dict[str, str]
) -> None:
    module = load_example("chat_titles_queue")
    worker = WorkerProcess(f"{EXAMPLES / 'chat_titles_queue.py'}:app", tmp_path, example_env)
    try:
        with serving(module.api) as (url, _):
            created = httpx.post(
                f"{url}/threads",
                json={"first_message": "Plan a trip to Lisbon"},
                timeout=HTTP_TIMEOUT,
            )
            assert created.status_code == 200
            body = created.json()
            assert body["title"] == "New chat"
            wait_for(lambda: title_of(url, body["id"]) != "New chat", 60, "the title job")
            assert title_of(url, body["id"]) == "Plan a trip to lisbon"
        job = module.app.run_sync(module.app.get_job(body["title_job"]))
        assert job is not None
        assert (job.type, job.queue, job.status) == (
            "generate-title",
            "titles",
            JobStatus.COMPLETED,
        )
        assert job.result == "Plan a trip to lisbon"
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr
    finally:
        worker.stop()
        module.app.close_sync()


async def test_webhook_enqueues_a_job_once_per_event(example_env: dict[str, str]) -> None:
    module = load_example("webhook_fastapi")
    app: App = module.app
    transport = httpx.ASGITransport(app=module.api)

    def post(event: dict[str, Any], signature: str | None = None) -> Any:
        raw = json.dumps(event).encode()
        t = int(time.time())  # Stripe's recipe: HMAC-SHA256 of "<t>.<raw body>", in hex
        secret = example_env["WEBHOOK_SECRET"].encode()
        digest = hmac.new(secret, f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
        headers = {"Stripe-Signature": f"t={t},v1={signature or digest}"}
        return client.post("/webhooks/payments", content=raw, headers=headers)

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            event = {"id": "evt_1", "type": "payment.succeeded", "amount": 1250}
            first = await post(event)
            assert first.status_code == 200
            assert first.json()["received"] is True and first.json()["duplicate"] is False
            assert first.json()["eventId"] == "evt_1"
            again = await post(event)  # the sender redelivers the same event
            assert again.json() == {**first.json(), "duplicate": True}
            forged = await post({**event, "id": "evt_2"}, signature="0" * 64)
            assert forged.status_code == 401
            assert forged.json()["code"] == "bad_signature"
            negative = await post({"id": "evt_3", "type": "refund", "amount": -5})
            assert negative.status_code == 200

        await drain(app)
        with sqlite3.connect(example_env["LEDGER_DB"]) as db:
            rows = db.execute("SELECT event_id, type, amount_cents FROM payments").fetchall()
        assert rows == [("evt_1", "payment.succeeded", 1250)]
        done = await app.get_job(first.json()["jobId"])
        assert done is not None and done.status is JobStatus.COMPLETED
        failed = await app.get_job(negative.json()["jobId"])
        assert failed is not None and failed.status is JobStatus.FAILED
        assert failed.attempts == 1  # PermanentError: not retried
    finally:
        await app.close()


def test_daily_cleanup_runs_from_cron_trigger(tmp_path: Path, example_env: dict[str, str]) -> None:
    now = time.time()
    with sqlite3.connect(example_env["APP_DB"]) as db:
        db.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, expires_at REAL)")
        db.execute("CREATE TABLE activity_logs (id INTEGER PRIMARY KEY, created_at REAL)")
        db.executemany(
            "INSERT INTO sessions VALUES (?, ?)",
            [("expired", now - 3600), ("live", now + 86400)],
        )
        db.executemany(
            "INSERT INTO activity_logs VALUES (?, ?)",
            [(1, now - 40 * 86400), (2, now - 86400)],
        )
    spec = f"{EXAMPLES / 'daily_cleanup.py'}:app"
    env = {"PATH": "/usr/bin:/bin", **example_env}

    listed = subprocess.run(
        [TASKFLARE, "cron", "list", spec, "--json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["cron"]) == ("daily-cleanup", "0 0 * * *")
    assert all(t.endswith("T00:00:00+00:00") for t in row["next"])

    # `cron trigger` creates no database: a worker has started once (as the docstring
    # says to run it first), which creates it.
    migrated(example_env["TASKFLARE_DATABASE_URL"])
    fired = subprocess.run(
        [TASKFLARE, "cron", "trigger", spec, "daily-cleanup"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert fired.returncode == 0, fired.stderr
    job_id = fired.stdout.strip().rsplit(" ", 1)[-1]

    module = load_example("daily_cleanup")
    try:
        module.app.run_sync(drain(module.app))
        job = module.app.run_sync(module.app.get_job(job_id))
    finally:
        module.app.close_sync()
    assert job is not None and job.status is JobStatus.COMPLETED
    assert job.result == {"sessions": 1, "activity_logs": 1}
    with sqlite3.connect(example_env["APP_DB"]) as db:
        assert db.execute("SELECT id FROM sessions").fetchall() == [("live",)]
        assert db.execute("SELECT id FROM activity_logs").fetchall() == [(2,)]


def test_the_job_types_example_runs_all_six_against_local_services(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKFLARE_")},
        "TASKFLARE_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "EXAMPLE_SHOP_DB": str(tmp_path / "shop.db"),
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "job_types.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for type in (
        "send-email",
        "generate-embedding",
        "crawl-website",
        "generate-content",
        "batch-import",
        "webhook-delivery",
    ):
        assert any(line.startswith(f"{type}: completed") for line in lines), result.stdout
    assert "crawl: 20 of 20 pages stored" in lines
    assert "products table: [('a-1', 'Lamp', 12.5), ('a-2', 'Desk', 99.0)]" in lines
    assert "emails received by the local SMTP server: 1" in lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_local_services_stop_on_ctrl_c_even_started_where_sigint_is_ignored(
    tmp_path: Path, signum: int
) -> None:
    """A shell's background job (`python examples/local_services.py &`) starts with SIGINT
    ignored; the script said "Ctrl-C to stop" and then could only be killed."""
    log = tmp_path / "services.log"
    with log.open("wb") as out:
        services = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "local_services.py")],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        wait_for(lambda: "# Ctrl-C to stop" in log.read_text(), 60, "the local services")
        services.send_signal(signum)
        assert services.wait(60) == 0, log.read_text()
    finally:
        if services.poll() is None:
            services.kill()
            services.wait(15)
