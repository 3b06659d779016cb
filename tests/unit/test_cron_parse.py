"""Cron expressions: syntax, fire times, time zones with DST, and errors that name the field."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskflare.cron import CronSchedule, InvalidCronExpression

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def fires(expression: str, after: datetime = JAN_1, count: int = 3, tz: str = "UTC") -> list[str]:
    """The next `count` fire times as ISO strings in UTC."""
    schedule = CronSchedule.parse(expression, tz)
    return [t.isoformat() for t in schedule.upcoming(after, count)]


# -- syntax ---------------------------------------------------------------------------


def test_five_fields_have_an_implicit_zero_second() -> None:
    assert fires("0 0 * * *") == [
        "2024-01-02T00:00:00+00:00",
        "2024-01-03T00:00:00+00:00",
        "2024-01-04T00:00:00+00:00",
    ]
    assert CronSchedule.parse("* * * * *").seconds == frozenset({0})


def test_six_fields_put_seconds_first() -> None:
    assert fires("*/2 * * * * *") == [
        "2024-01-01T00:00:02+00:00",
        "2024-01-01T00:00:04+00:00",
        "2024-01-01T00:00:06+00:00",
    ]
    assert fires("30 15 10 * * *", count=2) == [
        "2024-01-01T10:15:30+00:00",
        "2024-01-02T10:15:30+00:00",
    ]


def test_lists_ranges_and_steps() -> None:
    schedule = CronSchedule.parse("1,15,30 9-11 */10 * *")
    assert schedule.minutes == {1, 15, 30}
    assert schedule.hours == {9, 10, 11}
    assert schedule.days == {1, 11, 21, 31}
    assert CronSchedule.parse("10-50/20 * * * *").minutes == {10, 30, 50}
    # A single value with a step runs from that value to the end of the field (Vixie cron).
    assert CronSchedule.parse("45/5 * * * *").minutes == {45, 50, 55}
    assert CronSchedule.parse("0-4,58-59 * * * *").minutes == {0, 1, 2, 3, 4, 58, 59}


def test_month_and_day_names_are_case_insensitive() -> None:
    schedule = CronSchedule.parse("0 0 * JAN,Feb,mar-may Mon-FRI")
    assert schedule.months == {1, 2, 3, 4, 5}
    assert schedule.weekdays == {1, 2, 3, 4, 5}
    assert CronSchedule.parse("0 0 * * sun").weekdays == {0}


def test_day_range_may_end_on_sunday() -> None:
    assert CronSchedule.parse("0 0 * * fri-sun").weekdays == {5, 6, 0}
    assert fires("0 0 * * fri-sun") == [
        "2024-01-05T00:00:00+00:00",
        "2024-01-06T00:00:00+00:00",
        "2024-01-07T00:00:00+00:00",
    ]


def test_seven_and_zero_both_mean_sunday() -> None:
    assert CronSchedule.parse("0 0 * * 7").weekdays == {0}
    assert fires("0 0 * * 7") == fires("0 0 * * 0") == fires("0 0 * * sun")
    assert fires("0 0 * * 7", count=1) == ["2024-01-07T00:00:00+00:00"]  # a Sunday
    assert CronSchedule.parse("0 0 * * 5-7").weekdays == {5, 6, 0}


def test_question_mark_is_a_wildcard() -> None:
    assert fires("0 0 ? * mon", count=1) == fires("0 0 * * mon", count=1)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # The 1st of the month, and every Monday: Vixie cron's OR rule.
    assert fires("0 9 1 * mon", count=6) == [
        "2024-01-01T09:00:00+00:00",  # Monday the 1st
        "2024-01-08T09:00:00+00:00",
        "2024-01-15T09:00:00+00:00",
        "2024-01-22T09:00:00+00:00",
        "2024-01-29T09:00:00+00:00",
        "2024-02-01T09:00:00+00:00",  # a Thursday, but the 1st
    ]


def test_only_day_of_week_restricted_means_every_such_weekday() -> None:
    assert fires("0 0 * * wed", count=2) == [
        "2024-01-03T00:00:00+00:00",
        "2024-01-10T00:00:00+00:00",
    ]


def test_february_29_fires_in_leap_years_only() -> None:
    assert fires("0 0 29 2 *", count=2) == [
        "2024-02-29T00:00:00+00:00",
        "2028-02-29T00:00:00+00:00",
    ]


def test_between_is_after_exclusive_until_inclusive_and_limited() -> None:
    schedule = CronSchedule.parse("*/10 * * * * *")
    start = JAN_1
    ticks = schedule.between(start, start + timedelta(seconds=30), 100)
    assert [t.second for t in ticks] == [10, 20, 30]
    assert len(schedule.between(start, start + timedelta(hours=1), 5)) == 5
    assert schedule.between(start, start + timedelta(seconds=5), 5) == []


# -- time zones ---------------------------------------------------------------------------


def test_time_zone_wall_clock_is_returned_in_utc() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert fires("0 9 * * *", tz="Europe/Paris", count=1) == ["2024-01-01T08:00:00+00:00"]
    assert fires("0 9 * * *", datetime(2024, 7, 1, tzinfo=UTC), 1, "Europe/Paris") == [
        "2024-07-01T07:00:00+00:00"
    ]


def test_spring_forward_runs_a_skipped_fixed_time_right_after_the_jump() -> None:
    # New York, 2024-03-10: 02:00 jumps to 03:00, so 02:30 does not exist that day; as in
    # cron, a fixed-time schedule then runs at the first moment after the jump.
    after = datetime(2024, 3, 9, tzinfo=UTC)
    assert fires("30 2 * * *", after, 3, "America/New_York") == [
        "2024-03-09T07:30:00+00:00",  # 02:30 EST
        "2024-03-10T07:00:00+00:00",  # 03:00 EDT, the first moment after the jump
        "2024-03-11T06:30:00+00:00",  # 02:30 EDT
    ]


def test_fall_back_fires_an_ambiguous_time_once_at_its_first_occurrence() -> None:
    # New York, 2024-11-03: 01:00-02:00 happens twice (EDT, then EST).
    after = datetime(2024, 11, 2, tzinfo=UTC)
    assert fires("30 1 * * *", after, 3, "America/New_York") == [
        "2024-11-02T05:30:00+00:00",
        "2024-11-03T05:30:00+00:00",  # 01:30 EDT; not again at 01:30 EST (06:30 UTC)
        "2024-11-04T06:30:00+00:00",
    ]


def test_fall_back_day_runs_a_fixed_hour_schedule_once_per_wall_time() -> None:
    schedule = CronSchedule.parse("*/30 0-3 * * *", "America/New_York")
    zone = ZoneInfo("America/New_York")
    start = datetime(2024, 11, 3, 0, 0, tzinfo=zone).astimezone(UTC)
    ticks = schedule.between(start, start + timedelta(hours=25), 1000)
    walls = [t.astimezone(zone).strftime("%H:%M") for t in ticks]
    assert len(walls) == len(set(walls))  # no wall-clock time twice
    assert ticks == sorted(set(ticks))


def test_fall_back_day_an_every_half_hour_schedule_keeps_its_real_interval() -> None:
    schedule = CronSchedule.parse("*/30 * * * *", "America/New_York")
    zone = ZoneInfo("America/New_York")
    start = datetime(2024, 11, 3, 0, 0, tzinfo=zone).astimezone(UTC)
    ticks = schedule.between(start, start + timedelta(hours=25), 1000)
    gaps = {b - a for a, b in itertools.pairwise(ticks)}
    assert gaps == {timedelta(minutes=30)}  # through the repeated hour, no gap


# -- errors name the field --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("60 * * * *", ["minute field", "60", "0-59"]),
        ("0 24 * * *", ["hour field", "24", "0-23"]),
        ("0 0 0 * *", ["day-of-month field", "0", "1-31"]),
        ("0 0 32 * *", ["day-of-month field", "32"]),
        ("0 0 * 13 *", ["month field", "13", "1-12"]),
        ("0 0 * * 8", ["day-of-week field", "8", "0-7"]),
        ("60 0 0 * * *", ["second field", "60"]),
        ("*/0 * * * *", ["minute field", "step", "positive"]),
        ("*/x * * * *", ["minute field", "step"]),
        ("0 */-1 * * *", ["hour field", "step"]),
        ("5-1 * * * *", ["minute field", "runs backwards"]),
        ("0 0 * dec-jan *", ["month field", "runs backwards"]),
        ("0 0 * foo *", ["month field", "'foo'", "not a number or a name"]),
        ("0 0 * * funday", ["day-of-week field", "funday"]),
        ("abc * * * *", ["minute field", "not a number"]),
        ("1,,2 * * * *", ["minute field", "empty item"]),
        ("0 0 LX * *", ["day-of-month field", "'LX'"]),
        ("* * * *", ["4 fields", "use 5"]),
        ("0 0 * * * * *", ["7 fields", "6 (with seconds first)"]),
        ("", ["0 fields"]),
        ("0 0 30 2 *", ["never fires", "day-of-month field", "month field"]),
        ("0 0 31 4,6,9,11 *", ["never fires", "day-of-month field"]),
        # Digits str.isdigit takes but cron does not (int() refuses '²', reads U+0661 as 1).
        ("0 0 ² * *", ["day-of-month field", "'²'", "not a number"]),
        ("\u0661 * * * *", ["minute field", "not a number"]),
        ("*/\u0665 * * * *", ["minute field", "step"]),
        ("0 0 1\u0665W * *", ["day-of-month field"]),
        ("0 0 * * 1#\u0662", ["day-of-week field", "1 to 5"]),
        # A slash needs its step: '5/' is not '5'.
        ("5/ * * * *", ["minute field", "step ''", "positive"]),
        ("0 */ * * *", ["hour field", "step"]),
    ],
)
def test_invalid_expression_names_the_bad_field(expression: str, words: list[str]) -> None:
    with pytest.raises(InvalidCronExpression) as raised:
        CronSchedule.parse(expression)
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(InvalidCronExpression, match="unknown time zone 'Mars/Olympus'"):
        CronSchedule.parse("0 0 * * *", "Mars/Olympus")


def test_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidCronExpression, match="must be a string"):
        CronSchedule.parse(5)  # type: ignore[arg-type]


def test_invalid_expression_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        CronSchedule.parse("61 * * * *")


def test_day_of_month_never_in_month_still_fires_when_a_weekday_is_given() -> None:
    # OR rule: the 30th never comes in February, but Mondays do.
    assert fires("0 0 30 2 mon", count=1) == ["2024-02-05T00:00:00+00:00"]


# -- properties -------------------------------------------------------------------------


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    single = st.integers(low, high).map(str)
    ranged = st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda p: f"{min(p)}-{max(p)}"
    )
    stepped = st.integers(1, max(1, (high - low) // 2)).map(lambda s: f"*/{s}")
    item = st.one_of(st.just("*"), single, ranged, stepped)
    return st.lists(item, min_size=1, max_size=3).map(",".join)


def _normalise(part: str) -> str:
    return "*" if "*" in part.split(",") else part


EXPRESSIONS = st.tuples(
    _field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 7)
).map(lambda p: " ".join([p[0], p[1], _normalise(p[2]), p[3], _normalise(p[4])]))
MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


def _matches(schedule: CronSchedule, moment: datetime) -> bool:
    day_in = moment.day in schedule.days
    weekday_in = (moment.isoweekday() % 7) in schedule.weekdays
    if schedule.days_restricted and schedule.weekdays_restricted:
        day_ok = day_in or weekday_in
    else:
        day_ok = day_in and weekday_in
    return (
        moment.second in schedule.seconds
        and moment.minute in schedule.minutes
        and moment.hour in schedule.hours
        and moment.month in schedule.months
        and day_ok
    )


@settings(max_examples=200, deadline=None)
@given(expression=EXPRESSIONS, after=MOMENTS)
def test_next_after_is_strictly_after_and_matches_every_field(
    expression: str, after: datetime
) -> None:
    schedule = CronSchedule.parse(expression)
    nxt = schedule.next_after(after)
    assert nxt > after
    assert nxt.tzinfo is not None and nxt.utcoffset() == timedelta(0)
    assert _matches(schedule, nxt)
    # Nothing was skipped: no earlier matching minute lies in between (checked when close).
    if nxt - after <= timedelta(days=2):
        moment = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
        while moment < nxt:
            assert not _matches(schedule, moment), f"{moment} matches but {nxt} was returned"
            moment += timedelta(minutes=1)
    # The next tick after one tick is later still, and `upcoming` agrees with `next_after`.
    assert schedule.upcoming(after, 2) == [nxt, schedule.next_after(nxt)]


@settings(max_examples=100, deadline=None)
@given(
    expression=EXPRESSIONS,
    after=MOMENTS,
    tz=st.sampled_from(
        ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]
    ),
)
def test_next_after_in_a_time_zone_is_strictly_after_and_matches_local_fields(
    expression: str, after: datetime, tz: str
) -> None:
    schedule = CronSchedule.parse(expression, tz)
    nxt = schedule.next_after(after)
    assert nxt > after
    zone = ZoneInfo(tz)
    local = nxt.astimezone(zone)
    # A fixed time skipped by a spring-forward jump runs at the first moment after it,
    # whose wall clock does not match the fields: the moment just before is the jump.
    just_before = (nxt - timedelta(microseconds=1)).astimezone(zone)
    jumped = just_before.utcoffset() != local.utcoffset()
    assert jumped or _matches(schedule, local)


def test_a_rare_but_valid_day_is_found_however_far_it_is() -> None:
    """The fifth Monday of February needs a 29 February on a Monday: 2044, then 2072 (up
    to 40 years apart). Such an expression was refused as one that "never fires"."""
    schedule = CronSchedule.parse("0 0 * 2 mon#5")
    assert schedule.upcoming(datetime(2026, 1, 1, tzinfo=UTC), 2) == [
        datetime(2044, 2, 29, tzinfo=UTC),
        datetime(2072, 2, 29, tzinfo=UTC),
    ]
    assert schedule.next_after(datetime(2072, 3, 1, tzinfo=UTC)) == datetime(
        2112, 2, 29, tzinfo=UTC
    )


def test_an_expression_whose_days_never_come_says_so() -> None:
    """The weekday nearest the 31st, in a month that has no 31st, is never."""
    with pytest.raises(InvalidCronExpression, match="never fires"):
        CronSchedule.parse("0 0 31W 2 *").next_after(datetime(2026, 1, 1, tzinfo=UTC))


def test_a_time_zone_that_is_not_a_name_is_refused_by_name_or_read_as_its_key() -> None:
    """tz=5 escaped as a TypeError from ZoneInfo; a ZoneInfo itself is read as its key."""
    with pytest.raises(InvalidCronExpression, match="tz must be an IANA time zone name"):
        CronSchedule.parse("0 0 * * *", 5)  # type: ignore[arg-type]
    paris = CronSchedule.parse("0 9 * * *", ZoneInfo("Europe/Paris"))  # type: ignore[arg-type]
    assert paris.tz == "Europe/Paris"
    assert paris.next_after(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(
        2026, 12, 1, 8, tzinfo=UTC
    )
