"""A plain script that uses the sync API and exits without `close_sync` (here after an
error) exits quietly: its connections are closed at exit, on both backends, instead of
the pool's tasks being destroyed pending ("Task was destroyed but it is pending!")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from taskflare import App

app = App(sys.argv[1])
app.queue("work").send_sync({"n": 1})
app.enqueue_sync("no-such-type", {"n": 1})  # raises: the script ends here, never closing
"""


def test_a_script_that_dies_without_closing_exits_without_pool_warnings(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, "-X", "dev", str(tmp_path / "script.py"), database_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "UnknownJobType: unknown job type 'no-such-type'" in result.stderr
    assert "Task was destroyed" not in result.stderr, result.stderr
    assert "was never awaited" not in result.stderr, result.stderr
