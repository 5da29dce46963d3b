"""Upkeep of the telemetry table: partitions ahead, retention behind.

In native mode the collector creates one partition per UTC day some days
ahead, and drops whole partitions once they are past retention. In TimescaleDB
mode the extension's own policies do both; this module only keeps the
retention policy in line with the setting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from psycopg import sql

from . import Conn
from .migrate import storage_mode_of

log = logging.getLogger("edufleet.collector.partitions")

PARTITION_PREFIX = "telemetry_p"


@dataclass
class UpkeepReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    default_rows: int = 0


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def _existing_partitions(conn: Conn) -> dict[date, str]:
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry'::regclass
        """
    ).fetchall()
    found = {}
    for (name,) in rows:
        text = str(name)
        if text.startswith(PARTITION_PREFIX):
            found[datetime.strptime(text[len(PARTITION_PREFIX) :], "%Y%m%d").date()] = (
                text
            )
    return found


def maintain_telemetry(
    conn: Conn,
    *,
    retention_days: int,
    days_ahead: int,
    now: datetime | None = None,
) -> UpkeepReport:
    """Create missing partitions and drop expired ones; idempotent."""
    now = now or datetime.now(UTC)
    report = UpkeepReport()
    with conn.transaction():
        conn.execute(
            "UPDATE telemetry_settings SET retention = make_interval(days => %s)",
            [retention_days],
        )
        if storage_mode_of(conn) == "timescale":
            conn.execute(
                "SELECT remove_retention_policy('telemetry', if_exists => true)"
            )
            conn.execute(
                "SELECT add_retention_policy('telemetry', make_interval(days => %s))",
                [retention_days],
            )
            return report

        existing = _existing_partitions(conn)
        today = now.astimezone(UTC).date()
        oldest_kept = today - timedelta(days=retention_days)
        for offset in range(-1, days_ahead + 1):
            day = today + timedelta(days=offset)
            if day in existing or day < oldest_kept:
                continue
            name = partition_name(day)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} PARTITION OF telemetry "
                    "FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier(name),
                    sql.Literal(start),
                    sql.Literal(start + timedelta(days=1)),
                )
            )
            report.created.append(name)
        for day, name in sorted(existing.items()):
            if day < oldest_kept:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                report.dropped.append(name)

        row = conn.execute("SELECT count(*) FROM telemetry_default").fetchone()
        report.default_rows = int(row[0]) if row else 0

    if report.created or report.dropped:
        log.info(
            "telemetry partitions: created %d, dropped %d past %d days",
            len(report.created),
            len(report.dropped),
            retention_days,
        )
    if report.default_rows:
        log.warning(
            "%d telemetry rows fell outside the daily partitions and sit in "
            "telemetry_default; check the devices' clocks",
            report.default_rows,
        )
    return report
