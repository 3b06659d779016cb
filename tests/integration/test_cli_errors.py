"""The `taskflare` executable's contract: help with examples, exit codes 0/1/2, one-line
errors (tracebacks only with --debug), and one JSON document from every reading command."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any

import typer

from taskflare import App
from taskflare.cli import cli

from .cli_run import make_dead_letters, migrated, ok, one_line_error, tf, tf_many, write_cli_app
from .procs import WorkerProcess, wait_for, write_app


def _commands() -> dict[tuple[str, ...], Any]:
    """Every command and group of the CLI, by its path of names."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found[path] = command
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(typer.main.get_command(cli), ())
    return found


EXPECTED = {
    (),
    ("worker",),
    ("serve",),
    ("dev",),
    ("migrate",),
    ("queues",),
    ("queues", "list"),
    ("queues", "info"),
    ("queues", "failed"),
    ("queues", "pause"),
    ("queues", "resume"),
    ("queues", "pause-delivery"),
    ("queues", "resume-delivery"),
    ("queues", "purge"),
    ("send",),
    ("dlq",),
    ("dlq", "list"),
    ("dlq", "reprocess"),
    ("jobs",),
    ("jobs", "list"),
    ("jobs", "show"),
    ("jobs", "wait"),
    ("jobs", "retry"),
    ("jobs", "cancel"),
    ("jobs", "enqueue"),
    ("stats",),
    ("tail",),
    ("cron",),
    ("cron", "list"),
    ("cron", "trigger"),
    ("cron", "check"),
    ("wrangler",),
    ("wrangler", "check"),
    ("namespaces",),
    ("namespaces", "list"),
    ("namespaces", "items"),
    ("namespaces", "get"),
    ("namespaces", "delete"),
}


def test_help_of_every_command_and_group_shows_an_example() -> None:
    commands = _commands()
    assert set(commands) == EXPECTED  # a new command gets a line here (and in docs/cli.md)
    paths = sorted(commands)
    results = tf_many([[*path, "--help"] for path in paths], url=None)
    for path, result in zip(paths, results, strict=True):
        name = " ".join(("taskflare", *path))
        assert result.returncode == 0, f"{name} --help: {result.stderr}"
        assert "Example:" in result.stdout, f"{name} --help has no example:\n{result.stdout}"
        if path and not hasattr(commands[path], "commands"):
            example = " ".join(result.stdout.split()).split("Example:", 1)[1]
            assert name in example, f"{name}'s example does not use it: {example}"


def test_docs_mention_every_command() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for path in EXPECTED - {()}:
        assert f"taskflare {' '.join(path)}" in text, path


def test_usage_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    results = tf_many(
        [
            ["frobnicate"],
            ["queues", "list", "--colour"],
            ["queues", "info"],
            ["stats", "--interval", "0.01"],
            ["jobs", "list", "--limit", "0"],
            ["worker", "x:app", "--processes", "0"],
        ],
        url=url,
    )
    # One line, as every other failure, naming the value at fault and where the usage is
    # (not click's four: usage, hint, blank line, error).
    lines = [one_line_error(result, 2) for result in results]
    assert "frobnicate" in lines[0] and "(usage: taskflare --help)" in lines[0]
    assert "--colour" in lines[1] and "(usage: taskflare queues list --help)" in lines[1]
    assert "Missing argument 'name'" in lines[2]
    assert "--interval" in lines[3]
    assert "--limit" in lines[4] and "greater than or equal to 1" in lines[4]
    assert "--processes" in lines[5]
    # Nothing ran: no database was created.
    assert not (tmp_path / "u.db").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgres_is_one_line_naming_the_cause() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nowhere"
    results = tf_many(
        [
            ["queues", "list", "--database-url", url],
            ["send", "emails", "{}", "--database-url", url],
            ["jobs", "show", "some-id", "--database-url", url],
        ],
        url=None,
    )
    for result in results:
        line = one_line_error(result)
        assert "127.0.0.1" in line and "Connection refused" in line, line
        assert "PoolTimeout" not in line, "reported at once, not after the pool gave up"


def test_postgres_errors_retrying_cannot_fix_are_reported_at_once(tmp_path: Path) -> None:
    """A missing database, an unknown role, a wrong password: one line naming the cause,
    without the pool's retries and their warnings (nor the password)."""
    missing = "postgresql://postgres@127.0.0.1/no_such_db"
    results = tf_many(
        [
            ["queues", "list", "--database-url", missing],
            ["stats", "--database-url", "postgresql://no_such_role:hunter2@127.0.0.1/test"],
            ["worker", write_cli_app(tmp_path)],  # the app's own URL names no database
        ],
        url=missing,
    )
    lines = [one_line_error(result) for result in results]
    assert 'database "no_such_db" does not exist' in lines[0]
    assert 'role "no_such_role" does not exist' in lines[1]
    assert "hunter2" not in lines[1] and "***" in lines[1]
    for line in lines:
        assert "PoolTimeout" not in line and "couldn't get a connection" not in line, line


def test_sqlite_file_that_cannot_be_created_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = "sqlite:////proc/taskflare-nope/t.db"  # even root cannot create this
    below_a_file = f"sqlite:///{blocker}/t.db"
    results = tf_many(
        [
            ["queues", "list", "--database-url", unwritable],
            ["stats", "--database-url", below_a_file],
            ["--debug", "queues", "list", "--database-url", unwritable],
        ],
        url=None,
    )
    line = one_line_error(results[0])
    # A reading command never creates a database: it says there is none there.
    assert "no SQLite database at '/proc/taskflare-nope/t.db'" in line
    assert str(blocker) in one_line_error(results[1])
    assert results[2].returncode == 1
    assert "Traceback" in results[2].stderr


def test_app_that_does_not_import_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency_xyz\n")
    results = tf_many(
        [
            ["worker", "no_such_module_xyz:app"],
            ["cron", "list", f"{broken}:app"],
            ["jobs", "enqueue", "double", "{}", "--app", "no_such_module_xyz:app"],
            ["worker", f"{broken}:nope", "--processes", "2"],
            ["--debug", "cron", "list", f"{broken}:app"],
        ],
        url=f"sqlite:///{tmp_path / 't.db'}",
    )
    assert "no_such_module_xyz" in one_line_error(results[0])
    assert "no_such_dependency_xyz" in one_line_error(results[1])
    assert "no_such_module_xyz" in one_line_error(results[2])
    assert "broken" in one_line_error(results[3])
    assert results[4].returncode == 1 and "Traceback" in results[4].stderr


def test_an_app_that_raises_at_import_names_its_file_and_line_and_debug(tmp_path: Path) -> None:
    (tmp_path / "boomapp.py").write_text('x = 1\nraise RuntimeError("boom at import")\n')
    (tmp_path / "syntaxapp.py").write_text("def f(:\n")
    results = tf_many(
        [
            ["worker", f"{tmp_path / 'boomapp.py'}:app"],
            ["dev", f"{tmp_path / 'syntaxapp.py'}:app", "--no-api"],
            ["serve", f"{tmp_path / 'boomapp.py'}:app"],
        ],
        url=f"sqlite:///{tmp_path / 't.db'}",
    )
    for result, where in zip(
        results, ["boomapp.py:2", "syntaxapp.py:1", "boomapp.py:2"], strict=True
    ):
        line = one_line_error(result)
        assert f"{where})" in line and "--debug" in line, line


def test_bad_option_values_are_usage_errors_naming_the_option(tmp_path: Path) -> None:
    """Every value the command line checks: exit 2, one line, the option as typed."""
    app = write_cli_app(tmp_path)
    results = tf_many(
        [
            ["worker", app, "--log-level", "LOUD"],
            ["serve", app, "--log-level", "loud"],
            ["worker", app, "--shutdown-grace", "-1"],
            ["worker", app, "--shutdown-grace", "-1", "--processes", "2"],
            ["dev", app, "--duration", "-1", "--no-api"],
            ["dev", app, "--duration", "nan", "--no-api"],
            ["worker", "health", "--max-age", "5"],
            ["jobs", "enqueue", "double", "nojson"],
            ["jobs", "enqueue", "double", "{}", "--run-at", "2030-01-01T00:00Z", "--delay", "4"],
            ["jobs", "enqueue", "double", "{}", "--delay", "-4"],
            ["send", "work", "nojson"],
        ],
        url=f"sqlite:///{tmp_path / 't.db'}",
    )
    named = [
        "--log-level",
        "--log-level",
        "--shutdown-grace",
        "--shutdown-grace",
        "--duration",
        "--duration",
        "--max-age",
        "PAYLOAD",
        "--run-at",
        "--delay",
        "BODY",
    ]
    for result, option in zip(results, named, strict=True):
        line = one_line_error(result, code=2)
        assert option in line, line
        assert "_" not in line.split(",")[0], line  # no Python names


def test_a_producer_that_cannot_be_loaded_says_why(tmp_path: Path) -> None:
    app = write_cli_app(tmp_path)
    (tmp_path / "prod.py").write_text('raise ValueError("bad producer module")\n')
    results = tf_many(
        [
            ["dev", app, "--no-api", "--producer", f"{tmp_path / 'cliapp.py'}:nothere"],
            ["dev", app, "--no-api", "--producer", f"{tmp_path / 'prod.py'}:producer"],
        ],
        url=f"sqlite:///{tmp_path / 't.db'}",
    )
    assert "has no attribute 'nothere'" in one_line_error(results[0])
    line = one_line_error(results[1])
    assert "ValueError: bad producer module" in line and "prod.py:1)" in line, line


def test_unknown_queue_or_job_id_is_one_line_naming_it(database_url: str) -> None:
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", "{}", url=database_url)  # the database exists and has a queue
    results = tf_many(
        [
            ["queues", "info", "nope"],
            ["queues", "pause", "nope"],
            ["queues", "resume", "nope"],
            ["queues", "purge", "nope", "--yes"],
            ["dlq", "list", "nope"],
            ["dlq", "reprocess", "nope"],
            ["jobs", "show", "no-such-job"],
            ["jobs", "retry", "no-such-job"],
            ["jobs", "cancel", "no-such-job"],
        ],
        url=database_url,
    )
    from taskflare.backends.url import redact_url

    for result in results[:6]:  # naming the database looked in (a wrong URL is the usual cause)
        assert f"no queue named 'nope' in {redact_url(database_url)}" in one_line_error(result)
    for result in results[6:]:
        assert "no job with id 'no-such-job'" in one_line_error(result)


def test_every_reading_command_prints_one_json_document(database_url: str, tmp_path: Path) -> None:
    readers = {
        path for path, c in _commands().items() if any(p.name == "as_json" for p in c.params)
    }
    assert readers == {
        ("queues", "list"),
        ("queues", "info"),
        ("queues", "failed"),
        ("dlq", "list"),
        ("jobs", "list"),
        ("jobs", "show"),
        ("jobs", "wait"),
        ("stats",),
        ("tail",),  # one JSON document a line: see test_cli_observe
        ("cron", "list"),
        ("cron", "check"),
        ("wrangler", "check"),
        ("namespaces", "list"),
        ("namespaces", "items"),
        ("namespaces", "get"),
    }
    spec = write_cli_app(tmp_path)
    make_dead_letters(database_url, 2)
    job_id = ok("jobs", "enqueue", "double", '{"n": 1}', "--app", spec, url=database_url).strip()
    commands = [
        ["queues", "list"],
        ["queues", "info", "work"],
        ["queues", "failed", "work"],
        ["dlq", "list", "work"],
        ["jobs", "list"],
        ["jobs", "show", job_id],
        ["stats", "--interval", "0.2"],
        ["cron", "list", spec],
        ["cron", "check", "@daily"],
        ["wrangler", "check", str(Path(__file__).parents[1] / "fixtures/wrangler/chat.jsonc")],
        ["namespaces", "list"],
        ["namespaces", "items", "products"],
        ["namespaces", "get", "products", "sku-1"],
    ]
    documents = App(database_url)
    documents.namespace("products").put_sync("sku-1", {"price": 1})
    documents.close_sync()
    results = tf_many([[*c, "--json"] for c in commands], url=database_url)
    for command, result in zip(commands, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
        json.loads(result.stdout)  # exactly one document: trailing text would not parse


def test_typos_create_nothing(database_url: str, tmp_path: Path) -> None:
    """A mistyped queue or database path is an error, never a new queue or database."""
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", "{}", url=database_url)
    typo_dir = tmp_path / "typo_dir"
    results = tf_many(
        [
            ["send", "emials", "{}"],
            ["queues", "list", "--database-url", f"sqlite:///{typo_dir}/x.db"],
            ["stats", "--database-url", f"sqlite:///{tmp_path}/missing.db"],
            ["dlq", "list", "emails", "--database-url", f"sqlite:///{typo_dir}/x.db"],
        ],
        url=database_url,
    )
    line = one_line_error(results[0])
    assert "emials" in line and "--create" in line
    for result in results[1:]:
        assert "no SQLite database at" in one_line_error(result)
    assert not typo_dir.exists(), "a reading command created the folder of a mistyped path"
    assert not (tmp_path / "missing.db").exists()
    names = json.loads(ok("queues", "list", "--json", url=database_url))
    assert [q["name"] for q in names["queues"]] == ["emails"], "the typo became a queue"


def test_a_blank_api_token_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    app = write_cli_app(tmp_path)
    url = f"sqlite:///{tmp_path / 't.db'}"
    cases = [
        ("TASKFLARE_API_TOKEN", " "),
        ("TASKFLARE_API_TOKEN", ""),
        ("TASKFLARE_API_TOKEN", "s3cret\n"),
        ("TASKFLARE_API_READ_TOKEN", "\t"),
    ]
    results = [
        tf_many([["serve", app, "--host", "0.0.0.0", "--port", "0"]], url=url, **{name: value})[0]
        for name, value in cases
    ]
    for (name, _), result in zip(cases, results, strict=True):
        line = one_line_error(result, code=2)
        assert name in line, line


def test_tail_of_an_event_kind_that_does_not_exist_is_a_usage_error(database_url: str) -> None:
    """`tail --status fail` (for `failed`) or a job status (`pending`) matched no event:
    on a live database it followed for ever and showed nothing. Now exit 2 naming the
    kinds; any case of a real kind is taken."""
    ok("migrate", database_url, url=None)
    for wrong in ("fail", "pending"):
        line = one_line_error(tf("tail", "--status", wrong, url=database_url), code=2)
        assert "--status" in line and "completed" in line and repr(wrong) in line, line


def test_a_worker_names_the_absolute_file_of_a_relative_sqlite_url(tmp_path: Path) -> None:
    """`sqlite:///jobs.db` opens jobs.db in the folder the process starts in: a worker
    started elsewhere opens (and creates) another, empty file. Its start line names the
    absolute file, so the mismatch shows."""
    worker = WorkerProcess(write_app(tmp_path), tmp_path, {"TF_URL": "sqlite:///rel-jobs.db"})
    try:
        wait_for(lambda: " started on " in worker.stderr, 60, "the worker to start")
        line = next(ln for ln in worker.stderr.splitlines() if " started on " in ln)
        assert f"sqlite:///rel-jobs.db (file {tmp_path / 'rel-jobs.db'})" in line, line
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        worker.stop()
