"""Cloudflare's cron syntax: L, W, LW, #, @shorthands; checked against cronsim (a kept
cron library) with property-based tests over the syntax both understand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from taskflare.cron import CronSchedule, InvalidCronExpression

START = datetime(2026, 11, 1, tzinfo=UTC)


def runs(expression: str, count: int = 3, after: datetime = START) -> list[str]:
    times = CronSchedule.parse(expression).upcoming(after, count)
    return [t.strftime("%Y-%m-%d %H:%M") for t in times]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 18 * * 5L", ["2026-11-27 18:00", "2026-12-25 18:00", "2027-01-29 18:00"]),
        ("59 23 LW * *", ["2026-11-30 23:59", "2026-12-31 23:59", "2027-01-29 23:59"]),
        ("0 9 * * 1#2", ["2026-11-09 09:00", "2026-12-14 09:00", "2027-01-11 09:00"]),
        ("0 0 L * *", ["2026-11-30 00:00", "2026-12-31 00:00", "2027-01-31 00:00"]),
        ("0 0 L 2 *", ["2027-02-28 00:00", "2028-02-29 00:00", "2029-02-28 00:00"]),
        # 15 Nov 2026 is a Sunday: the Monday after; 15 Aug 2026 a Saturday: the Friday before.
        ("0 0 15W 11 *", ["2026-11-16 00:00", "2027-11-15 00:00", "2028-11-15 00:00"]),
        ("0 0 15W 8 *", ["2027-08-16 00:00", "2028-08-15 00:00", "2029-08-15 00:00"]),
        # 1 Aug 2027 is a Sunday, 1 May 2027 a Saturday: never into the month before.
        ("0 0 1W 5 *", ["2027-05-03 00:00", "2028-05-01 00:00", "2029-05-01 00:00"]),
        ("0 0 L,15 * *", ["2026-11-15 00:00", "2026-11-30 00:00", "2026-12-15 00:00"]),
        ("0 12 * * fri#1,1L", ["2026-11-06 12:00", "2026-11-30 12:00", "2026-12-04 12:00"]),
    ],
)
def test_month_dependent_days(expression: str, expected: list[str]) -> None:
    assert runs(expression) == expected


@pytest.mark.parametrize(
    ("shorthand", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_shorthands(shorthand: str, same_as: str) -> None:
    assert runs(shorthand, 5) == runs(same_as, 5)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("@every5m", "unknown shorthand"),
        ("0 0 * * 1#6", "must be 1 to 5"),
        ("0 0 * * 8L", "out of range"),
        ("0 0 32W * *", "out of range"),
        ("0 0 XW * *", "not a number"),
    ],
)
def test_bad_special_items_are_named(expression: str, says: str) -> None:
    with pytest.raises(InvalidCronExpression, match=says):
        CronSchedule.parse(expression)


# -- property-based: taskflare and cronsim agree on the syntax both understand ----------


def _items(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    single = number.map(str)
    if names:
        single = single | st.sampled_from(names)
    ranged = st.tuples(number, number).map(lambda t: f"{min(t)}-{max(t)}")
    # A stepped range runs low to high (cronsim reads a one-value range `5-5/2` as
    # `5-max/2`, a quirk no one writes on purpose).
    wide = st.tuples(number, number).filter(lambda t: t[0] != t[1])
    stepped = st.tuples(wide.map(lambda t: f"{min(t)}-{max(t)}"), number.map(str))
    steps = st.tuples(stepped, st.integers(1, high - low + 1)).map(lambda t: f"{t[0][0]}/{t[1]}")
    return single | ranged | steps


def _field(
    low: int, high: int, specials: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[str]:
    item = _items(low, high)
    if specials is not None:
        item = item | specials
    listed = st.lists(item, min_size=1, max_size=3).map(",".join)
    # A day field that starts with `*` is unrestricted for cronsim (Vixie cron's rule);
    # taskflare reads only a bare `*` so: generate `*` alone, or items.
    every = st.integers(1, high - low + 1).map(lambda n: f"*/{n}")
    return st.just("*") | listed | (every if specials is None and low == 0 else st.nothing())


DAY_SPECIALS = st.sampled_from(["L", "LW"])
WEEKDAY_SPECIALS = st.integers(0, 6).map(lambda d: f"{d}L") | st.tuples(
    st.integers(0, 6), st.integers(1, 5)
).map(lambda t: f"{t[0]}#{t[1]}")

EXPRESSIONS = st.tuples(
    _field(0, 59),
    _field(0, 23),
    _field(1, 28, DAY_SPECIALS),
    _field(1, 12),
    _field(0, 6, WEEKDAY_SPECIALS),
).map(" ".join)

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS, MOMENTS)
def test_next_runs_match_cronsim_in_utc(expression: str, after: datetime) -> None:
    ours = CronSchedule.parse(expression).upcoming(after, 4)
    theirs = CronSim(expression, after)
    expected = [next(theirs) for _ in range(4)]
    assert ours == expected, expression


def test_a_plain_hourly_trigger_matches_cronsim_over_a_year() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    ours = CronSchedule.parse("7 * * * *").between(after, after + timedelta(days=365), 10_000)
    theirs = CronSim("7 * * * *", after)
    assert ours == [next(theirs) for _ in ours]
