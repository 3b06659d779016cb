"""Commands that read or change stored state never create a database: run where there is
none (another folder, a mistyped URL), they say which one is missing and how to name
the right one, instead of storing a job or a message that no worker will ever see."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from taskflare.backends.postgres.backend import parse_postgres_url

from .cli_run import ok, one_line_error, tf, tf_many

CRON_APP = """
import os
from taskflare import App

app = App(os.environ.get("TF_URL"))


@app.cron("0 3 * * *", name="nightly")
async def nightly(event) -> None:
    pass


@app.job("double")
async def double(payload, ctx):
    return payload["n"] * 2
"""


def _nothing_stored(url: str) -> bool:
    """Whether the database `url` names is absent: no SQLite file, no PostgreSQL schema."""
    if url.startswith("sqlite:"):
        return not Path(url.removeprefix("sqlite:///")).exists()
    schema = parse_postgres_url(url).schema
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return found is not None and found[0] == 0


def test_enqueue_in_an_empty_folder_without_a_database_option_creates_nothing(
    tmp_path: Path,
) -> None:
    result = tf("jobs", "enqueue", "send-email", "{}", url=None, cwd=tmp_path)
    line = one_line_error(result, 1)
    assert f"no SQLite database at 'taskflare.db' ({tmp_path / 'taskflare.db'})" in line, line
    assert "--database-url" in line and "TASKFLARE_DATABASE_URL" in line, line
    assert not (tmp_path / "taskflare.db").exists(), "the enqueue created a database"
    assert list(tmp_path.iterdir()) == [], "the command left files behind"


def test_every_command_that_changes_state_refuses_a_missing_database(
    database_url: str, tmp_path: Path
) -> None:
    app = tmp_path / "cronapp.py"
    app.write_text(CRON_APP)
    spec = f"{app}:app"
    changing = [
        ["jobs", "enqueue", "send-email", "{}"],
        ["jobs", "enqueue", "double", '{"n": 1}', "--app", spec],
        ["jobs", "retry", "01a2b3c4-0000-7000-8000-000000000000"],
        ["jobs", "cancel", "01a2b3c4-0000-7000-8000-000000000000"],
        ["send", "emails", "{}", "--create"],
        ["queues", "pause", "emails"],
        ["queues", "resume", "emails"],
        ["queues", "purge", "emails", "--yes"],
        ["dlq", "reprocess", "emails"],
        ["namespaces", "delete", "products", "sku-1"],
        ["cron", "trigger", spec, "nightly"],
    ]
    results = tf_many(changing, url=database_url)
    for command, result in zip(changing, results, strict=True):
        line = one_line_error(result, 1)
        assert "nothing was created" in line, (command, line)
        if "--app" in command or spec in command:  # the app's URL names the database
            assert "App(url)" in line, (command, line)
        else:
            assert "--database-url URL or TASKFLARE_DATABASE_URL" in line, (command, line)
    probe = tf("worker", "health", spec, url=database_url)
    assert probe.returncode == 1 and "nothing was created" in probe.stderr, probe.stderr
    # The triggers and their next runs come from the app's code: nothing has run yet.
    listed = json.loads(ok("cron", "list", spec, "--json", url=database_url))
    assert [(row["name"], row["last"]) for row in listed] == [("nightly", None)]
    assert _nothing_stored(database_url), "a command created the database"
