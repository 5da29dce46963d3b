"""Keep the analytics tables current: telemetry rollups, SLA facts, reliability.

``refresh_rollups(conn, now)`` is the job the worker runs every minute or so:

- **telemetry_1m / telemetry_1h** (native mode only; TimescaleDB's continuous
  aggregate policies do this there): the minutes since the last run, and a
  few before it for late samples, are re-aggregated from ``telemetry``; the
  hours are re-aggregated from the minutes, weighting averages by samples.
- **ticket_sla_facts**: ``ticket_sla_compute()`` for every ticket that changed
  since the last run, every ticket whose pauses changed, and every open one
  (their clocks keep running).
- **device_reliability**: failures and downtime over the last 365 days, rebuilt
  at most once an hour, followed by the registry summaries (materialised
  views: device counts per school, asset counts, failure rates, the
  replacement list), refreshed concurrently so readers never wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg import sql

from ..db import Conn
from ..db.migrate import storage_mode_of
from .watermarks import set_watermark, watermark

log = logging.getLogger("edufleet.collector.analytics")

LATE_MINUTES = timedelta(minutes=2)
"""How far behind the last run the minute rollup is recomputed."""
LATE_HOURS = timedelta(hours=2)
"""How far behind the last run the hour rollup is recomputed."""
FIRST_BACKFILL = timedelta(days=7)
"""How much telemetry the first run aggregates."""
KEEP_MINUTES = timedelta(days=30)
KEEP_HOURS = timedelta(days=400)
CHANGE_MARGIN = timedelta(minutes=5)
"""Tickets updated this long before the last run are looked at again, for
transactions that committed after it with an earlier clock."""
RELIABILITY_EVERY = timedelta(hours=1)
RELIABILITY_WINDOW = timedelta(days=365)
SUMMARIES = (
    "school_device_counts",
    "asset_counts",
    "failure_rates",
    "replacement_candidates",
)
"""Materialised views refreshed after device_reliability, in this order."""

_MINUTE_SQL = """
INSERT INTO telemetry_1m
    (bucket, device_id, samples, cpu_avg, cpu_max, mem_avg, mem_max, disk_max, temp_max)
SELECT date_bin(interval '1 minute', ts, timestamptz '2000-01-01 00:00+00'),
       device_id, count(*), avg(cpu), max(cpu), avg(mem), max(mem),
       max(metric_family_max(metrics, 'host.disk_pct')),
       max(metric_family_max(metrics, 'host.temp_c'))
FROM (
    SELECT ts, device_id, metrics,
           CASE WHEN jsonb_typeof(metrics -> 'host.cpu_pct') = 'number'
                THEN (metrics ->> 'host.cpu_pct')::double precision END AS cpu,
           CASE WHEN jsonb_typeof(metrics -> 'host.mem_pct') = 'number'
                THEN (metrics ->> 'host.mem_pct')::double precision END AS mem
    FROM telemetry
    WHERE ts >= %(lo)s AND ts < %(hi)s
) samples
GROUP BY 1, 2
"""

_HOUR_SQL = """
INSERT INTO telemetry_1h
    (bucket, device_id, samples, cpu_avg, cpu_max, mem_avg, mem_max, disk_max, temp_max)
SELECT date_bin(interval '1 hour', bucket, timestamptz '2000-01-01 00:00+00'),
       device_id, sum(samples),
       sum(cpu_avg * samples)
           / nullif(sum(samples) FILTER (WHERE cpu_avg IS NOT NULL), 0),
       max(cpu_max),
       sum(mem_avg * samples)
           / nullif(sum(samples) FILTER (WHERE mem_avg IS NOT NULL), 0),
       max(mem_max), max(disk_max), max(temp_max)
FROM telemetry_1m
WHERE bucket >= %(lo)s AND bucket < %(hi)s
GROUP BY 1, 2
"""

_FACT_COLUMNS = (
    "school_id, region_code, engineer_id, category, priority, status, "
    "reported_at, accepted_at, resolved_at, sla_measure, response_target_seconds, "
    "resolution_target_seconds, response_seconds, response_service_seconds, "
    "resolution_seconds, resolution_service_seconds, paused_seconds, "
    "paused_service_seconds, response_met, resolution_met, computed_at"
)


@dataclass
class RollupReport:
    minutes: int = 0
    hours: int = 0
    sla_facts: int = 0
    reliability: int | None = None
    skipped: list[str] = field(default_factory=list)


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def _refresh_rollup(
    conn: Conn, table: str, sql: str, *, step: timedelta, late: timedelta, now: datetime
) -> int:
    done = watermark(conn, table) or now - FIRST_BACKFILL
    lo = _floor(min(done, now) - late, step)
    hi = _floor(now, step) + step
    conn.execute(
        f"DELETE FROM {table} WHERE bucket >= %(lo)s AND bucket < %(hi)s",
        {"lo": lo, "hi": hi},
    )
    rows = conn.execute(sql, {"lo": lo, "hi": hi}).rowcount
    keep = KEEP_MINUTES if table == "telemetry_1m" else KEEP_HOURS
    conn.execute(f"DELETE FROM {table} WHERE bucket < %s", [now - keep])
    set_watermark(conn, table, now)
    return rows


def refresh_telemetry_rollups(conn: Conn, now: datetime) -> tuple[int, int]:
    """Re-aggregate the recent minutes and hours (native mode's rollup tables)."""
    minutes = _refresh_rollup(
        conn,
        "telemetry_1m",
        _MINUTE_SQL,
        step=timedelta(minutes=1),
        late=LATE_MINUTES,
        now=now,
    )
    hours = _refresh_rollup(
        conn,
        "telemetry_1h",
        _HOUR_SQL,
        step=timedelta(hours=1),
        late=LATE_HOURS,
        now=now,
    )
    return minutes, hours


def refresh_sla_facts(conn: Conn, now: datetime) -> int:
    """Recompute the SLA facts of changed and open tickets; returns how many."""
    since = watermark(conn, "ticket_sla_facts")
    if since is None:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM tickets")]
    else:
        cutoff = since - CHANGE_MARGIN
        ids = [
            int(r[0])
            for r in conn.execute(
                """
                SELECT id FROM tickets WHERE updated_at >= %(cutoff)s
                UNION
                SELECT ticket_id FROM ticket_pauses
                WHERE started_at >= %(cutoff)s OR ended_at >= %(cutoff)s
                UNION
                SELECT ticket_id FROM ticket_sla_facts
                WHERE status IN ('reported', 'dispatched', 'accepted', 'scheduled')
                """,
                {"cutoff": cutoff},
            )
        ]
    if ids:
        conn.execute(
            f"""
            WITH computed AS (
                SELECT * FROM ticket_sla_compute(%(now)s, %(ids)s::bigint[])
            ), gone AS (
                DELETE FROM ticket_sla_facts f
                WHERE f.ticket_id = ANY (%(ids)s::bigint[])
                  AND NOT EXISTS (
                      SELECT 1 FROM computed c WHERE c.ticket_id = f.ticket_id)
            )
            INSERT INTO ticket_sla_facts (ticket_id, {_FACT_COLUMNS})
            SELECT ticket_id, {_FACT_COLUMNS} FROM computed
            ON CONFLICT (ticket_id) DO UPDATE SET
                ({_FACT_COLUMNS}) = ROW({_excluded(_FACT_COLUMNS)})
            """,
            {"now": now, "ids": ids},
        )
    set_watermark(conn, "ticket_sla_facts", now)
    return len(ids)


def _excluded(columns: str) -> str:
    return ", ".join("excluded." + c.strip() for c in columns.split(","))


def refresh_reliability(conn: Conn, now: datetime) -> int:
    """Rebuild failures and downtime per device over the last 365 days."""
    start = now - RELIABILITY_WINDOW
    conn.execute("DELETE FROM device_reliability")
    count = conn.execute(
        """
        INSERT INTO device_reliability
            (device_id, failures, down_seconds, last_failure_at, computed_at)
        SELECT f.device_id, f.failures, coalesce(d.down, 0), f.last_at, %(now)s
        FROM (
            SELECT device_id, count(*) AS failures, max(reported_at) AS last_at
            FROM tickets
            WHERE kind = 'device' AND status <> 'cancelled' AND merged_into IS NULL
              AND reported_at >= %(start)s AND reported_at < %(now)s
            GROUP BY device_id
        ) f
        LEFT JOIN (
            SELECT device_id, sum(extract(epoch FROM ends - starts)) AS down
            FROM downtime_intervals(%(start)s, %(now)s, %(now)s)
            GROUP BY device_id
        ) d ON d.device_id = f.device_id
        """,
        {"start": start, "now": now},
    ).rowcount
    set_watermark(conn, "device_reliability", now)
    return count


def refresh_summaries(conn: Conn) -> None:
    """Refresh the registry summaries (see SUMMARIES) without blocking readers."""
    for name in SUMMARIES:
        conn.execute(
            sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(
                sql.Identifier(name)
            )
        )


def refresh_rollups(conn: Conn, now: datetime) -> RollupReport:
    """Run every analytics refresh that is due; one transaction, idempotent."""
    report = RollupReport()
    with conn.transaction():
        if storage_mode_of(conn) == "native":
            report.minutes, report.hours = refresh_telemetry_rollups(conn, now)
        else:
            report.skipped.append("telemetry (continuous aggregates)")
        report.sla_facts = refresh_sla_facts(conn, now)
        last = watermark(conn, "device_reliability")
        if last is None or now - last >= RELIABILITY_EVERY:
            report.reliability = refresh_reliability(conn, now)
            refresh_summaries(conn)
    log.debug(
        "rollups: %d minute rows, %d hour rows, %d SLA facts, reliability %s",
        report.minutes,
        report.hours,
        report.sla_facts,
        "skipped" if report.reliability is None else report.reliability,
    )
    return report
