"""Cron schedules across daylight-saving changes, following Vixie cron (`man 8 cron`).

A schedule whose hour field covers all 24 hours follows the real clock: both passes of a
repeated hour fire, skipped wall-clock times do not exist. Any other schedule runs once
per wall-clock time: a repeated time at its first occurrence, a skipped time once at the
first moment after the jump.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate, pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from taskflare.cron import CronSchedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
# Europe/Paris 2026: clocks jump 02:00 CET -> 03:00 CEST at 01:00 UTC on 29 March and go
# back 03:00 CEST -> 02:00 CET at 01:00 UTC on 25 October.
PARIS_SPRING = datetime(2026, 3, 29, 1, tzinfo=UTC)
PARIS_FALL = datetime(2026, 10, 25, 1, tzinfo=UTC)


def ticks(expression: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in (start, end]."""
    return CronSchedule.parse(expression, tz).between(start, end, 10_000)


def gaps(times: list[datetime]) -> set[timedelta]:
    return {later - earlier for earlier, later in pairwise(times)}


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- hourly or more often: the real clock ----------------------------------------------


def test_hourly_fires_both_passes_of_the_repeated_hour_without_a_gap() -> None:
    night = ticks(
        "0 * * * *",
        "Europe/Paris",
        PARIS_FALL - timedelta(hours=5),
        PARIS_FALL + timedelta(hours=5),
    )
    assert gaps(night) == {timedelta(hours=1)}
    assert utc(2026, 10, 25, 0) in night and utc(2026, 10, 25, 1) in night
    both = [t for t in night if t.astimezone(PARIS).hour == 2]
    assert both == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)]  # 02:00 CEST, then 02:00 CET


def test_every_fifteen_minutes_has_no_gap_when_clocks_fall_back() -> None:
    night = ticks(
        "*/15 * * * *",
        "Europe/Paris",
        PARIS_FALL - timedelta(hours=3),
        PARIS_FALL + timedelta(hours=3),
    )
    assert gaps(night) == {timedelta(minutes=15)}
    assert len(night) == 6 * 4


def test_every_ten_seconds_has_no_gap_when_clocks_fall_back() -> None:
    night = ticks(
        "*/10 * * * * *",
        "Europe/Paris",
        PARIS_FALL - timedelta(minutes=5),
        PARIS_FALL + timedelta(minutes=5),
    )
    assert gaps(night) == {timedelta(seconds=10)}
    assert PARIS_FALL in night


def test_hourly_has_no_run_at_a_wall_clock_time_that_does_not_exist() -> None:
    night = ticks(
        "0 * * * *",
        "Europe/Paris",
        PARIS_SPRING - timedelta(hours=4),
        PARIS_SPRING + timedelta(hours=4),
    )
    walls = [t.astimezone(PARIS).strftime("%H:%M") for t in night]
    assert "02:00" not in walls
    assert len(walls) == len(set(walls)) == len(night) == 8
    assert gaps(night) == {timedelta(hours=1)}  # 01:00 CET is followed by 03:00 CEST


def test_hourly_in_new_york_fires_both_one_oclocks() -> None:
    # New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST at 06:00 UTC.
    night = ticks("0 * * * *", "America/New_York", utc(2026, 11, 1, 3), utc(2026, 11, 1, 9))
    assert night == [utc(2026, 11, 1, hour) for hour in range(4, 10)]
    assert [t.astimezone(NEW_YORK).hour for t in night] == [0, 1, 1, 2, 3, 4]


def test_half_hour_dst_shift_is_followed_too() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 goes back to 01:30 (15:00 UTC).
    night = ticks("*/15 * * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 13), utc(2026, 4, 4, 17))
    assert gaps(night) == {timedelta(minutes=15)}


# -- fixed hours: once per wall-clock time -----------------------------------------------


def test_fixed_time_fires_once_on_the_fall_back_night_at_its_first_occurrence() -> None:
    day = ticks("30 2 * * *", "Europe/Paris", utc(2026, 10, 24, 12), utc(2026, 10, 25, 22))
    assert day == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST; not again at 02:30 CET


def test_fixed_time_skipped_by_the_jump_fires_at_the_first_moment_after_it() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Paris")
    assert schedule.upcoming(utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        PARIS_SPRING,  # 03:00 CEST: 02:30 did not exist
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_skipped_time_in_new_york_fires_after_the_jump() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    schedule = CronSchedule.parse("30 2 * * *", "America/New_York")
    assert schedule.next_after(utc(2026, 3, 8, 0)) == utc(2026, 3, 8, 7)


def test_several_skipped_times_landing_on_one_moment_fire_once() -> None:
    window = (PARIS_SPRING - timedelta(hours=3), PARIS_SPRING + timedelta(hours=3))
    assert ticks("0,20,40 2 * * *", "Europe/Paris", *window) == [PARIS_SPRING]
    # 02:00 is skipped and 03:00 is the moment after the jump: one run, not two.
    assert ticks("0 1,2,3 * * *", "Europe/Paris", *window) == [
        PARIS_SPRING - timedelta(hours=1),  # 01:00 CET
        PARIS_SPRING,  # 03:00 CEST, standing in for 02:00 too
    ]


def test_every_other_hour_is_a_fixed_schedule() -> None:
    night = ticks(
        "0 */2 * * *",
        "Europe/Paris",
        PARIS_FALL - timedelta(hours=4),
        PARIS_FALL + timedelta(hours=4),
    )
    assert [t.astimezone(PARIS).hour for t in night] == [0, 2, 4, 6]
    assert night[1] == utc(2026, 10, 25, 0)  # the first 02:00 only


# -- zones without daylight saving are unaffected ----------------------------------------


def test_utc_and_fixed_offset_zones_are_unaffected() -> None:
    start = utc(2026, 10, 24, 22)
    assert ticks("0 * * * *", "UTC", start, start + timedelta(hours=4)) == [
        start + timedelta(hours=h) for h in range(1, 5)
    ]
    # Etc/GMT-2 is UTC+2 all year.
    assert CronSchedule.parse("30 2 * * *", "Etc/GMT-2").upcoming(utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 30, 0, 30),
    ]


# -- properties ----------------------------------------------------------------------------

DST_ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago"]

MINUTES = st.sampled_from(["0", "30", "*/15", "0,45", "*/20", "59"])
HOURS = st.sampled_from(["*", "*/2", "2", "1-3", "0,2,3", "0-23", "2-23", "1,2", "23"])
FIVE_FIELDS = st.tuples(MINUTES, HOURS).map(lambda p: f"{p[0]} {p[1]} * * *")
SIX_FIELDS = st.tuples(st.sampled_from(["0", "*/20", "30"]), FIVE_FIELDS).map(" ".join)


@lru_cache
def offset_changes(tz: str) -> list[datetime]:
    """The moments in 2015-2035 when `tz` changes its UTC offset (on whole hours of UTC)."""
    zone = ZoneInfo(tz)

    def changes(moments: list[datetime]) -> list[datetime]:
        offsets = [m.astimezone(zone).utcoffset() for m in moments]
        return [m for m, (a, b) in zip(moments[1:], pairwise(offsets), strict=True) if a != b]

    first = datetime(2015, 1, 1, tzinfo=UTC)
    days = changes([first + timedelta(days=d) for d in range(21 * 366)])
    return [
        hour for day in days for hour in changes([day - timedelta(hours=24 - h) for h in range(25)])
    ]


@st.composite
def near_an_offset_change(draw: st.DrawFn) -> tuple[str, datetime]:
    """A DST zone and a moment up to eight hours from one of its offset changes."""
    tz = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(offset_changes(tz)))
    return tz, change + timedelta(seconds=draw(st.integers(-8 * 3600, 8 * 3600)))


ANY_MOMENT = st.tuples(
    st.sampled_from(DST_ZONES),
    st.datetimes(datetime(2000, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)),
)


@settings(max_examples=200, deadline=None)
@given(
    expression=st.one_of(FIVE_FIELDS, SIX_FIELDS),
    where=st.one_of(near_an_offset_change(), ANY_MOMENT),
)
def test_upcoming_is_strictly_increasing_across_dst(
    expression: str, where: tuple[str, datetime]
) -> None:
    tz, after = where
    schedule = CronSchedule.parse(expression, tz)
    times = schedule.upcoming(after, 40)
    assert times[0] > after
    assert all(earlier < later for earlier, later in pairwise(times))
    assert schedule.between(after, times[-1], 1000) == times


def expected(expression: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The rule by brute force over every minute in [start, end) (5-field expressions)."""
    schedule = CronSchedule.parse(expression, tz)
    zone = ZoneInfo(tz)
    minutes = [start + timedelta(minutes=m) for m in range((end - start) // timedelta(minutes=1))]
    walls = [m.astimezone(zone).replace(tzinfo=None) for m in minutes]

    def matches(wall: datetime) -> bool:
        return wall.minute in schedule.minutes and wall.hour in schedule.hours

    if schedule.hours == frozenset(range(24)):
        return [m for m, wall in zip(minutes, walls, strict=True) if matches(wall) and m > start]
    # A wall-clock time is due the first moment the clock shows it or a later time.
    reached = list(accumulate(walls, max))
    due = set()
    wall = walls[0]
    while wall < walls[-1]:
        if matches(wall) and wall > walls[0]:
            due.add(minutes[bisect_left(reached, wall)])
        wall += timedelta(minutes=1)
    return sorted(due)


@settings(max_examples=100, deadline=None)
@given(expression=FIVE_FIELDS, where=near_an_offset_change())
def test_fire_times_near_a_dst_change_follow_the_rule(
    expression: str, where: tuple[str, datetime]
) -> None:
    tz, moment = where
    start = moment.replace(minute=0, second=0) - timedelta(hours=12)
    end = start + timedelta(hours=24)
    got = ticks(expression, tz, start, end - timedelta(minutes=2))
    assert got == [
        t for t in expected(expression, tz, start, end) if t <= end - timedelta(minutes=2)
    ]
