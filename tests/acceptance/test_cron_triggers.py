"""Cron triggers as a Workers user writes them, and once per tick across workers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from helpers import running_worker, wait_until
from taskflare import App, CronSchedule, ScheduledEvent


async def test_two_running_workers_fire_each_tick_once(database_url: str) -> None:
    seen: list[tuple[str, datetime]] = []
    apps = []
    for worker in ("w1", "w2"):
        app = App(database_url)

        def handler(event: ScheduledEvent, worker: str = worker) -> None:
            assert event.cron == "* * * * * *" and event.name == "heartbeat"
            seen.append((worker, event.scheduled_time))

        app.cron("* * * * * *", name="heartbeat")(handler)
        apps.append(app)
    try:
        async with running_worker(apps[0]), running_worker(apps[1]):
            await wait_until(lambda: len(seen) >= 4, timeout=30, what="four ticks")
    finally:
        for app in apps:
            await app.close()
    times = [t for _, t in seen]
    assert len(times) == len(set(times)), f"a tick ran twice: {sorted(times)}"
    assert all(t.microsecond == 0 and t.tzinfo is not None for t in times)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Cloudflare's documented examples, spelled with names (which mean the same there).
        ("0 17 * * sun", ["2026-03-01 17:00 Sun", "2026-03-08 17:00 Sun"]),
        ("10 7 * * mon-fri", ["2026-03-02 07:10 Mon", "2026-03-03 07:10 Tue"]),
        ("0 18 * * friL", ["2026-03-27 18:00 Fri", "2026-04-24 18:00 Fri"]),
        ("59 23 LW * *", ["2026-03-31 23:59 Tue", "2026-04-30 23:59 Thu"]),
        # The seeds' triggers.
        ("0 0 * * *", ["2026-03-01 00:00 Sun", "2026-03-02 00:00 Mon"]),
        ("0 */6 * * *", ["2026-02-28 18:00 Sat", "2026-03-01 00:00 Sun"]),
        ("0 9 * * 1", ["2026-03-02 09:00 Mon", "2026-03-09 09:00 Mon"]),
    ],
)
def test_cloudflare_style_expressions_fire_when_documented(
    expression: str, expected: list[str]
) -> None:
    after = datetime(2026, 2, 28, 12, 0, tzinfo=UTC)  # a Saturday
    runs = CronSchedule.parse(expression).upcoming(after, 2)
    assert [r.strftime("%Y-%m-%d %H:%M %a") for r in runs] == expected
