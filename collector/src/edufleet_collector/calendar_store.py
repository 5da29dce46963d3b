"""Load school calendars from the database, with inheritance and a small cache.

A school uses its own calendar when it has one, else the calendar of the
nearest region above it that has one. A calendar may have a parent; for each
part (terms, hours) the nearest calendar in the chain that defines any wins,
and date exceptions are combined with the nearest overriding the rest.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass
from datetime import date

from .calendars import DEFAULT_HOURS, Calendar, Period, SeasonalHours
from .db import Conn

log = logging.getLogger("edufleet.collector.calendars")

MAX_CHAIN = 8


def _chain(conn: Conn, calendar_id: int) -> list[tuple[int, str]]:
    """The calendar and its ancestors, nearest first, with their time zones."""
    rows = conn.execute(
        """
        WITH RECURSIVE up(id, parent_id, timezone, depth) AS (
            SELECT id, parent_id, timezone, 0 FROM calendars WHERE id = %(id)s
            UNION ALL
            SELECT c.id, c.parent_id, c.timezone, up.depth + 1
            FROM calendars c JOIN up ON c.id = up.parent_id
            WHERE up.depth < %(max)s
        )
        SELECT id, timezone FROM up ORDER BY depth
        """,
        {"id": calendar_id, "max": MAX_CHAIN},
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def load_calendar(conn: Conn, calendar_id: int) -> Calendar:
    """Build one calendar, resolving its parents."""
    chain = _chain(conn, calendar_id)
    if not chain:
        raise LookupError(f"calendar {calendar_id} does not exist")
    ids = [cid for cid, _ in chain]
    rank = {cid: i for i, cid in enumerate(ids)}

    terms: dict[int, list[tuple[date, date]]] = {}
    for cid, starts, ends in conn.execute(
        "SELECT calendar_id, starts_on, ends_on FROM calendar_terms "
        "WHERE calendar_id = ANY(%s)",
        [ids],
    ):
        terms.setdefault(cid, []).append((starts, ends))

    days: dict[date, bool] = {}
    exceptions = conn.execute(
        "SELECT calendar_id, day, is_school_day FROM calendar_days "
        "WHERE calendar_id = ANY(%s)",
        [ids],
    ).fetchall()
    for _cid, day, is_school_day in sorted(exceptions, key=lambda r: -rank[r[0]]):
        days[day] = bool(is_school_day)

    hours: dict[int, list[tuple[date | None, date | None, Period]]] = {}
    for cid, valid_from, valid_to, opens, closes in conn.execute(
        "SELECT calendar_id, valid_from, valid_to, opens, closes FROM calendar_hours "
        "WHERE calendar_id = ANY(%s) ORDER BY valid_from NULLS FIRST, opens",
        [ids],
    ):
        hours.setdefault(cid, []).append((valid_from, valid_to, Period(opens, closes)))

    own_terms = next((terms[cid] for cid in ids if cid in terms), [])
    own_hours = next((hours[cid] for cid in ids if cid in hours), None)
    default: tuple[Period, ...] = DEFAULT_HOURS
    seasonal: list[SeasonalHours] = []
    if own_hours is not None:
        default = tuple(p for vf, _, p in own_hours if vf is None) or DEFAULT_HOURS
        spans: dict[tuple[date, date], list[Period]] = {}
        for vf, vt, p in own_hours:
            if vf is not None and vt is not None:
                spans.setdefault((vf, vt), []).append(p)
        seasonal = [
            SeasonalHours(vf, vt, tuple(ps)) for (vf, vt), ps in sorted(spans.items())
        ]

    return Calendar(
        timezone=chain[0][1],
        terms=tuple(own_terms),
        days=days,
        hours=default,
        seasonal_hours=tuple(seasonal),
    )


def school_calendar_id(conn: Conn, school_id: int) -> int | None:
    """The calendar a school follows: its own, else its nearest region's."""
    row = conn.execute(
        """
        SELECT COALESCE(
            s.calendar_id,
            (SELECT c.id FROM region_ancestors(s.region_code) a
             JOIN calendars c ON c.region_code = a.code AND c.parent_id IS NULL
             ORDER BY a.depth LIMIT 1)
        )
        FROM schools s WHERE s.id = %s
        """,
        [school_id],
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def load_school_calendar(conn: Conn, school_id: int) -> Calendar:
    """The school's effective calendar; a default one, logged, when none is set."""
    calendar_id = school_calendar_id(conn, school_id)
    if calendar_id is None:
        log.warning(
            "school %r has no calendar and neither has any region above it; "
            "using weekdays with default hours",
            school_id,
        )
        return Calendar()
    return load_calendar(conn, calendar_id)


@dataclass
class _Entry:
    loaded_at: float
    calendar: Calendar


class CalendarCache:
    """Per-school calendars, reloaded once they are older than ``max_age`` seconds."""

    def __init__(self, max_age: float = 300.0) -> None:
        self.max_age = max_age
        self._entries: dict[int, _Entry] = {}

    def get(self, conn: Conn, school_id: int) -> Calendar:
        entry = self._entries.get(school_id)
        now = _time.monotonic()
        if entry is None or now - entry.loaded_at > self.max_age:
            entry = _Entry(now, load_school_calendar(conn, school_id))
            self._entries[school_id] = entry
        return entry.calendar

    def clear(self) -> None:
        self._entries.clear()
