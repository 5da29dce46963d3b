"""Analytics jobs: service periods from the calendars, rollups and SLA facts.

The figures themselves are SQL (migrations 0050-0052); these jobs keep the
tables they read current. The worker calls ``run_due_analytics`` on every
pass; it does what is due and returns at once otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..db import Conn
from .rollups import RollupReport, refresh_rollups, refresh_summaries
from .service_periods import ServicePeriodsReport, refresh_service_periods
from .watermarks import watermark

__all__ = [
    "ANALYTICS_LOCK_ID",
    "RollupReport",
    "ServicePeriodsReport",
    "refresh_rollups",
    "refresh_service_periods",
    "refresh_summaries",
    "run_due_analytics",
]

ANALYTICS_LOCK_ID = 0x0EDF1A17
"""Advisory lock that keeps two workers from refreshing at the same time."""
ROLLUPS_EVERY = timedelta(minutes=1)
SERVICE_PERIODS_EVERY = timedelta(hours=6)


def _due(conn: Conn, name: str, now: datetime, every: timedelta) -> bool:
    last = watermark(conn, name)
    return last is None or now - last >= every


def run_due_analytics(
    conn: Conn, now: datetime
) -> tuple[ServicePeriodsReport | None, RollupReport | None]:
    """Refresh the service periods and the rollups when due; skip if another
    worker is at it. Returns what ran (None for what was not due)."""
    with conn.transaction():
        row = conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s)", [ANALYTICS_LOCK_ID]
        ).fetchone()
        if not (row and row[0]):
            return None, None
        periods = rollups = None
        if _due(conn, "service_periods", now, SERVICE_PERIODS_EVERY):
            periods = refresh_service_periods(conn, now)
        if _due(conn, "ticket_sla_facts", now, ROLLUPS_EVERY):
            rollups = refresh_rollups(conn, now)
    return periods, rollups
