"""Analytics jobs: service periods from the calendars, rollups and SLA facts.

The figures themselves are SQL (migrations 0050-0052); these jobs keep the
tables they read current. The worker calls ``run_analytics`` periodically.
"""

from __future__ import annotations

from datetime import datetime

from ..db import Conn
from .rollups import RollupReport, refresh_rollups
from .service_periods import ServicePeriodsReport, refresh_service_periods

__all__ = [
    "RollupReport",
    "ServicePeriodsReport",
    "refresh_rollups",
    "refresh_service_periods",
    "run_analytics",
]


def run_analytics(
    conn: Conn, now: datetime
) -> tuple[ServicePeriodsReport, RollupReport]:
    """Refresh the service periods, then every rollup, as of ``now``."""
    periods = refresh_service_periods(conn, now)
    return periods, refresh_rollups(conn, now)
