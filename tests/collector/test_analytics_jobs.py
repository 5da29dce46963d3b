"""The analytics jobs: telemetry rollups, scheduling and the refresh lock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edufleet_collector.analytics import (
    ANALYTICS_LOCK_ID,
    refresh_rollups,
    run_due_analytics,
)
from edufleet_collector.db.partitions import maintain_telemetry

NOW = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def device(conn: psycopg.Connection) -> int:
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) "
        "VALUES ('460000', '海南', 'province')"
    )
    row = conn.execute(
        "INSERT INTO schools (code, name, region_code) VALUES ('S', 'S', '460000') "
        "RETURNING id"
    ).fetchone()
    assert row
    device = conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id) "
        "VALUES ('PC-1', 'desktop', %s) RETURNING id",
        [row[0]],
    ).fetchone()
    assert device
    maintain_telemetry(conn, retention_days=30, days_ahead=1, now=NOW)
    return int(device[0])


def _sample(conn, device_id: int, ts: datetime, seq: int, **metrics: object) -> None:
    conn.execute(
        "INSERT INTO telemetry (ts, device_id, sid, seq, metrics) "
        "VALUES (%s, %s, 'session01', %s, %s)",
        [ts, device_id, seq, json.dumps(metrics)],
    )


def _rows(conn, table: str) -> list[tuple[object, ...]]:
    return conn.execute(
        f"SELECT bucket, samples, cpu_avg, cpu_max, mem_avg, disk_max, temp_max "
        f"FROM {table} ORDER BY bucket"
    ).fetchall()


def test_minute_and_hour_rollups_aggregate_host_metrics(conn, device):
    minute = datetime(2026, 3, 2, 9, 58, tzinfo=UTC)
    _sample(
        conn,
        device,
        minute + timedelta(seconds=10),
        1,
        **{"host.cpu_pct": 10, "host.mem_pct": 50, "host.disk_pct[/]": 70},
    )
    _sample(
        conn,
        device,
        minute + timedelta(seconds=40),
        2,
        **{
            "host.cpu_pct": 30,
            "host.disk_pct[/]": 71,
            "host.disk_pct[/home]": 93,
            "host.temp_c[cpu]": 61.5,
            "host.os": "linux",
        },
    )
    _sample(conn, device, minute + timedelta(minutes=1), 3, **{"host.cpu_pct": 50})

    refresh_rollups(conn, NOW)

    assert _rows(conn, "telemetry_1m") == [
        (minute, 2, 20.0, 30.0, 50.0, 93.0, 61.5),
        (minute + timedelta(minutes=1), 1, 50.0, 50.0, None, None, None),
    ]
    # The hour weights each minute's average by its samples: (10+30+50)/3.
    assert _rows(conn, "telemetry_1h") == [
        (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), 3, 30.0, 50.0, 50.0, 93.0, 61.5)
    ]


def test_late_sample_within_the_lookback_is_counted(conn, device):
    minute = datetime(2026, 3, 2, 9, 59, tzinfo=UTC)
    _sample(conn, device, minute, 1, **{"host.cpu_pct": 10})
    refresh_rollups(conn, NOW)
    _sample(conn, device, minute + timedelta(seconds=30), 2, **{"host.cpu_pct": 20})
    refresh_rollups(conn, NOW + timedelta(seconds=30))
    assert _rows(conn, "telemetry_1m")[0][:4] == (minute, 2, 15.0, 20.0)


def test_run_due_analytics_runs_each_job_when_due(conn, device):
    periods, rollups = run_due_analytics(conn, NOW)
    assert periods is not None and rollups is not None

    assert run_due_analytics(conn, NOW + timedelta(seconds=10)) == (None, None)

    periods, rollups = run_due_analytics(conn, NOW + timedelta(minutes=2))
    assert periods is None and rollups is not None


def test_run_due_analytics_skips_while_another_worker_refreshes(
    conn, device, database_url
):
    with psycopg.connect(database_url) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [ANALYTICS_LOCK_ID])
        assert run_due_analytics(conn, NOW) == (None, None)
        other.execute("SELECT pg_advisory_unlock(%s)", [ANALYTICS_LOCK_ID])
    periods, rollups = run_due_analytics(conn, NOW)
    assert periods is not None and rollups is not None
