"""`taskflare jobs ...` as real processes, on both backends: list, show, retry, cancel, enqueue."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from .cli_run import cli_env, migrated, ok, one_line_error, tf, tf_json, tf_many, write_cli_app
from .procs import TASKFLARE


def test_enqueue_then_list_show_cancel_and_retry(database_url: str) -> None:
    migrated(database_url)  # as a worker's first start does
    first = ok(
        "jobs",
        "enqueue",
        "send-email",
        '{"to": "a@b.c"}',
        "--priority",
        "5",
        "--idempotency-key",
        "welcome-a",
        "--max-attempts",
        "4",
        url=database_url,
    ).strip()
    again = ok(
        "jobs",
        "enqueue",
        "send-email",
        '{"to": "a@b.c"}',
        "--idempotency-key",
        "welcome-a",
        url=database_url,
    ).strip()
    assert again == f"{first} (duplicate: already enqueued with this key)"
    later = ok(
        "jobs",
        "enqueue",
        "report",
        "{}",
        "--delay",
        "600",
        "--queue",
        "reports",
        url=database_url,
    ).strip()

    listed = tf_json("jobs", "list", url=database_url)
    assert listed["count"] == 2 and listed["nextCursor"] is None
    assert [j["id"] for j in listed["jobs"]] == [later, first]  # newest first
    only = tf_json("jobs", "list", "--type", "send-email", "--status", "pending", url=database_url)
    assert [j["id"] for j in only["jobs"]] == [first]
    assert tf_json("jobs", "list", "--queue", "reports", url=database_url)["count"] == 1
    page = tf_json("jobs", "list", "--limit", "1", url=database_url)
    assert page["count"] == 1 and page["nextCursor"]
    rest = tf_json("jobs", "list", "--limit", "1", "--cursor", page["nextCursor"], url=database_url)
    assert [j["id"] for j in rest["jobs"]] == [first]
    table = ok("jobs", "list", url=database_url)
    assert first in table and "send-email" in table and "pending" in table

    shown = tf_json("jobs", "show", first, url=database_url)
    assert shown["payload"] == {"to": "a@b.c"}
    assert (shown["status"], shown["priority"], shown["maxAttempts"]) == ("pending", 5, 4)
    assert (shown["queue"], shown["idempotencyKey"]) == ("default", "welcome-a")
    text = ok("jobs", "show", first, url=database_url)
    assert first in text and '"to": "a@b.c"' in text and "idempotency key: welcome-a" in text
    delayed = tf_json("jobs", "show", later, url=database_url)
    assert delayed["queue"] == "reports" and delayed["runAt"] > delayed["createdAt"]

    assert f"job {first} cancelled" in ok("jobs", "cancel", first, url=database_url)
    assert tf_json("jobs", "show", first, url=database_url)["status"] == "cancelled"
    cancel_again = tf("jobs", "cancel", first, url=database_url)
    assert "only pending or running jobs can be cancelled" in one_line_error(cancel_again)
    assert f"job {first} queued for retry" in ok("jobs", "retry", first, url=database_url)
    assert tf_json("jobs", "show", first, url=database_url)["status"] == "pending"
    retry_pending = tf("jobs", "retry", first, url=database_url)
    assert "only failed or cancelled jobs can be retried" in one_line_error(retry_pending)


def test_enqueue_with_the_app_uses_the_types_queue_and_defaults_and_validates(
    database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)  # as a worker's first start does
    spec = write_cli_app(tmp_path)
    job_id = ok("jobs", "enqueue", "double", '{"n": 2}', "--app", spec, url=database_url).strip()
    shown = tf_json("jobs", "show", job_id, url=database_url)
    # The type's queue, priority and attempt budget, not the CLI's fallbacks.
    assert (shown["queue"], shown["priority"], shown["maxAttempts"]) == ("jobs", 3, 3)
    overridden = ok(
        "jobs",
        "enqueue",
        "double",
        '{"n": 2}',
        "--app",
        spec,
        "--priority",
        "-1",
        url=database_url,
    ).strip()
    assert tf_json("jobs", "show", overridden, url=database_url)["priority"] == -1
    unknown = tf("jobs", "enqueue", "nope", "{}", "--app", spec, url=database_url)
    assert "unknown job type 'nope'" in one_line_error(unknown)


def test_enqueue_usage_errors_exit_2(database_url: str, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"n": 1}\n')
    both, neither, bad_priority, bad_status, one_key = tf_many(
        [
            ["jobs", "enqueue", "double", "{}", "--from-file", str(items)],
            ["jobs", "enqueue", "double"],
            ["jobs", "enqueue", "double", "{}", "--max-attempts", "0"],
            ["jobs", "list", "--status", "sleeping"],
            ["jobs", "enqueue", "double", "--from-file", str(items), "--idempotency-key", "k"],
        ],
        url=database_url,
    )
    # A bulk enqueue stored every line and ignored the key: refused, as one key is one job.
    assert "--idempotency-key names one job" in one_line_error(one_key, 2)
    assert "either PAYLOAD_JSON or --from-file" in one_line_error(both, 2)
    assert "either PAYLOAD_JSON or --from-file" in one_line_error(neither, 2)
    assert "max_attempts" in one_line_error(bad_priority, 2).replace("-", "_")
    assert bad_status.returncode == 2 and "sleeping" in bad_status.stderr
    bad_payload = tf("jobs", "enqueue", "double", "{oops", url=database_url)
    assert "PAYLOAD: not valid JSON" in one_line_error(bad_payload, 2)
    for spelled in ("NaN", "Infinity", "-Infinity"):
        nan = tf("jobs", "enqueue", "double", f'{{"n": {spelled}}}', url=database_url)
        assert f"payload.n: {spelled} is not a JSON number" in one_line_error(nan, 2)
    # orjson reads an int past 64 bits as a float: 2**64 was stored as 1.8446744073709552e+19.
    wide = tf("jobs", "enqueue", "double", '{"n": 18446744073709551616}', url=database_url)
    assert "payload.n: 18446744073709551616 is outside" in one_line_error(wide, 2)
    # Nothing was stored, not even an empty database.
    assert "nothing was created" in one_line_error(tf("jobs", "list", url=database_url), 1)


def test_enqueue_from_file_is_batched_with_progress_and_a_summary(
    database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)  # as a worker's first start does
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"n": i}) + "\n" + ("\n" if i == 7 else "") for i in range(1200))
    )
    result = tf(
        "jobs",
        "enqueue",
        "double",
        "--from-file",
        str(items),
        "--queue",
        "jobs",
        url=database_url,
        FORCE_COLOR="1",  # Rich draws progress only on a terminal: make it believe so
        TTY_INTERACTIVE="1",
    )
    assert result.returncode == 0, result.stderr
    assert "enqueueing double" in result.stderr  # the progress bar, on stderr
    # stdout is the summary alone: `batch=$(taskflare jobs enqueue ... --from-file ...)`.
    assert len(result.stdout.splitlines()) == 1, result.stdout
    summary = result.stdout.strip()
    assert summary.startswith("enqueued 1200 jobs of 'double' in ")
    batch_id = summary.rsplit("batch ", 1)[1]
    assert tf_json("queues", "info", "jobs", url=database_url)["depth"]["ready"] == 1200
    newest = tf_json("jobs", "list", "--limit", "3", url=database_url)["jobs"]
    assert {j["batchId"] for j in newest} == {batch_id}
    assert sorted(j["payload"]["n"] for j in newest) == [1197, 1198, 1199]


def test_enqueue_from_file_with_a_bad_line_names_it_and_enqueues_nothing(
    database_url: str, tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"n": 1}\n{"n": 2}\n{"n": 3,\n{"n": 4}\n')
    result = tf("jobs", "enqueue", "double", "--from-file", str(items), url=database_url)
    assert f"{items}:3: not valid JSON" in one_line_error(result)
    missing = tf(
        "jobs", "enqueue", "double", "--from-file", str(tmp_path / "nope.jsonl"), url=database_url
    )
    assert "no such file" in one_line_error(missing)
    assert "nothing was created" in one_line_error(tf("jobs", "list", url=database_url), 1)


def test_wait_prints_the_result_or_the_error_or_times_out(
    database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)  # as a worker's first start does
    spec = write_cli_app(tmp_path)
    good = ok("jobs", "enqueue", "double", '{"n": 4}', "--app", spec, url=database_url).strip()
    bad = ok("jobs", "enqueue", "boom", '{"n": 1}', "--app", spec, url=database_url).strip()
    pending = tf("jobs", "wait", good, "--timeout", "0.3", url=database_url)
    assert "still pending after 0.3s" in one_line_error(pending)
    worker = subprocess.Popen(
        [TASKFLARE, "worker", spec, "--queue", "jobs"],
        env=cli_env(database_url, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = tf("jobs", "wait", good, "--timeout", "30", url=database_url)
        assert done.returncode == 0 and json.loads(done.stdout) == {"n": 8}
        failed = tf("jobs", "wait", bad, "--timeout", "30", url=database_url)
        assert "is failed: RuntimeError: kaboom 1" in one_line_error(failed)
        as_json = tf_json("jobs", "wait", good, url=database_url)
        assert as_json["status"] == "completed" and as_json["result"] == {"n": 8}
    finally:
        worker.terminate()
        worker.wait(30)


def test_errors_name_the_options_the_command_line_user_typed(sqlite_url: str) -> None:
    migrated(sqlite_url)  # as a worker's first start does

    def error(*options: str) -> str:
        result = tf("jobs", "enqueue", "hello", "{}", *options, url=sqlite_url)
        assert result.returncode in (1, 2), result
        return one_line_error(result, result.returncode)

    naive = error("--run-at", "2030-01-01T09:00")
    assert naive.startswith("error: --run-at 2030-01-01T09:00 has no UTC offset")
    assert "2030-01-01T09:00:00Z" in naive
    assert "--run-at 2999-01-01T09:00:00Z is " in error("--run-at", "2999-01-01T09:00Z")
    both = error("--run-at", "2030-01-01T09:00Z", "--delay", "5")
    assert both == "error: give either --run-at or --delay, not both"
    # Epoch seconds, as documented: a number of milliseconds is refused, and named.
    millis = str(int(time.time() * 1000) + 3_600_000)
    assert error("--run-at", millis).endswith("epoch milliseconds? --run-at is in seconds)")
    assert error("--priority", "99999999").startswith("error: --priority must be")
    assert error("--max-attempts", "0").startswith("error: --max-attempts must be")
    tab = error("--idempotency-key", "a\tb")  # refused over HTTP too
    assert tab == "error: --idempotency-key holds a control character (U+0009); keys cannot"
    assert "31,536,000 seconds (one year)" in error("--delay", "1e12")
    soon = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    local = soon.astimezone(timezone(timedelta(hours=2))).isoformat()
    later = ok("jobs", "enqueue", "hello", "{}", "--run-at", local, url=sqlite_url).strip()
    run_at = tf_json("jobs", "show", later, url=sqlite_url)["runAt"]
    # Stored as a delay on the database's clock: the stored time is the requested one plus
    # the command's own latency (seconds on a loaded machine); a zone read wrong is hours.
    assert abs((datetime.fromisoformat(run_at) - soon).total_seconds()) < 60


def test_enqueue_without_the_app_applies_the_stored_limits_or_refuses(
    database_url: str,
) -> None:
    from taskflare import App, Concurrency, Unique

    app = App(database_url)
    app.queue("partner-api", rate_limit="5/s")
    app.job("serial", concurrency=Concurrency(1, key=lambda p: p["account"]))(print)
    app.job("limited", queue="partner-api", max_concurrency=2)(print)
    app.job("once", unique=Unique(by=("type", "payload")))(print)
    app.run_sync(app.declare_queues())
    app.close_sync()
    refused, keyed, limited, once, again, sent, typo, anyway = tf_many(
        [
            ["jobs", "enqueue", "serial", '{"account": 9}'],
            ["jobs", "enqueue", "serial", '{"account": 9}', "--concurrency-key", "9"],
            ["jobs", "enqueue", "limited", "{}"],
            ["jobs", "enqueue", "once", '{"n": 1}'],
            ["jobs", "enqueue", "once", '{"n": 1}'],
            ["send", "partner-api", '{"n": 1}'],
            ["jobs", "enqueue", "limted", "{}"],  # no worker would ever run it
            ["jobs", "enqueue", "limted", "{}", "--queue", "partner-api"],
        ],
        url=database_url,
    )
    typo_line = one_line_error(typo)
    assert "'limted'" in typo_line and "limited, once, serial" in typo_line, typo_line
    assert "--app" in typo_line and "--queue" in typo_line
    assert anyway.returncode == 0, anyway.stderr  # --queue: the user's choice
    line = one_line_error(refused)
    assert "'serial'" in line and "--app" in line and "--concurrency-key" in line
    assert keyed.returncode == 0, keyed.stderr
    shown = tf_json("jobs", "show", limited.stdout.strip(), url=database_url)
    assert shown["queue"] == "partner-api"  # the type's queue, as the stored settings say
    assert {(h["kind"], h["queue"]) for h in shown["heldBy"]} <= {
        ("rate", "partner-api"),
        ("concurrency", "partner-api"),
    }
    ids = {once.stdout.split()[0], again.stdout.split()[0]}
    assert len(ids) == 1 and "duplicate" in again.stdout + once.stdout
    assert "runs job types" in one_line_error(sent)


UNIQUE_APP = """
import os
from taskflare import App, Unique

app = App(os.environ["TF_URL"])


@app.job("notify", unique=Unique(by=("type", "payload"), keys=("user",)))
def notify(payload):
    return None
"""


def test_enqueue_from_file_names_the_line_of_a_bad_payload(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "uniqueapp.py").write_text(UNIQUE_APP)
    spec = f"{tmp_path / 'uniqueapp.py'}:app"
    keyless, not_finite = tmp_path / "keyless.jsonl", tmp_path / "nan.jsonl"
    keyless.write_text('{"user": 1}\n\n{"usr": 3}\n')
    not_finite.write_text('{"user": 1}\n{"user": 2, "score": NaN}\n')
    missing_key, nan = tf_many(
        [
            ["jobs", "enqueue", "notify", "--from-file", str(keyless), "--app", spec],
            ["jobs", "enqueue", "notify", "--from-file", str(not_finite), "--app", spec],
        ],
        url=database_url,
    )
    line = one_line_error(missing_key)
    assert f"{keyless}:3: " in line and "'user'" in line  # the line, not the item's index
    assert f"{not_finite}:2: payload.score: NaN is not a JSON number" in one_line_error(nan)
    listed = tf("jobs", "list", "--json", url=database_url)
    assert listed.returncode == 1 or json.loads(listed.stdout)["jobs"] == []  # nothing stored


def test_a_bad_listing_option_is_one_line_naming_the_option(sqlite_url: str) -> None:
    """A cursor that no page ended with is the library's typed `InvalidQuery`, which the
    command line names as its user typed it; it was a bare `ValueError`, shown as
    `error: ValueError: invalid cursor ... (run with --debug for the traceback)`."""
    migrated(sqlite_url)  # as a worker's first start does
    ok("jobs", "enqueue", "hello", "{}", "--queue", "default", url=sqlite_url)
    for cursor in ("zz", "eyJhIjoxfQ"):  # not base64; base64 of another JSON shape
        line = one_line_error(tf("jobs", "list", "--cursor", cursor, url=sqlite_url))
        assert line == f"error: invalid --cursor '{cursor}' (not one an earlier page ended with)"
