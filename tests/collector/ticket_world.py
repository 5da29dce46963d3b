"""A small school district for the ticket tests, written with plain INSERTs.

Hainan > Haikou > Xiuying district; one school with a calendar (weekday
service hours 08:00-12:00 and 14:00-18:00 local, a holiday on 2026-10-01 and
a make-up Saturday on 2026-10-10), an exam room and a classroom, a few devices
(one switch with PCs behind it), a primary engineer, two backups and two pool
engineers, and notification channels for every audience.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edufleet_collector.db import Conn

SHANGHAI_OFFSET = timedelta(hours=8)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An Asia/Shanghai wall-clock time as an aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - SHANGHAI_OFFSET


class Clock:
    """An injectable clock the tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@dataclass
class World:
    school_id: int
    other_school_id: int
    classroom_id: int
    exam_room_id: int
    engineers: dict[str, int] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)


def _one(conn: Conn, query: str, params: list[Any]) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def build_world(conn: Conn, *, receiver_url: str = "http://127.0.0.1:9/hook") -> World:
    conn.execute(
        """
        INSERT INTO regions (code, parent_code, name_zh, name_en, level) VALUES
            ('460000', NULL, '海南省', 'Hainan', 'province'),
            ('460100', '460000', '海口市', 'Haikou', 'city'),
            ('460105', '460100', '秀英区', 'Xiuying', 'district'),
            ('460106', '460100', '龙华区', 'Longhua', 'district')
        ON CONFLICT DO NOTHING
        """
    )
    calendar_id = _one(
        conn,
        "INSERT INTO calendars (code, name, region_code) "
        "VALUES ('xiuying', 'Xiuying', '460105') RETURNING id",
        [],
    )
    conn.execute(
        "INSERT INTO calendar_terms (calendar_id, name, starts_on, ends_on) VALUES "
        "(%s, 'autumn', '2026-09-01', '2027-01-20')",
        [calendar_id],
    )
    conn.execute(
        "INSERT INTO calendar_hours (calendar_id, opens, closes) VALUES "
        "(%s, '08:00', '12:00'), (%s, '14:00', '18:00')",
        [calendar_id, calendar_id],
    )
    conn.execute(
        "INSERT INTO calendar_days (calendar_id, day, is_school_day, note) VALUES "
        "(%s, '2026-10-01', false, 'National Day'), "
        "(%s, '2026-10-02', false, 'National Day'), "
        "(%s, '2026-10-10', true, 'make-up day')",
        [calendar_id, calendar_id, calendar_id],
    )
    school_id = _one(
        conn,
        "INSERT INTO schools (code, name, region_code) "
        "VALUES ('XY001', '秀英第一中学', '460105') RETURNING id",
        [],
    )
    other_school_id = _one(
        conn,
        "INSERT INTO schools (code, name, region_code) "
        "VALUES ('XY002', '秀英第二小学', '460105') RETURNING id",
        [],
    )
    classroom_id = _one(
        conn,
        "INSERT INTO rooms (school_id, name, kind) VALUES (%s, '301', 'classroom') "
        "RETURNING id",
        [school_id],
    )
    exam_room_id = _one(
        conn,
        "INSERT INTO rooms (school_id, name, kind) VALUES (%s, '考场1', 'exam') "
        "RETURNING id",
        [school_id],
    )
    world = World(school_id, other_school_id, classroom_id, exam_room_id)

    for name, region, skills in [
        ("primary", "460105", ["pc", "av", "network"]),
        ("backup1", "460105", ["pc", "av"]),
        ("backup2", "460105", ["pc"]),
        ("pool_av", "460100", ["av"]),
        ("pool_net", "460106", ["network"]),
    ]:
        world.engineers[name] = _one(
            conn,
            "INSERT INTO engineers "
            "(name, region_code, skills, email, max_open_tickets) "
            "VALUES (%s, %s, %s, %s, 5) RETURNING id",
            [name, region, skills, f"{name}@example.org"],
        )
    conn.execute(
        "INSERT INTO school_engineers (school_id, engineer_id, role, rank) VALUES "
        "(%s, %s, 'primary', 0), (%s, %s, 'backup', 1), (%s, %s, 'backup', 2), "
        "(%s, %s, 'primary', 0)",
        [
            school_id,
            world.engineers["primary"],
            school_id,
            world.engineers["backup1"],
            school_id,
            world.engineers["backup2"],
            other_school_id,
            world.engineers["pool_net"],
        ],
    )

    def device(
        tag: str, category: str, room: int | None, parent: int | None = None
    ) -> int:
        return _one(
            conn,
            "INSERT INTO devices (asset_tag, name, category, school_id, room_id, "
            "parent_id) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [tag, tag, category, school_id, room, parent],
        )

    world.devices["projector"] = device("PJ-301", "projector", classroom_id)
    world.devices["desktop"] = device("PC-301", "desktop", classroom_id)
    world.devices["exam_projector"] = device("PJ-EX1", "projector", exam_room_id)
    world.devices["switch"] = device("SW-1", "network", None)
    for i in range(6):
        world.devices[f"lab{i}"] = device(
            f"LAB-{i}", "desktop", classroom_id, world.devices["switch"]
        )
    for audience in ("supervisors", "engineers", "reporters"):
        world.channels[audience] = _one(
            conn,
            "INSERT INTO notification_channels (region_code, audience, kind, target, "
            "secret) VALUES ('460100', %s, 'webhook', %s, 's3cret') RETURNING id",
            [audience, f"{receiver_url}/{audience}"],
        )
    conn.commit()
    return world


def events_of(conn: Conn, ticket_id: int) -> list[tuple[str, str | None, str | None]]:
    rows = conn.execute(
        "SELECT kind, from_status, to_status FROM ticket_events WHERE ticket_id = %s "
        "ORDER BY at, id",
        [ticket_id],
    ).fetchall()
    return [(str(r[0]), r[1], r[2]) for r in rows]


def outbox(conn: Conn, ticket_id: int) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT event, channel, target FROM notifications WHERE ticket_id = %s "
        "ORDER BY id",
        [ticket_id],
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]
