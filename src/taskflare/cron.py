"""Cron expressions: parsing (with errors that point at the bad field) and next fire times.

Standard five fields (minute hour day-of-month month day-of-week) with an optional
leading seconds field; `*`, lists (`1,15`), ranges (`1-5`), steps (`*/15`, `10-50/10`),
month names (`jan`..`dec`) and day names (`sun`..`sat`, 0 or 7 = Sunday). As in Vixie
cron, when both day-of-month and day-of-week are restricted a day matching either one
fires. Times are computed in the trigger's time zone and returned in UTC.

Daylight saving follows Vixie cron (`man 8 cron`). A schedule whose hour field covers all
24 hours runs every hour or more often and follows the real clock: when clocks fall back
it fires in both passes of the repeated hour, and wall-clock times skipped when clocks
jump forward do not exist for it (no catch-up run). Any other schedule runs once per
wall-clock time: a repeated time fires at its first occurrence only, and a skipped time
fires once at the first real moment after the jump (several skipped times landing on that
moment fire once there).
"""

from __future__ import annotations

from bisect import bisect_right
from calendar import monthrange
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import TaskflareError


class InvalidCronExpression(TaskflareError, ValueError):
    """A cron expression (or its time zone) cannot be parsed."""


MONTHS = {
    n: i
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


SECOND = _Field("second", 0, 59)
MINUTE = _Field("minute", 0, 59)
HOUR = _Field("hour", 0, 23)
DAY_OF_MONTH = _Field("day-of-month", 1, 31)
MONTH = _Field("month", 1, 12, MONTHS)
DAY_OF_WEEK = _Field("day-of-week", 0, 7, DAYS)


def _is_number(text: str) -> bool:
    """ASCII digits only: `str.isdigit` also takes superscripts (which `int` refuses) and
    other scripts' digits (which `int` reads)."""
    return text.isascii() and text.isdigit()


def _value(text: str, field: _Field, expression: str) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names[lowered]
    if not _is_number(lowered):
        raise InvalidCronExpression(
            f"cron {expression!r}: {field.name} field: {text!r} is not a number"
            + (" or a name" if field.names else "")
        )
    number = int(lowered)
    if not field.low <= number <= field.high:
        raise InvalidCronExpression(
            f"cron {expression!r}: {field.name} field: {number} is out of range "
            f"{field.low}-{field.high}"
        )
    return number


def _parse_field(text: str, field: _Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise InvalidCronExpression(
                f"cron {expression!r}: {field.name} field has an empty item"
            )
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not _is_number(step_text) or int(step_text) == 0:
                raise InvalidCronExpression(
                    f"cron {expression!r}: {field.name} field: step {step_text!r} "
                    "must be a positive number"
                )
            step = int(step_text)
        if base in ("*", "?"):
            low, high = field.low, field.high
        elif "-" in base:
            start, _, end = base.partition("-")
            low, high = _value(start, field, expression), _value(end, field, expression)
            if field is DAY_OF_WEEK and high == 0 and low > 0:
                high = 7  # `fri-sun`: Sunday closes the week here (7, not 0)
            if low > high:
                raise InvalidCronExpression(
                    f"cron {expression!r}: {field.name} field: range {base!r} runs backwards"
                )
        else:
            low = _value(base, field, expression)
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    if field is DAY_OF_WEEK and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


# Cloudflare's (and Vixie cron's) shorthands.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True, slots=True)
class DaySpecials:
    """The day items that depend on the month (Quartz's, which Cloudflare accepts):
    day-of-month `L` (last day), `LW` (last weekday), `15W` (the weekday nearest the 15th,
    within the month); day-of-week `5L` (the month's last Friday), `1#2` (its second
    Monday). Weekdays are 0 (Sunday) to 6."""

    last_day: bool = False
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()
    last_of: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def __bool__(self) -> bool:
        return bool(
            self.last_day or self.last_weekday or self.nearest_weekday or self.last_of or self.nth
        )

    def day_of_month(self, day: date) -> bool:
        """Whether `day` matches the day-of-month items."""
        last = monthrange(day.year, day.month)[1]
        if self.last_day and day.day == last:
            return True
        if self.last_weekday and day.day == _nearest_weekday(day, last):
            return True
        return any(
            wanted <= last and day.day == _nearest_weekday(day, wanted)
            for wanted in self.nearest_weekday
        )

    def day_of_week(self, day: date) -> bool:
        """Whether `day` matches the day-of-week items."""
        weekday = day.isoweekday() % 7
        last = monthrange(day.year, day.month)[1]
        if weekday in self.last_of and day.day + 7 > last:
            return True
        return (weekday, (day.day + 6) // 7) in self.nth


def _nearest_weekday(day: date, wanted: int) -> int:
    """The day of `day`'s month, Monday to Friday, nearest to day `wanted` of that month,
    never in another month (Quartz's `W`)."""
    last = monthrange(day.year, day.month)[1]
    weekday = date(day.year, day.month, wanted).weekday()  # Monday 0 .. Sunday 6
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return wanted - 1 if wanted > 1 else wanted + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return wanted + 1 if wanted < last else wanted - 2
    return wanted


def _special_day_item(item: str, field: _Field, expression: str) -> DaySpecials | None:
    """`item` as a month-dependent day item, or None if it is an ordinary one."""
    upper = item.upper()
    if field is DAY_OF_MONTH:
        if upper == "L":
            return DaySpecials(last_day=True)
        if upper == "LW":
            return DaySpecials(last_weekday=True)
        if upper.endswith("W") and _is_number(upper[:-1]):
            return DaySpecials(nearest_weekday=frozenset({_value(upper[:-1], field, expression)}))
    elif field is DAY_OF_WEEK:
        if upper.endswith("L") and len(upper) > 1:
            return DaySpecials(last_of=frozenset({_value(item[:-1], field, expression) % 7}))
        if "#" in upper:
            weekday, _, nth = item.partition("#")
            if not _is_number(nth) or not 1 <= int(nth) <= 5:
                raise InvalidCronExpression(
                    f"cron {expression!r}: day-of-week field: {item!r}: the number after "
                    "'#' must be 1 to 5 (which week of the month)"
                )
            return DaySpecials(nth=frozenset({(_value(weekday, field, expression) % 7, int(nth))}))
    return None


def _parse_day_field(
    text: str, field: _Field, expression: str
) -> tuple[frozenset[int], DaySpecials]:
    """A day field: its plain days, and its month-dependent items."""
    plain, specials = [], DaySpecials()
    for item in text.split(","):
        special = _special_day_item(item, field, expression)
        if special is None:
            plain.append(item)
            continue
        specials = DaySpecials(
            specials.last_day or special.last_day,
            specials.last_weekday or special.last_weekday,
            specials.nearest_weekday | special.nearest_weekday,
            specials.last_of | special.last_of,
            specials.nth | special.nth,
        )
    days = _parse_field(",".join(plain), field, expression) if plain else frozenset()
    return days, specials


DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_days_exist(expression: str, days: frozenset[int], months: frozenset[int]) -> None:
    """Refuse a day-of-month that no chosen month has (`0 0 30 2 *`): it would never fire."""
    if not any(day <= DAYS_IN_MONTH[month - 1] for day in days for month in months):
        raise InvalidCronExpression(
            f"cron {expression!r} never fires: day-of-month field "
            f"({', '.join(map(str, sorted(days)))}) is not a day of any month in the month "
            f"field ({', '.join(map(str, sorted(months)))})"
        )


# The longest a valid expression waits between two runs is 40 years: the fifth Monday
# of February (`0 0 * 2 1#5`) needs a 29 February on a Monday (2016, 2044, 2072, 2112:
# 2100 is no leap year). An expression with no match in 41 years never fires.
SEARCH_DAYS = 366 * 41
ALL_HOURS = frozenset(range(24))
# Longer than any UTC-offset change in the tz database (at most a day, at the date line)
# and shorter than the time between two changes of one zone.
FAR = timedelta(days=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_SECOND = timedelta(seconds=1)


def _first_above(values: Sequence[int], value: int) -> int | None:
    index = bisect_right(values, value)
    return values[index] if index < len(values) else None


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def _offset_change(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in (low, high] whose UTC offset differs from low's (high's does)."""
    before = _offset(low, zone)
    lo, hi = (low - EPOCH) // ONE_SECOND, -((EPOCH - high) // ONE_SECOND)  # floor, ceiling
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if _offset(EPOCH + middle * ONE_SECOND, zone) == before:
            lo = middle
        else:
            hi = middle
    return EPOCH + hi * ONE_SECOND


def _first_moment(wall: datetime, zone: ZoneInfo) -> datetime:
    """When the clock first shows `wall` (naive), or the jump's moment if clocks skip it."""
    moments = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    real = [m for m in moments if m.astimezone(zone).replace(tzinfo=None) == wall]
    if real:
        return min(real)
    # In a gap, fold 1 reads `wall` with the offset after the jump (an earlier moment) and
    # fold 0 with the one before: the jump lies between them.
    return _offset_change(min(moments), max(moments), zone)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression in a time zone."""

    expression: str
    tz: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool
    month_days: DaySpecials = DaySpecials()  # L, LW, 15W
    week_days: DaySpecials = DaySpecials()  # 5L, 1#2

    @classmethod
    def parse(cls, expression: str, tz: str = "UTC") -> CronSchedule:
        """Parse `expression`; `InvalidCronExpression` names the field that is wrong."""
        if not isinstance(expression, str):
            raise InvalidCronExpression(f"cron expression must be a string, got {expression!r}")
        parts = MACROS.get(expression.strip().lower(), expression).split()
        if len(parts) == 1 and parts[0].startswith("@"):
            raise InvalidCronExpression(
                f"cron {expression!r}: unknown shorthand; use one of {', '.join(MACROS)}"
            )
        if len(parts) == 5:
            parts = ["0", *parts]
        elif len(parts) != 6:
            raise InvalidCronExpression(
                f"cron {expression!r} has {len(parts)} fields; use 5 (minute hour "
                "day-of-month month day-of-week) or 6 (with seconds first)"
            )
        if isinstance(tz, ZoneInfo) and tz.key:  # ZoneInfo("Europe/Paris") names its zone
            tz = tz.key
        if not isinstance(tz, str):
            raise InvalidCronExpression(f"tz must be an IANA time zone name, got {tz!r}")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidCronExpression(f"unknown time zone {tz!r}") from None
        fields = (SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
        sets = [_parse_field(p, f, expression) for p, f in zip(parts[:3], fields, strict=False)]
        days, month_days = _parse_day_field(parts[3], DAY_OF_MONTH, expression)
        weekdays, week_days = _parse_day_field(parts[5], DAY_OF_WEEK, expression)
        sets += [days, _parse_field(parts[4], MONTH, expression), weekdays]
        days_restricted = parts[3] not in ("*", "?")
        weekdays_restricted = parts[5] not in ("*", "?")
        if days_restricted and not weekdays_restricted and not month_days:
            _check_days_exist(expression, sets[3], sets[4])
        return cls(
            expression=expression,
            tz=tz,
            seconds=sets[0],
            minutes=sets[1],
            hours=sets[2],
            days=sets[3],
            months=sets[4],
            weekdays=sets[5],
            days_restricted=days_restricted,
            weekdays_restricted=weekdays_restricted,
            month_days=month_days,
            week_days=week_days,
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days or (
            bool(self.month_days) and self.month_days.day_of_month(day)
        )
        in_weekdays = (day.isoweekday() % 7) in self.weekdays or (
            bool(self.week_days) and self.week_days.day_of_week(day)
        )
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _time_after(self, after: time | None) -> time | None:
        """The first matching time of day strictly after `after` (`None`: from midnight)."""
        hours, minutes, seconds = sorted(self.hours), sorted(self.minutes), sorted(self.seconds)
        if after is None:
            return time(hours[0], minutes[0], seconds[0])
        hour, minute = after.hour, after.minute
        if hour in self.hours and minute in self.minutes:
            second = _first_above(seconds, after.second)
            if second is not None:
                return time(hour, minute, second)
        if hour in self.hours:
            later_minute = _first_above(minutes, minute)
            if later_minute is not None:
                return time(hour, later_minute, seconds[0])
        later_hour = _first_above(hours, hour)
        if later_hour is not None:
            return time(later_hour, minutes[0], seconds[0])
        return None

    def _next_wall(self, after: datetime) -> datetime:
        """The first matching wall-clock time (naive) strictly after `after` (naive)."""
        first = after.date()
        for offset in range(SEARCH_DAYS):
            day = first + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            found = self._time_after(after.time() if offset == 0 else None)
            if found is not None:
                return datetime.combine(day, found)
        raise InvalidCronExpression(
            f"cron {self.expression!r} never fires: no day matches its day-of-month, month "
            "and day-of-week fields"
        )

    def _follows_real_clock(self) -> bool:
        """Hourly or more often: Vixie cron runs these on the real clock through DST changes."""
        return self.hours == ALL_HOURS

    def _next_on_real_clock(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first moment after `after` whose wall-clock time in `zone` matches."""
        start, inclusive = after, False
        while True:
            # Between two offset changes the wall clock is UTC plus a constant: search there.
            offset = _offset(start, zone)
            wall = (start + offset).replace(tzinfo=None)
            if inclusive:
                wall -= timedelta(microseconds=1)
            candidate = (self._next_wall(wall) - offset).replace(tzinfo=UTC)
            probe = min(candidate, start + FAR)
            if _offset(probe, zone) != offset:
                start, inclusive = _offset_change(start, probe, zone), True
            elif candidate == probe:
                return candidate
            else:
                # Nothing matches for days; offsets never differ by FAR, so skip to near it.
                start, inclusive = max(probe, candidate - FAR), False

    def _next_on_wall_clock(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first moment after `after` at which a matching wall-clock time comes due."""
        wall = after.astimezone(zone).replace(tzinfo=None)
        while True:
            wall = self._next_wall(wall)
            moment = _first_moment(wall, zone)
            if moment > after:  # not yet passed, e.g. in the second pass of a repeated hour
                return moment

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (aware), in UTC."""
        zone = ZoneInfo(self.tz)
        after = after.astimezone(UTC)
        if self._follows_real_clock():
            return self._next_on_real_clock(after, zone)
        return self._next_on_wall_clock(after, zone)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times after `after`."""
        times = []
        moment = after
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times

    def between(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Fire times in (after, until], at most `limit` of them (the earliest)."""
        times: list[datetime] = []
        moment = after
        while len(times) < limit:
            moment = self.next_after(moment)
            if moment > until:
                break
            times.append(moment)
        return times
