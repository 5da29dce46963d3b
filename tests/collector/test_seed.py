"""The generated sample province: counts, determinism, calendars and scope."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import psycopg
import pytest

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Everything the seed generates except QR codes and timestamps.
FINGERPRINT_QUERIES = [
    "SELECT code, name, region_code, address, lat, lon, contact_name, "
    "contact_phone, boarding, calendar_id FROM schools ORDER BY id",
    "SELECT school_id, name, building, floor, kind FROM rooms ORDER BY id",
    "SELECT uid, asset_tag, name, category, brand, model, serial, school_id, "
    "room_id, parent_id, purchase_date, price, warranty_until, status "
    "FROM devices ORDER BY id",
    "SELECT name, phone, region_code, skills, status FROM engineers ORDER BY id",
    "SELECT school_id, engineer_id, role, rank FROM school_engineers "
    "ORDER BY school_id, engineer_id",
]


def _fingerprint(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    digest = hashlib.sha256()
    for query in FINGERPRINT_QUERIES:
        for row in conn.execute(query):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def _count(conn: psycopg.Connection[tuple[object, ...]], query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_seed_loads_the_announced_counts(conn) -> None:  # type: ignore[no-untyped-def]
    from edufleet_collector.registry.seed import seed_province

    indexes = (
        "SELECT indexdef FROM pg_indexes WHERE tablename LIKE 'device%' ORDER BY 1"
    )
    before = conn.execute(indexes).fetchall()
    summary = seed_province(
        conn, schools=30, devices_per_school=50, cities=3, engineers_per_district=2
    )
    assert conn.execute(indexes).fetchall() == before

    assert summary.schools == _count(conn, "SELECT count(*) FROM schools") == 30
    assert summary.devices == _count(conn, "SELECT count(*) FROM devices") == 1500
    assert (
        _count(conn, "SELECT count(*) FROM device_codes WHERE retired_at IS NULL")
        == 1500
    )
    assert summary.rooms == _count(conn, "SELECT count(*) FROM rooms")
    cities = _count(
        conn,
        "SELECT count(DISTINCT a.code) "
        "FROM schools s, region_ancestors(s.region_code) a "
        "JOIN regions r ON r.code = a.code WHERE r.parent_code = '460000'",
    )
    assert cities == 3
    # Haikou's schools sit in its four districts: two engineers each, and
    # two for each of the other two cities.
    assert summary.engineers == _count(conn, "SELECT count(*) FROM engineers") == 12
    assert _count(conn, "SELECT count(*) FROM engineers WHERE status = 'on_leave'") == 1
    per_school = conn.execute(
        "SELECT count(*) FILTER (WHERE role = 'primary'), "
        "count(*) FILTER (WHERE role = 'backup') FROM school_engineers "
        "GROUP BY school_id"
    ).fetchall()
    assert len(per_school) == 30
    assert set(per_school) == {(1, 1)}
    categories = _count(conn, "SELECT count(DISTINCT category) FROM devices")
    assert categories >= 9
    orphans = _count(
        conn,
        "SELECT count(*) FROM devices d JOIN devices p ON p.id = d.parent_id "
        "WHERE p.category <> 'controller' OR p.room_id <> d.room_id",
    )
    assert orphans == 0
    roles = {role for _, role in summary.users}
    assert roles == {"province_admin", "district_bureau", "school_admin", "engineer"}


def test_seed_is_deterministic(server_url, template_database) -> None:  # type: ignore[no-untyped-def]
    from dbutil import create_database, drop_database
    from edufleet_collector.registry.seed import seed_province

    prints = []
    codes = []
    for n, seed in enumerate((7, 7, 8)):
        name = f"edufleet_seed_{n}_{template_database[-6:]}"
        url = create_database(server_url, name, template=template_database)
        try:
            with psycopg.connect(url) as conn:
                seed_province(conn, schools=12, devices_per_school=20, seed=seed)
                prints.append(_fingerprint(conn))
                codes.append(
                    {r[0] for r in conn.execute("SELECT code FROM device_codes")}
                )
        finally:
            drop_database(server_url, name)
    assert prints[0] == prints[1]
    assert prints[0] != prints[2]
    assert not codes[0] & codes[1]


def test_seed_refuses_a_registry_that_is_not_empty(conn) -> None:  # type: ignore[no-untyped-def]
    from edufleet_collector.errors import Conflict
    from edufleet_collector.registry.seed import seed_province

    seed_province(conn, schools=2, devices_per_school=5)
    with pytest.raises(Conflict, match="already holds 2 schools and 10 devices"):
        seed_province(conn, schools=2, devices_per_school=5)
    assert _count(conn, "SELECT count(*) FROM devices") == 10


def test_seeded_calendars_know_holidays_makeup_days_and_evenings(conn) -> None:  # type: ignore[no-untyped-def]
    from edufleet_collector.calendar_store import load_school_calendar
    from edufleet_collector.registry.seed import seed_province

    seed_province(conn, schools=40, devices_per_school=1)
    day_school = _count(conn, "SELECT min(id) FROM schools WHERE NOT boarding")
    boarding = _count(
        conn, "SELECT min(id) FROM schools WHERE boarding AND calendar_id IS NOT NULL"
    )

    calendar = load_school_calendar(conn, day_school)
    assert not calendar.is_school_day(date(2026, 10, 1))
    assert calendar.is_school_day(date(2026, 10, 10))
    assert not calendar.is_school_day(date(2026, 8, 3))
    assert calendar.is_school_day(date(2027, 3, 1))
    evening = datetime.combine(date(2026, 11, 4), time(20, 0), SHANGHAI)
    assert not calendar.in_service(evening)
    assert calendar.in_service(
        datetime.combine(date(2026, 11, 4), time(8, 0), SHANGHAI)
    )

    boarding_calendar = load_school_calendar(conn, boarding)
    assert boarding_calendar.in_service(evening)
    assert not boarding_calendar.is_school_day(date(2026, 10, 1))


def test_chinese_numbers_for_school_names() -> None:
    from edufleet_collector.registry.seed import chinese_number

    assert [chinese_number(n) for n in (1, 10, 12, 20, 105, 110, 999)] == [
        "一",
        "十",
        "十二",
        "二十",
        "一百零五",
        "一百一十",
        "九百九十九",
    ]


def test_seed_command_prints_logins_and_skips_when_asked(  # type: ignore[no-untyped-def]
    settings, conn, capsys
) -> None:
    from edufleet_collector.cli import main

    args = ["seed", "--schools", "3", "--devices-per-school", "4", "--cities", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "schools 3, rooms" in printed
    assert "devices 12 (QR codes 12)" in printed
    assert "province-admin" in printed

    assert main([*args, "--if-empty"]) == 0
    assert "seed skipped" in capsys.readouterr().out
    assert main(args) == 2
    assert "already holds 3 schools" in capsys.readouterr().err
    assert _count(conn, "SELECT count(*) FROM devices") == 12
