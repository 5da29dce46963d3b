"""School calendars: which days are school days and which hours are service hours.

Pure computation, no I/O; ``calendar_store`` loads calendars from the database.

A day is a school day when an explicit exception says so (a make-up working
day on a weekend), or when it is a weekday inside a term and no exception makes
it a day off (a public holiday). A calendar without any term treats every
weekday as a term day. Never is a school day derived from the weekday alone
when an exception exists for that date.

Service periods are the day's opening hours in the calendar's time zone. A
seasonal timetable (summer hours, say) replaces the default hours on the days
it covers. Periods never cross midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

MAX_SEARCH_DAYS = 800
"""How far ahead add_service_seconds looks for service time before giving up."""


@dataclass(frozen=True)
class Period:
    """One service period of a day, in local time; ``closes`` is exclusive."""

    opens: time
    closes: time

    def __post_init__(self) -> None:
        if self.closes <= self.opens:
            raise ValueError(
                f"period {self.opens:%H:%M}-{self.closes:%H:%M} closes before it "
                "opens; periods may not cross midnight"
            )


@dataclass(frozen=True)
class SeasonalHours:
    """Periods that replace the default hours from ``valid_from`` to ``valid_to``."""

    valid_from: date
    valid_to: date
    periods: tuple[Period, ...]


DEFAULT_HOURS = (Period(time(7, 30), time(12, 0)), Period(time(14, 30), time(17, 30)))
"""A Hainan school day: a morning and an afternoon session with a long midday break."""


@dataclass(frozen=True)
class Calendar:
    """A school calendar; see the module docstring for the rules."""

    timezone: str = "Asia/Shanghai"
    terms: tuple[tuple[date, date], ...] = ()
    days: Mapping[date, bool] = field(default_factory=dict)
    hours: tuple[Period, ...] = DEFAULT_HOURS
    seasonal_hours: tuple[SeasonalHours, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(sorted(self.terms)))
        object.__setattr__(
            self, "hours", tuple(sorted(self.hours, key=lambda p: p.opens))
        )
        object.__setattr__(self, "seasonal_hours", tuple(self.seasonal_hours))
        object.__setattr__(self, "days", dict(self.days))

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_term_day(self, day: date) -> bool:
        if not self.terms:
            return True
        return any(start <= day <= end for start, end in self.terms)

    def is_school_day(self, day: date) -> bool:
        explicit = self.days.get(day)
        if explicit is not None:
            return explicit
        return day.weekday() < 5 and self.is_term_day(day)

    def hours_on(self, day: date) -> tuple[Period, ...]:
        """The day's periods by the timetable, whether or not it is a school day."""
        for seasonal in reversed(self.seasonal_hours):
            if seasonal.valid_from <= day <= seasonal.valid_to:
                return tuple(sorted(seasonal.periods, key=lambda p: p.opens))
        return self.hours

    def periods_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's service periods as aware UTC datetimes; empty on days off."""
        if not self.is_school_day(day):
            return []
        return [
            (
                datetime.combine(day, p.opens, self.tz).astimezone(UTC),
                datetime.combine(day, p.closes, self.tz).astimezone(UTC),
            )
            for p in self.hours_on(day)
        ]

    def in_service(self, at: datetime) -> bool:
        """Whether ``at`` (an aware datetime) falls inside a service period."""
        local = _aware(at).astimezone(self.tz)
        day = local.date()
        if not self.is_school_day(day):
            return False
        now = local.time()
        return any(p.opens <= now < p.closes for p in self.hours_on(day))

    def service_intervals(
        self, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """The parts of [start, end) that are service time, in order."""
        start, end = _aware(start).astimezone(UTC), _aware(end).astimezone(UTC)
        if end <= start:
            return []
        found = []
        for day in _local_days(start, end, self.tz):
            for opens, closes in self.periods_on(day):
                lo, hi = max(opens, start), min(closes, end)
                if lo < hi:
                    found.append((lo, hi))
        return found

    def service_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of service time in [start, end)."""
        return sum(
            (hi - lo).total_seconds() for lo, hi in self.service_intervals(start, end)
        )

    def add_service_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` of service time have passed since ``start``.

        Raises ValueError when the calendar has no service time in the next
        MAX_SEARCH_DAYS days (a calendar whose terms have all ended, say).
        """
        start = _aware(start).astimezone(UTC)
        if seconds <= 0:
            return start
        left = timedelta(seconds=seconds)
        first = start.astimezone(self.tz).date()
        for offset in range(MAX_SEARCH_DAYS):
            for opens, closes in self.periods_on(first + timedelta(days=offset)):
                lo = max(opens, start)
                if lo >= closes:
                    continue
                if lo + left <= closes:
                    return lo + left
                left -= closes - lo
        raise ValueError(
            f"no service time within {MAX_SEARCH_DAYS} days after {start.isoformat()}; "
            "add the coming terms to the school's calendar"
        )


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(
            f"datetime {moment.isoformat()} has no time zone; pass an aware one"
        )
    return moment


def _local_days(start: datetime, end: datetime, tz: ZoneInfo) -> Iterable[date]:
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        yield day
        day += timedelta(days=1)
