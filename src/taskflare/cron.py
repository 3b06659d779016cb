"""Cron expressions: parsing (with errors that point at the bad field) and next fire times.

Standard five fields (minute hour day-of-month month day-of-week) with an optional
leading seconds field; `*`, lists (`1,15`), ranges (`1-5`), steps (`*/15`, `10-50/10`),
month names (`jan`..`dec`) and day names (`sun`..`sat`, 0 or 7 = Sunday). As in Vixie
cron, when both day-of-month and day-of-week are restricted a day matching either one
fires. Times are computed in the trigger's time zone and returned in UTC; a wall-clock
time that does not exist (spring forward) is skipped, an ambiguous one (fall back) fires
once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def _value(text: str, field: _Field, expression: str) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names[lowered]
    if not lowered.isdigit():
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
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
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
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    if field is DAY_OF_WEEK and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_days_exist(expression: str, days: frozenset[int], months: frozenset[int]) -> None:
    """Refuse a day-of-month that no chosen month has (`0 0 30 2 *`): it would never fire."""
    if not any(day <= DAYS_IN_MONTH[month - 1] for day in days for month in months):
        raise InvalidCronExpression(
            f"cron {expression!r} never fires: day-of-month field "
            f"({', '.join(map(str, sorted(days)))}) is not a day of any month in the month "
            f"field ({', '.join(map(str, sorted(months)))})"
        )


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

    @classmethod
    def parse(cls, expression: str, tz: str = "UTC") -> CronSchedule:
        """Parse `expression`; `InvalidCronExpression` names the field that is wrong."""
        if not isinstance(expression, str):
            raise InvalidCronExpression(f"cron expression must be a string, got {expression!r}")
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        elif len(parts) != 6:
            raise InvalidCronExpression(
                f"cron {expression!r} has {len(parts)} fields; use 5 (minute hour "
                "day-of-month month day-of-week) or 6 (with seconds first)"
            )
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidCronExpression(f"unknown time zone {tz!r}") from None
        fields = (SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
        sets = [_parse_field(p, f, expression) for p, f in zip(parts, fields, strict=True)]
        days_restricted = parts[3] not in ("*", "?")
        weekdays_restricted = parts[5] not in ("*", "?")
        if days_restricted and not weekdays_restricted:
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
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _local_times(self, floor: datetime) -> Iterator[datetime]:
        """Candidate wall-clock times in order, from `floor` (local, aware) on."""
        zone = ZoneInfo(self.tz)
        seconds = sorted(self.seconds)
        minutes = sorted(self.minutes)
        hours = sorted(self.hours)
        first = floor.date()
        low = (floor.hour, floor.minute, floor.second)
        for offset in range(366 * 8):
            day = first + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for hour in hours:
                if offset == 0 and hour < low[0]:
                    continue
                for minute in minutes:
                    if offset == 0 and (hour, minute) < low[:2]:
                        continue
                    for second in seconds:
                        if offset == 0 and (hour, minute, second) < low:
                            continue
                        yield datetime.combine(day, time(hour, minute, second), tzinfo=zone)

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (aware), in UTC."""
        zone = ZoneInfo(self.tz)
        # Outside UTC, starting an hour early covers a fall-back repeat of the wall clock.
        back = timedelta(0) if self.tz in ("UTC", "Etc/UTC") else timedelta(hours=1)
        for local in self._local_times((after - back).astimezone(zone)):
            if local.fold:
                continue
            as_utc = local.astimezone(UTC)
            if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
                continue  # does not exist on this day (clocks jumped forward past it)
            if as_utc > after:
                return as_utc
        raise InvalidCronExpression(f"cron {self.expression!r} never fires")

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
