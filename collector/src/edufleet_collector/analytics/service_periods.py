"""Materialise school service hours into ``service_periods`` for SQL to join.

The Python calendar rules (``calendars`` and ``calendar_store``) are the only
definition of a school's service hours. Availability and SLA figures are
computed in SQL, so this job writes each effective calendar's periods, as
UTC spans, for a window around today: a year back and 60 days ahead by
default. Schools sharing a calendar share its rows; ``school_service_calendars``
says which calendar each school follows.

A calendar's rows are rewritten only when its periods in the window changed
(a new holiday, a moved term, the window sliding to a new day), judged by a
digest of the periods.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..calendar_store import load_calendar, school_calendar_id
from ..calendars import Calendar
from ..db import Conn
from .watermarks import set_watermark

log = logging.getLogger("edufleet.collector.analytics")

DEFAULT_CALENDAR_KEY = 0
"""The key of the built-in calendar followed by a school without any calendar."""


@dataclass
class ServicePeriodsReport:
    calendars: int = 0
    rewritten: list[int] = field(default_factory=list)
    periods_written: int = 0
    schools: int = 0


def _window(
    now: datetime, days_back: int, days_ahead: int
) -> tuple[datetime, datetime]:
    """Whole UTC days from ``days_back`` before ``now`` to ``days_ahead`` after."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_back), today + timedelta(days=days_ahead + 1)


def _digest(periods: list[tuple[datetime, datetime]]) -> str:
    text = "\n".join(f"{s.isoformat()} {e.isoformat()}" for s, e in periods)
    return hashlib.sha256(text.encode()).hexdigest()


def _school_calendar_keys(conn: Conn) -> dict[int, int]:
    """Each school's effective calendar, as the calendar store resolves it."""
    keys = {}
    for (school_id,) in conn.execute("SELECT id FROM schools ORDER BY id").fetchall():
        calendar_id = school_calendar_id(conn, int(school_id))
        keys[int(school_id)] = (
            DEFAULT_CALENDAR_KEY if calendar_id is None else calendar_id
        )
    return keys


def _write_periods(
    conn: Conn,
    key: int,
    *,
    periods: list[tuple[datetime, datetime]],
    window: tuple[datetime, datetime],
    fingerprint: str,
    now: datetime,
) -> None:
    conn.execute("DELETE FROM service_periods WHERE calendar_key = %s", [key])
    with conn.cursor().copy(
        "COPY service_periods (calendar_key, starts, ends) FROM STDIN"
    ) as copy:
        for starts, ends in periods:
            copy.write_row((key, starts, ends))
    conn.execute(
        """
        INSERT INTO service_calendars
            (calendar_key, covers_from, covers_to, fingerprint, refreshed_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (calendar_key) DO UPDATE SET
            covers_from = excluded.covers_from, covers_to = excluded.covers_to,
            fingerprint = excluded.fingerprint, refreshed_at = excluded.refreshed_at
        """,
        [key, window[0], window[1], fingerprint, now],
    )


def _write_school_keys(conn: Conn, keys: dict[int, int]) -> None:
    conn.execute(
        "CREATE TEMP TABLE school_keys_new (school_id bigint, calendar_key bigint)"
    )
    with conn.cursor().copy("COPY school_keys_new FROM STDIN") as copy:
        for school_id, key in keys.items():
            copy.write_row((school_id, key))
    conn.execute(
        """
        INSERT INTO school_service_calendars (school_id, calendar_key)
        SELECT school_id, calendar_key FROM school_keys_new
        ON CONFLICT (school_id) DO UPDATE SET calendar_key = excluded.calendar_key
        WHERE school_service_calendars.calendar_key
              IS DISTINCT FROM excluded.calendar_key
        """
    )
    conn.execute(
        "DELETE FROM school_service_calendars s WHERE NOT EXISTS "
        "(SELECT 1 FROM school_keys_new n WHERE n.school_id = s.school_id)"
    )
    conn.execute("DROP TABLE school_keys_new")


def refresh_service_periods(
    conn: Conn,
    now: datetime,
    *,
    days_back: int = 365,
    days_ahead: int = 60,
) -> ServicePeriodsReport:
    """Bring ``service_periods`` in line with the calendars; idempotent.

    Runs in one transaction: readers see the old periods or the new ones.
    """
    window = _window(now, days_back, days_ahead)
    report = ServicePeriodsReport()
    with conn.transaction():
        keys = _school_calendar_keys(conn)
        stored = {
            int(k): str(f)
            for k, f in conn.execute(
                "SELECT calendar_key, fingerprint FROM service_calendars"
            )
        }
        wanted = {DEFAULT_CALENDAR_KEY, *keys.values()}
        for key in sorted(wanted):
            calendar = (
                Calendar() if key == DEFAULT_CALENDAR_KEY else load_calendar(conn, key)
            )
            periods = calendar.service_intervals(*window)
            fingerprint = _digest(periods)
            if stored.get(key) != fingerprint:
                _write_periods(
                    conn,
                    key,
                    periods=periods,
                    window=window,
                    fingerprint=fingerprint,
                    now=now,
                )
                report.rewritten.append(key)
                report.periods_written += len(periods)
        for key in sorted(set(stored) - wanted):
            conn.execute("DELETE FROM service_periods WHERE calendar_key = %s", [key])
            conn.execute("DELETE FROM service_calendars WHERE calendar_key = %s", [key])
        _write_school_keys(conn, keys)
        set_watermark(conn, "service_periods", now)
        report.calendars = len(wanted)
        report.schools = len(keys)

    if report.rewritten:
        log.info(
            "service periods: rewrote %d of %d calendars (%d periods) for %d "
            "schools, %d of them on the default calendar",
            len(report.rewritten),
            report.calendars,
            report.periods_written,
            report.schools,
            sum(1 for key in keys.values() if key == DEFAULT_CALENDAR_KEY),
        )
    return report
