"""Time every dashboard panel query on a seeded province.

Creates a fresh database on the server named by EDUFLEET_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it and seeds

- the sample province: 3,000 schools and 300,000 devices (seed_province);
- a year of tickets, 0.5 failures per device-year, with pauses and ratings;
- a week of one-minute telemetry for a sample of devices;

then refreshes the service periods and rollups, and runs every panel query of
every dashboard, expanded by the Grafana macro expander as Grafana would, a
few times each. It prints p50 and max per panel against a ``SELECT 1``
baseline measured in the same run, marks wall queries over the 200 ms budget,
and shows the top of ``EXPLAIN (ANALYZE, BUFFERS)`` for each wall query.

    .venv/bin/python bench/bench_walls.py [--schools 3000] [--devices-per-school 100]
        [--telemetry-devices 100] [--runs 7] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import psycopg

from edufleet_collector.analytics import refresh_rollups, refresh_service_periods
from edufleet_collector.analytics.synthetic import generate_activity
from edufleet_collector.db.migrate import migrate
from edufleet_collector.grafana.dashboards import (
    load_dashboards,
    panel_queries,
    resolve_variables,
)
from edufleet_collector.grafana.macros import TimeRange, auto_interval, render_query
from edufleet_collector.registry.seed import seed_province

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]
WALL_BUDGET_MS = 200.0
ZONE = ZoneInfo("Asia/Shanghai")
RANGES = {"now/d": None, "now-24h": 1, "now-7d": 7, "now-30d": 30, "now-90d": 90}


def _database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _phase(label: str, started: float) -> float:
    now = time.perf_counter()
    print(f"  {label:<42} {now - started:8.1f} s", flush=True)
    return now


def _seed(conn: psycopg.Connection, args: argparse.Namespace, now: datetime) -> None:
    print("seeding", flush=True)
    started = time.perf_counter()
    seed_province(
        conn, schools=args.schools, devices_per_school=args.devices_per_school
    )
    started = _phase(
        f"{args.schools} schools, {args.schools * args.devices_per_school} devices",
        started,
    )
    summary = generate_activity(
        conn,
        now=now,
        days=365,
        failures_per_device_year=0.5,
        telemetry_devices=args.telemetry_devices,
        telemetry_days=7,
        open_on_telemetry_devices=20,
        seed=1,
    )
    started = _phase(
        f"{summary.tickets} tickets, {summary.telemetry_rows} telemetry rows", started
    )
    periods = refresh_service_periods(conn, now)
    started = _phase(
        f"service periods ({periods.periods_written} for {periods.calendars} cal.)",
        started,
    )
    report = refresh_rollups(conn, now)
    started = _phase(
        f"rollups ({report.sla_facts} SLA facts, {report.minutes} minutes)", started
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    _phase("vacuum analyze", started)


def _time_range(board: dict[str, Any], now: datetime) -> TimeRange:
    start = board["time"]["from"]
    if start == "now/d":
        local = now.astimezone(ZONE)
        return TimeRange(local.replace(hour=0, minute=0, second=0, microsecond=0), now)
    if start == "now-1y":
        return TimeRange(now.replace(year=now.year - 1), now)
    days = RANGES.get(start) or 7
    return TimeRange(now - timedelta(days=days), now)


def _busiest_device(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute(
        "SELECT d.id, d.school_id FROM devices d "
        "WHERE d.id = (SELECT device_id FROM telemetry_1h LIMIT 1)"
    ).fetchone()
    return {"device": str(row[0]), "school": str(row[1])} if row else {}


def _timed(conn: psycopg.Connection, sql: str, runs: int) -> tuple[list[float], int]:
    times = []
    rows = 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(conn.execute(sql).fetchall())
        times.append((time.perf_counter() - started) * 1000)
    return times, rows


def _explain(conn: psycopg.Connection, sql: str, lines: int = 12) -> list[str]:
    plan = [str(r[0]) for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)]
    return plan[:lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=3000)
    parser.add_argument("--devices-per-school", type=int, default=100)
    parser.add_argument("--telemetry-devices", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and print its URL"
    )
    args = parser.parse_args()

    server = os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_SERVER
    name = f"edufleet_bench_walls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database(server, name)
    now = datetime.now(UTC)
    failures = 0
    try:
        with psycopg.connect(url) as conn:
            report = migrate(conn)
            conn.execute("SET TIME ZONE 'UTC'")
            print(f"storage mode: {report.storage_mode}")
            _seed(conn, args, now)
            failures = _run_panels(conn, args, now, report.storage_mode)
    finally:
        if args.keep:
            print(f"kept {url}")
        else:
            with psycopg.connect(server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 1 if failures else 0


def _run_panels(
    conn: psycopg.Connection, args: argparse.Namespace, now: datetime, mode: str
) -> int:
    conn.autocommit = True
    baseline, _ = _timed(conn, "SELECT 1", args.runs * 5)
    base = statistics.median(baseline)
    print(f"\nbaseline SELECT 1: p50 {base:.2f} ms\n")
    header = ("rows", "p50 ms", "max ms", "x base")
    print(f"{'dashboard / panel':<64} " + " ".join(f"{h:>8}" for h in header))
    over = 0
    wall_sql = []
    pinned = _busiest_device(conn)
    for board in load_dashboards(ROOT / "dashboards"):
        time_range = _time_range(board, now)
        selected = pinned if board["uid"] == "edufleet-device" else None
        variables = resolve_variables(conn, board, time_range, selected=selected)
        interval = auto_interval(time_range)
        for query in panel_queries(board):
            sql = render_query(
                query.raw_sql,
                time_range=time_range,
                variables=variables,
                interval=interval,
                timescaledb=mode == "timescale",
            )
            times, rows = _timed(conn, sql, args.runs)
            p50, worst = statistics.median(times), max(times)
            wall = board["uid"] == "edufleet-wall"
            flag = ""
            if wall and p50 > WALL_BUDGET_MS:
                flag = "  OVER BUDGET"
                over += 1
            label = f"{board['uid'].removeprefix('edufleet-')} / {query.title}"
            print(
                f"{label[:64]:<64} {rows:>8} {p50:>8.1f} {worst:>8.1f} "
                f"{p50 / base:>8.0f}{flag}"
            )
            if wall:
                wall_sql.append((query.title, sql))
    print(f"\nwall queries over {WALL_BUDGET_MS:.0f} ms (p50): {over}")
    for title, sql in wall_sql:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) {title}")
        for line in _explain(conn, sql):
            print("   " + line)
    return over


if __name__ == "__main__":
    raise SystemExit(main())
