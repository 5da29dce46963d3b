"""Synthetic tickets and telemetry for a seeded registry, loaded with COPY.

The dashboard tests and the wall benchmark need a year of tickets and a week
of telemetry on top of the registry's sample province. The generator is
deterministic for a given seed and ``now``. Tickets get their lifecycle
timestamps, SLA targets, pauses and ratings, but no event log: the walls read
timestamps, not events.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

from ..db import Conn
from ..db.migrate import storage_mode_of
from ..db.partitions import partition_name
from ..errors import InvalidInput
from ..registry.seed import _copy as _copy_rows
from ..registry.seed import _reserve_ids as _first_id

log = logging.getLogger("edufleet.collector.analytics")

_TICKET_COLUMNS = (
    "id",
    "kind",
    "device_id",
    "school_id",
    "room_id",
    "source",
    "symptom",
    "title",
    "priority",
    "status",
    "engineer_id",
    "dispatch_rule",
    "status_token",
    "reported_at",
    "dispatched_at",
    "accepted_at",
    "resolved_at",
    "closed_at",
    "updated_at",
    "sla_measure",
    "response_target_seconds",
    "resolution_target_seconds",
)
_PRIORITIES = ("normal", "high", "low", "critical")
_PRIORITY_WEIGHTS = (0.8, 0.12, 0.06, 0.02)


@dataclass
class ActivitySummary:
    tickets: int = 0
    open_tickets: int = 0
    pauses: int = 0
    ratings: int = 0
    telemetry_devices: int = 0
    telemetry_rows: int = 0


def _targets(conn: Conn) -> dict[str, tuple[int, int, str]]:
    return {
        str(p): (int(r), int(s), str(m))
        for p, r, s, m in conn.execute(
            "SELECT priority, response_seconds, resolution_seconds, measure "
            "FROM sla_policies WHERE region_code IS NULL"
        )
    }


def _ticket_rows(
    rng: random.Random,
    devices: list[tuple[int, int, int | None, int | None]],
    *,
    count: int,
    first_id: int,
    now: datetime,
    days: int,
    targets: dict[str, tuple[int, int, str]],
) -> Iterable[tuple[object, ...]]:
    span = days * 86400.0
    for offset in range(count):
        device_id, school_id, room_id, engineer_id = rng.choice(devices)
        reported = now - timedelta(seconds=rng.random() * span)
        dispatched = reported + timedelta(seconds=rng.uniform(0.2, 3))
        accepted = reported + timedelta(seconds=rng.lognormvariate(math.log(1200), 1))
        resolved = accepted + timedelta(
            seconds=rng.lognormvariate(math.log(14400), 1.2)
        )
        priority = rng.choices(_PRIORITIES, _PRIORITY_WEIGHTS)[0]
        response, resolution, measure = targets.get(priority, (3600, 57600, "service"))
        if resolved <= now:
            status = "closed" if rng.random() < 0.6 else "resolved"
            closed = resolved + timedelta(days=3) if status == "closed" else None
        else:
            status, closed = (
                ("accepted", None) if accepted <= now else ("dispatched", None)
            )
        known = status in ("resolved", "closed")
        agent = rng.random() < 0.4
        yield (
            first_id + offset,
            "device",
            device_id,
            school_id,
            room_id,
            "agent" if agent else "qr",
            None if agent else "no_power",
            "设备离线 Device offline" if agent else "无法开机 Won't start",
            priority,
            status,
            engineer_id,
            "primary" if engineer_id else "none",
            f"synthetic-{first_id + offset:020d}",
            reported,
            dispatched,
            accepted if accepted <= now else None,
            resolved if known else None,
            closed if closed and closed <= now else None,
            resolved if known else accepted if accepted <= now else dispatched,
            measure,
            response,
            resolution,
        )


def _telemetry_partitions(conn: Conn, start: datetime, end: datetime) -> None:
    """Native mode: make sure a partition exists for every day written."""
    day = start.astimezone(UTC).date()
    while day <= end.astimezone(UTC).date():
        lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF telemetry "
                "FOR VALUES FROM ({}) TO ({})"
            ).format(
                sql.Identifier(partition_name(day)),
                sql.Literal(lo),
                sql.Literal(lo + timedelta(days=1)),
            )
        )
        day += timedelta(days=1)


def _telemetry_rows(
    rng: random.Random,
    device_ids: Sequence[int],
    *,
    start: datetime,
    now: datetime,
    interval: int,
) -> Iterable[tuple[object, ...]]:
    steps = int((now - start).total_seconds() // interval)
    for device_id in device_ids:
        base = rng.uniform(5, 40)
        disk = rng.uniform(30, 90)
        for step in range(steps):
            ts = start + timedelta(seconds=step * interval)
            hour = (ts.hour + 8) % 24
            busy = 35 if 8 <= hour < 18 else 0
            metrics = {
                "host.cpu_pct": round(min(100.0, base + busy * rng.random()), 1),
                "host.mem_pct": round(40 + 20 * rng.random(), 1),
                "host.disk_pct[/]": round(disk + step * 1e-4, 2),
                "host.temp_c[cpu]": round(45 + 20 * rng.random(), 1),
                "host.uptime_s": step * interval,
            }
            yield (ts, device_id, "synthetic1", step + 1, json.dumps(metrics), ts)


def generate_activity(
    conn: Conn,
    *,
    now: datetime,
    days: int = 365,
    failures_per_device_year: float = 0.5,
    telemetry_devices: int = 50,
    telemetry_days: int = 7,
    telemetry_interval: int = 60,
    open_on_telemetry_devices: int = 0,
    seed: int = 0,
) -> ActivitySummary:
    """Add tickets over ``days`` and telemetry over ``telemetry_days`` before ``now``.

    ``open_on_telemetry_devices`` adds that many tickets reported in the last
    20 minutes and still open, on the devices that report telemetry, so the
    device panels and today's figures have something to show.
    """
    if days < 1 or telemetry_days < 0 or telemetry_interval < 1:
        raise InvalidInput(
            "days must be at least 1, telemetry_days at least 0 and "
            "telemetry_interval at least 1 second",
            field="days",
        )
    rng = random.Random(seed)
    summary = ActivitySummary()
    with conn.transaction():
        devices = [
            (int(d), int(s), r, e)
            for d, s, r, e in conn.execute(
                """
                SELECT d.id, d.school_id, d.room_id, se.engineer_id
                FROM devices d
                LEFT JOIN school_engineers se
                    ON se.school_id = d.school_id AND se.role = 'primary'
                WHERE d.status <> 'retired'
                ORDER BY d.id
                """
            )
        ]
        if not devices:
            raise InvalidInput(
                "the registry has no devices; seed the province first "
                "(edufleet seed-province)",
                field="devices",
            )
        count = int(len(devices) * failures_per_device_year * days / 365)
        first = _first_id(conn, "tickets", count)
        summary.tickets = _copy_rows(
            conn,
            "tickets",
            _TICKET_COLUMNS,
            _ticket_rows(
                rng,
                devices,
                count=count,
                first_id=first,
                now=now,
                days=days,
                targets=_targets(conn),
            ),
        )
        summary.pauses = conn.execute(
            """
            INSERT INTO ticket_pauses (ticket_id, reason, started_at, ended_at, actor)
            SELECT id, 'parts', accepted_at,
                   least(accepted_at + (resolved_at - accepted_at) / 2, %(now)s),
                   'synthetic'
            FROM tickets
            WHERE id >= %(first)s AND resolved_at IS NOT NULL AND id %% 20 = 0
            """,
            {"first": first, "now": now},
        ).rowcount
        summary.ratings = conn.execute(
            """
            INSERT INTO ticket_ratings (ticket_id, stars, rated_at)
            SELECT id, 1 + (id * 7919) %% 5, resolved_at + interval '2 hours'
            FROM tickets
            WHERE id >= %(first)s AND resolved_at IS NOT NULL
              AND resolved_at + interval '2 hours' <= %(now)s AND id %% 3 <> 0
            """,
            {"first": first, "now": now},
        ).rowcount
        row = conn.execute(
            "SELECT count(*) FROM tickets WHERE id >= %s AND ticket_is_open(status)",
            [first],
        ).fetchone()
        summary.open_tickets = int(row[0]) if row else 0

        sample = sorted(
            rng.sample([d[0] for d in devices], min(telemetry_devices, len(devices)))
        )
        start = now - timedelta(days=telemetry_days)
        if sample and telemetry_days and storage_mode_of(conn) == "native":
            _telemetry_partitions(conn, start, now)
        summary.telemetry_devices = len(sample)
        if sample and open_on_telemetry_devices:
            summary.tickets += conn.execute(
                """
                INSERT INTO tickets (device_id, school_id, room_id, source, title,
                    status, status_token, reported_at, dispatched_at, updated_at,
                    sla_measure, response_target_seconds, resolution_target_seconds)
                SELECT d.id, d.school_id, d.room_id, 'qr', '无画面 No picture',
                       'dispatched', 'synthetic-open-' || n || '-' || d.id,
                       %(now)s - n * interval '1 minute',
                       %(now)s - n * interval '1 minute', %(now)s,
                       'service', 3600, 57600
                FROM generate_series(1, %(count)s) AS n
                JOIN devices d ON d.id = (%(ids)s::bigint[])[1 + n %% %(size)s]
                """,
                {
                    "now": now,
                    "count": open_on_telemetry_devices,
                    "ids": sample,
                    "size": len(sample),
                },
            ).rowcount
        summary.telemetry_rows = _copy_rows(
            conn,
            "telemetry",
            ("ts", "device_id", "sid", "seq", "metrics", "received_at"),
            _telemetry_rows(
                rng, sample, start=start, now=now, interval=telemetry_interval
            ),
        )
        conn.execute(
            """
            INSERT INTO device_state (device_id, state, state_since, last_seen)
            SELECT unnest(%(ids)s::bigint[]), 'online', %(start)s, %(now)s
            ON CONFLICT (device_id) DO UPDATE SET
                state = excluded.state, last_seen = excluded.last_seen
            """,
            {"ids": sample, "start": start, "now": now},
        )
        for table in ("tickets", "ticket_pauses", "ticket_ratings", "telemetry"):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    log.info(
        "generated %d tickets (%d open), %d telemetry rows for %d devices",
        summary.tickets,
        summary.open_tickets,
        summary.telemetry_rows,
        summary.telemetry_devices,
    )
    return summary
