"""`taskflare cron list` and `taskflare cron trigger` (issue 5, point 5), run as processes."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from taskflare import App, ScheduledEvent
from taskflare.testing import drain

from .cli_run import migrated
from .procs import TASKFLARE

APP_SOURCE = """
import os
from taskflare import App

app = App(os.environ["TF_URL"])


@app.cron("0 3 * * *", name="nightly", tz="Europe/Paris", queue="maintenance")
async def nightly(event):
    pass


@app.cron("*/15 * * * *")
def quarter_hourly(event):
    pass
"""


def run(*args: str, cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKFLARE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        # PYTHONPATH kept: a worktree's tests run the worktree's code.
        env={
            "PATH": "/usr/bin:/bin",
            "TF_URL": url,
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )


def write_app(folder: Path, source: str = APP_SOURCE) -> str:
    path = folder / "cronapp.py"
    path.write_text(source)
    return f"{path}:app"


def listed(spec: str, folder: Path, url: str) -> dict[str, dict[str, object]]:
    result = run("cron", "list", spec, "--json", cwd=folder, url=url)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_cron_list_json_shows_each_trigger_with_its_next_three_runs(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_app(tmp_path)
    before = datetime.now(UTC)
    rows = listed(spec, tmp_path, sqlite_url)
    assert sorted(rows) == ["nightly", "quarter_hourly"]
    nightly = rows["nightly"]
    assert (nightly["cron"], nightly["tz"], nightly["queue"]) == (
        "0 3 * * *",
        "Europe/Paris",
        "maintenance",
    )
    assert nightly["last"] is None
    runs = [datetime.fromisoformat(t) for t in nightly["next"]]  # type: ignore[attr-defined]
    assert len(runs) == 3 and runs == sorted(runs) and runs[0] > before
    assert all(t.utcoffset() is not None and t.utcoffset().total_seconds() == 0 for t in runs)
    assert all(t.hour in (1, 2) for t in runs)  # 03:00 in Paris is 01:00 or 02:00 UTC
    quarter = [datetime.fromisoformat(t) for t in rows["quarter_hourly"]["next"]]  # type: ignore[attr-defined]
    assert [t.minute % 15 for t in quarter] == [0, 0, 0]
    assert (quarter[1] - quarter[0]).total_seconds() == 900


def test_cron_list_prints_a_table(tmp_path: Path, sqlite_url: str) -> None:
    result = run("cron", "list", write_app(tmp_path), cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 0, result.stderr
    for text in ("nightly", "quarter_hourly", "Europe/Paris", "never"):
        assert text in result.stdout


def test_cron_trigger_fires_one_now_and_list_shows_its_outcome(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_app(tmp_path)
    migrated(sqlite_url)  # as a worker's first start does: `cron trigger` creates none
    result = run("cron", "trigger", spec, "nightly", cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cron 'nightly' fired: job ")
    job_id = result.stdout.strip().rsplit(" ", 1)[-1]

    last = listed(spec, tmp_path, sqlite_url)["nightly"]["last"]
    assert isinstance(last, dict)
    assert (last["outcome"], last["jobId"]) == ("pending", job_id)

    # A worker (here: in-process, on the same file) runs the fired tick.
    app = App(sqlite_url)
    seen: list[ScheduledEvent] = []
    app.cron("0 3 * * *", name="nightly", tz="Europe/Paris", queue="maintenance")(seen.append)
    app.run_sync(drain(app))
    app.close_sync()
    assert [e.name for e in seen] == ["nightly"]

    last = listed(spec, tmp_path, sqlite_url)["nightly"]["last"]
    assert isinstance(last, dict) and last["outcome"] == "completed"


def test_cron_trigger_takes_a_triggers_expression_as_cloudflares_scheduled_does(
    tmp_path: Path, sqlite_url: str
) -> None:
    """`wrangler dev`'s `/__scheduled?cron=*/15+*+*+*+*` fires by expression (a wrangler
    file's triggers have no names of their own); it was 'no cron trigger named'."""
    spec = write_app(tmp_path, APP_SOURCE + TWIN_SOURCE)
    migrated(sqlite_url)  # as a worker's first start does: `cron trigger` creates none
    result = run("cron", "trigger", spec, "*/15 * * * *", cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cron 'quarter_hourly' fired: job ")
    twice = run("cron", "trigger", spec, "0 3 * * *", cwd=tmp_path, url=sqlite_url)
    assert twice.returncode == 1 and twice.stdout == ""
    assert "'0 3 * * *' is the expression of 2 triggers" in twice.stderr
    assert "nightly" in twice.stderr and "nightly_utc" in twice.stderr


TWIN_SOURCE = """

@app.cron("0 3 * * *", name="nightly_utc")
def nightly_utc(event):
    pass
"""


def test_cron_trigger_with_an_unknown_name_fails_with_one_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    result = run("cron", "trigger", write_app(tmp_path), "nope", cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no cron trigger named 'nope'" in lines[0]
    assert "nightly" in lines[0] and "quarter_hourly" in lines[0]


def test_cron_commands_with_a_bad_expression_or_app_fail_with_one_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    bad = write_app(tmp_path, APP_SOURCE.replace("0 3 * * *", "0 27 * * *"))
    result = run("cron", "list", bad, cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "hour field: 27 is out of range 0-23" in result.stderr
    missing = run("cron", "trigger", "no_such_module_xyz:app", "x", cwd=tmp_path, url=sqlite_url)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "no_such_module_xyz" in missing.stderr


def test_cron_help_has_an_example(tmp_path: Path, sqlite_url: str) -> None:
    result = run("cron", "--help", cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 0
    assert "list" in result.stdout and "trigger" in result.stdout
    assert "Example: taskflare cron list" in result.stdout


def test_cron_check_prints_next_runs_and_notes_cloudflare_weekday_numbers(
    tmp_path: Path, sqlite_url: str
) -> None:
    result = run("cron", "check", "0 18 * * 5L", "--json", cwd=tmp_path, url=sqlite_url)
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    runs = [datetime.fromisoformat(t) for t in checked["next"]]
    assert len(runs) == 5 and runs == sorted(runs)
    for moment in runs:  # the last Friday of its month, 18:00 UTC
        assert (moment.weekday(), moment.hour, moment.minute) == (4, 18, 0)
        assert (moment + timedelta(days=7)).month != moment.month
    assert checked["notes"] == ["day-of-week 5 is Friday here; on Cloudflare it is Thursday"]
    paris = run(
        "cron", "check", "@daily", "--tz", "Europe/Paris", "-n", "2", cwd=tmp_path, url=sqlite_url
    )
    assert paris.returncode == 0 and "00:00:00 CET (Europe/Paris)" in paris.stdout
    assert "note:" not in paris.stdout
    bad = run("cron", "check", "0 0 * * 1#9", cwd=tmp_path, url=sqlite_url)
    assert bad.returncode == 2 and "must be 1 to 5" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    never = run("cron", "check", "0 0 31W 2 *", cwd=tmp_path, url=sqlite_url)
    assert never.returncode == 2 and "never fires" in never.stderr  # invalid: a usage error
    assert len(never.stderr.strip().splitlines()) == 1
