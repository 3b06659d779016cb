"""A count that stopped at the counting limit is shown as "at least" on every surface:
the CLI's queue table, the dashboard's cells."""

from __future__ import annotations

import io

from rich.console import Console

from taskflare.cli.queues import queue_table
from taskflare.web.dashboard.render import atleast


def test_cli_queue_table_marks_capped_counts() -> None:
    queue = {
        "name": "emails",
        "paused": False,
        "depth": {"ready": 10_000, "leased": 3, "failed": 10_000},
        "depthCapped": ["failed", "ready"],
        "oldestPendingAgeSeconds": 1.5,
    }
    out = io.StringIO()
    Console(file=out, width=120).print(queue_table([queue]))
    text = out.getvalue()
    assert "10000+" in text and text.count("10000+") == 2
    assert " 3 " in text and "3+" not in text


def test_dashboard_cells_mark_capped_counts() -> None:
    assert atleast(10_000, True) == "10000+"
    assert atleast(7, False) == "7"
    assert atleast(2_000_000, False) == "2000000"  # never an exponent
    assert atleast(None, False) == "0"
