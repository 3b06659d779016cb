"""`taskflare dev` prints where the dashboard is."""

from __future__ import annotations

import re

from .cli_run import tf
from .conftest import Harness


def test_dev_prints_the_dashboard_address(harness: Harness) -> None:
    result = tf(
        "dev",
        harness.spec,
        "--port",
        "0",
        "--duration",
        "2",
        url=harness.url,
        TF_LOG_DIR=str(harness.folder),
        cwd=harness.folder,
    )
    assert result.returncode == 0, result.stderr
    api = re.search(r"HTTP API on http://127\.0\.0\.1:(\d+)", result.stdout)
    assert api is not None, result.stdout
    assert f"Dashboard on http://127.0.0.1:{api.group(1)}/dashboard/" in result.stdout
