"""Tables on an 80-column terminal: ids are never cut, nothing is cut with `…`; what does
not fit wraps, or is left out with a caption saying so."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from .cli_run import make_dead_letters, ok, tf_json, write_cli_app

LONG_TYPE = "a-rather-long-job-type-name-for-narrow-terminals"


def narrow(*args: str, url: str) -> str:
    out = ok(*args, url=url, COLUMNS="80")
    for line in out.splitlines():
        assert Text.from_ansi(line).cell_len <= 80, f"{args}: {line!r}"
    assert "…" not in out, f"{args} cut a value:\n{out}"
    return out


def test_every_table_fits_80_columns_without_cutting_ids(sqlite_url: str, tmp_path: Path) -> None:
    spec = write_cli_app(tmp_path)
    dead = make_dead_letters(sqlite_url, 2)
    job = ok("jobs", "enqueue", LONG_TYPE, '{"n": 1}', url=sqlite_url).strip()

    jobs = narrow("jobs", "list", url=sqlite_url)
    assert job in jobs and "pending" in jobs
    assert "not shown at this width" in jobs  # a caption names what was left out
    listed = narrow("dlq", "list", "work", url=sqlite_url)
    assert all(d in listed for d in dead)
    failed = narrow("queues", "failed", "work", url=sqlite_url)
    originals = tf_json("queues", "failed", "work", url=sqlite_url)["messages"]
    assert all(m["id"] in failed for m in originals) and "boom" in failed
    for command in (["queues", "list"], ["stats", "--interval", "0.2"], ["cron", "list", spec]):
        narrow(*command, url=sqlite_url)
    assert "work-dlq" in narrow("queues", "list", url=sqlite_url)
