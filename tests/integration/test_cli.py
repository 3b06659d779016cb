"""The `taskflare` executable: help, clear errors, migrate, and the `dev` main job."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import taskflare

from .procs import TASKFLARE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKFLARE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_commands_with_an_example(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("worker", "migrate", "dev"):
        assert command in result.stdout
    assert "Example:" in result.stdout
    worker_help = run("worker", "--help", cwd=tmp_path)
    assert "Example: taskflare worker" in worker_help.stdout


def test_worker_with_an_app_that_does_not_import_fails_with_one_clear_line(tmp_path: Path) -> None:
    result = run("worker", "no_such_module_xyz:app", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no_such_module_xyz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_worker_with_an_unknown_queue_fails_naming_it(tmp_path: Path) -> None:
    result = run("worker", f"{EXAMPLE}:app", "--queue", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "'nope'" in result.stderr and "Traceback" not in result.stderr


def test_migrate_creates_the_schema_then_reports_it_up_to_date(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    first = run("migrate", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied migrations 1" in first.stdout
    second = run("migrate", url, cwd=tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_worker_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    assert run("migrate", f"sqlite:///{db}", cwd=tmp_path).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    result = subprocess.run(
        [TASKFLARE, "worker", f"{EXAMPLE}:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"TASKFLARE_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "schema version 999" in result.stderr and "Traceback" not in result.stderr


def test_dev_runs_worker_producer_and_summary_then_stops_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [TASKFLARE, "dev", f"{EXAMPLE}:app", "--duration", "8", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "TASKFLARE_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "160",
        },
    )
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "acked" in line)
    columns = [c.strip() for c in header.strip("┃ ").split("┃")]
    last_row = [line for line in result.stdout.splitlines() if line.startswith("│ emails ")][-1]
    cells = [c.strip() for c in last_row.strip("│ ").split("│")]
    assert int(cells[columns.index("acked")]) > 0, result.stdout


def test_version_prints_the_package_version_and_exits_0(tmp_path: Path) -> None:
    expected = f"taskflare {taskflare.__version__}"
    for flag in ("--version", "-V"):
        result = subprocess.run(
            [sys.executable, "-m", "taskflare", flag],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
    assert run("--version", cwd=tmp_path).stdout.strip() == expected
