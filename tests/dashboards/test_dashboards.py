"""The dashboards: structure, and every query run against a seeded database.

Each panel query is expanded by the macro expander exactly as Grafana's
PostgreSQL datasource would, run on a small seeded province, and its result
checked for the columns the panel type needs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from dbutil import create_database, drop_database
from edufleet_collector.analytics import refresh_rollups, refresh_service_periods
from edufleet_collector.analytics.synthetic import generate_activity
from edufleet_collector.grafana.dashboards import (
    iter_panels,
    load_dashboards,
    panel_queries,
    resolve_variables,
    result_problems,
)
from edufleet_collector.grafana.macros import TimeRange, render_query
from edufleet_collector.registry.seed import seed_province

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = load_dashboards(ROOT / "dashboards")
DATASOURCES = yaml.safe_load(
    (ROOT / "provisioning/grafana/datasources/edufleet.yaml").read_text()
)["datasources"]
EXPECTED_UIDS = {
    "edufleet-wall",
    "edufleet-drilldown",
    "edufleet-device",
    "edufleet-engineers",
    "edufleet-assets",
}
QUERIES = [q for board in DASHBOARDS for q in panel_queries(board)]
CJK = re.compile(r"[\u4e00-\u9fff]")


def _id(board: dict[str, Any]) -> str:
    return str(board["uid"])


@pytest.fixture(scope="module")
def seeded_url(server_url: str, template_database: str) -> Iterator[str]:
    """A migrated database with 24 schools, their devices, tickets and telemetry."""
    name = f"edufleet_dash_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name, template=template_database)
    now = datetime.now(UTC)
    try:
        with psycopg.connect(url) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            seed_province(conn, schools=24, devices_per_school=15)
            generate_activity(
                conn,
                now=now,
                days=120,
                failures_per_device_year=4,
                telemetry_devices=4,
                telemetry_days=1,
                open_on_telemetry_devices=8,
                seed=7,
            )
            refresh_service_periods(conn, now)
            refresh_rollups(conn, now)
            conn.commit()
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def seeded(seeded_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


def test_every_dashboard_is_present_with_a_stable_unique_uid():
    uids = [board["uid"] for board in DASHBOARDS]
    assert sorted(uids) == sorted(EXPECTED_UIDS)
    for board in DASHBOARDS:
        assert board["__file__"] == board["uid"].removeprefix("edufleet-") + ".json"


@pytest.mark.parametrize("board", DASHBOARDS, ids=_id)
def test_dashboard_pins_grafana_11_schema(board):
    assert board["schemaVersion"] == 39
    assert board["editable"] is False
    assert "edufleet" in board["tags"]


@pytest.mark.parametrize("board", DASHBOARDS, ids=_id)
def test_panel_ids_are_unique_and_grid_fits_24_columns(board):
    panels = list(iter_panels(board))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']!r} overlaps another panel"
        cells |= area


@pytest.mark.parametrize("board", DASHBOARDS, ids=_id)
def test_every_query_uses_the_provisioned_datasource(board):
    (source,) = DATASOURCES
    wanted = {"type": source["type"], "uid": source["uid"]}
    for panel in iter_panels(board):
        assert panel["datasource"] == wanted, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == wanted
            assert target["rawQuery"] is True and target["rawSql"].strip()
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == wanted


@pytest.mark.parametrize("board", DASHBOARDS, ids=_id)
def test_titles_are_in_chinese_and_english(board):
    for text in [board["title"]] + [p["title"] for p in iter_panels(board)]:
        assert CJK.search(text) and re.search(r"[A-Za-z]{3}", text), text


def test_datasource_has_timescaledb_option_and_read_only_role():
    (source,) = DATASOURCES
    assert source["jsonData"]["timescaledb"] is True
    assert source["user"] == "edufleet_grafana"
    assert "password" in source["secureJsonData"]


def _time_range(board: dict[str, Any]) -> TimeRange:
    """The dashboard's default range, for the relative forms it uses."""
    now = datetime.now(UTC)
    start = board["time"]["from"]
    if start == "now/d":
        # Today, or the last hour when the day has only just begun.
        local = now.astimezone(ZoneInfo(board["timezone"]))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return TimeRange(min(midnight, now - timedelta(hours=1)), now)
    match = re.fullmatch(r"now-(\d+)([hdy])", start)
    assert match, f"unexpected default time {start!r}"
    unit = {"h": 3600, "d": 86400, "y": 365 * 86400}[match[2]]
    return TimeRange(now - timedelta(seconds=int(match[1]) * unit), now)


def _busy_device(conn: psycopg.Connection, choice: str) -> dict[str, str]:
    """A device with telemetry and open tickets, its school and regions.

    With ``choice`` "all" the district is left at "All".
    """
    row = conn.execute(
        "SELECT d.id, d.school_id, s.region_code, coalesce(r.parent_code, r.code) "
        "FROM devices d JOIN schools s ON s.id = d.school_id "
        "JOIN regions r ON r.code = s.region_code "
        "WHERE EXISTS (SELECT 1 FROM telemetry_1h h WHERE h.device_id = d.id) "
        "ORDER BY (SELECT count(*) FROM tickets t WHERE t.device_id = d.id) DESC, d.id "
        "LIMIT 1"
    ).fetchone()
    assert row is not None
    picked = {"device": str(row[0]), "school": str(row[1]), "city": str(row[3])}
    if choice == "first":
        picked["district"] = str(row[2])
    return picked


def _run(conn: psycopg.Connection, sql: str) -> tuple[list[tuple[str, int]], list]:
    cursor = conn.execute(sql)
    columns = [(c.name, c.type_code) for c in cursor.description or []]
    return columns, cursor.fetchall()


@pytest.mark.parametrize("choice", ["first", "all"])
@pytest.mark.parametrize("board", DASHBOARDS, ids=_id)
def test_every_panel_query_returns_what_its_panel_needs(seeded, board, choice):
    time_range = _time_range(board)
    variables = resolve_variables(
        seeded, board, time_range, choice=choice, selected=_busy_device(seeded, choice)
    )
    failures = []
    for query in panel_queries(board):
        sql = render_query(query.raw_sql, time_range=time_range, variables=variables)
        assert "$" not in sql.replace("$$", ""), f"unexpanded macro in {query.title}"
        columns, rows = _run(seeded, sql)
        failures += [
            f"{query.title}: {p}" for p in result_problems(query, columns, rows)
        ]
    assert failures == []


@pytest.mark.parametrize("board", DASHBOARDS, ids=_id)
def test_queries_also_expand_for_timescaledb(board):
    time_range = _time_range(board)
    for query in panel_queries(board):
        sql = render_query(query.raw_sql, time_range=time_range, timescaledb=True)
        assert "$__" not in sql
        if "$__timeGroup" in query.raw_sql:
            assert "time_bucket(" in sql


def test_grafana_role_can_run_the_wall_queries(seeded):
    board = next(b for b in DASHBOARDS if b["uid"] == "edufleet-wall")
    time_range = _time_range(board)
    seeded.execute("SET ROLE edufleet_grafana")
    for query in panel_queries(board):
        sql = render_query(query.raw_sql, time_range=time_range)
        assert _run(seeded, sql)[1]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute("SELECT reporter_phone FROM tickets LIMIT 1")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute("DELETE FROM analytics_watermarks")


def test_panel_that_lacks_its_columns_is_reported(seeded):
    board = next(b for b in DASHBOARDS if b["uid"] == "edufleet-wall")
    geomap = next(q for q in panel_queries(board) if q.panel_type == "geomap")
    columns, rows = _run(seeded, "SELECT name FROM schools LIMIT 3")
    problems = result_problems(geomap, columns, rows)
    assert "needs a numeric 'latitude' column" in problems
    assert any("severity" in p for p in problems)
