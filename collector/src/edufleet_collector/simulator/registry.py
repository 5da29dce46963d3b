"""Put the simulated fleet in the registry, so ingest accepts its messages.

:func:`register_fleet` creates (or reuses, when run again) schools
``SIM0001``…, rooms of ten agents each (one multimedia controller with its
projector, nine PCs) and the devices, with device ids ``sim0001-001``….
:func:`load_fleet` instead takes devices already in the registry, such as
those of ``edufleet seed`` or an imported ledger.
"""

from __future__ import annotations

import math

from ..db import Conn
from .fleet import VirtualDevice

ROOM_SIZE = 10
AGENT_CATEGORIES = ("desktop", "laptop", "panel", "controller", "class_sign")


def _regions(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT code FROM regions WHERE level IN ('county', 'district', "
        "'county-level city') ORDER BY code"
    ).fetchall()
    if rows:
        return [str(row[0]) for row in rows]
    conn.execute(
        "INSERT INTO regions (code, name_zh, name_en, level) VALUES "
        "('SIM', '模拟地区', 'Simulated region', 'province') "
        "ON CONFLICT (code) DO NOTHING"
    )
    return ["SIM"]


def register_fleet(
    conn: Conn, *, schools: int, devices_per_school: int, prefix: str = "sim"
) -> list[VirtualDevice]:
    """Create the simulated schools, rooms and devices; return the agents."""
    if schools < 1 or devices_per_school < 1:
        raise ValueError("schools and devices_per_school must both be at least 1")
    regions = _regions(conn)
    rooms_per_school = math.ceil(devices_per_school / ROOM_SIZE)
    school_rows = [
        (
            f"{prefix.upper()}{n:04d}",
            f"模拟学校 {n:04d}",
            regions[(n - 1) % len(regions)],
        )
        for n in range(1, schools + 1)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO schools (code, name, region_code) VALUES (%s, %s, %s) "
            "ON CONFLICT (code) DO NOTHING",
            school_rows,
        )
        cur.executemany(
            "INSERT INTO rooms (school_id, name) "
            "SELECT id, %s FROM schools WHERE code = %s "
            "ON CONFLICT (school_id, name) DO NOTHING",
            [
                (f"教室{r:02d}", code)
                for code, _, _ in school_rows
                for r in range(1, rooms_per_school + 1)
            ],
        )

    agents: list[VirtualDevice] = []
    controllers: list[tuple[str, str, str, str, str]] = []
    others: list[tuple[str, str, str, str, str, str | None]] = []
    for code, _, _ in school_rows:
        for n in range(1, devices_per_school + 1):
            uid = f"{code.lower()}-{n:03d}"
            room = f"教室{(n - 1) // ROOM_SIZE + 1:02d}"
            if (n - 1) % ROOM_SIZE == 0:
                projector = f"{uid}-pj"
                controllers.append((uid, uid.upper(), "controller", code, room))
                others.append(
                    (projector, projector.upper(), "projector", code, room, uid)
                )
                agents.append(
                    VirtualDevice(uid, kind="controller", peripheral=projector)
                )
            else:
                others.append((uid, uid.upper(), "desktop", code, room, None))
                agents.append(VirtualDevice(uid, kind="pc"))

    insert = (
        "INSERT INTO devices (uid, asset_tag, name, category, school_id, room_id, "
        "parent_id) SELECT %s, %s, %s, %s, s.id, r.id, "
        "(SELECT id FROM devices WHERE uid = %s) "
        "FROM schools s JOIN rooms r ON r.school_id = s.id AND r.name = %s "
        "WHERE s.code = %s ON CONFLICT (uid) DO NOTHING"
    )
    with conn.cursor() as cur:
        cur.executemany(
            insert,
            [(u, t, u, c, None, room, code) for u, t, c, code, room in controllers],
        )
        cur.executemany(
            insert,
            [
                (u, t, u, c, parent, room, code)
                for u, t, c, code, room, parent in others
            ],
        )
    return agents


def load_fleet(conn: Conn, *, limit: int) -> list[VirtualDevice]:
    """Agents for devices already registered and in service, lowest id first."""
    rows = conn.execute(
        """
        SELECT d.uid, d.category,
            (SELECT p.uid FROM devices p WHERE p.parent_id = d.id
               AND p.status <> 'retired' ORDER BY p.id LIMIT 1),
            d.serial
        FROM devices d
        WHERE d.status = 'in_service' AND d.category = ANY(%s)
        ORDER BY d.id LIMIT %s
        """,
        [list(AGENT_CATEGORIES), limit],
    ).fetchall()
    return [
        VirtualDevice(
            str(uid),
            kind="controller" if category == "controller" else "pc",
            peripheral=str(peripheral) if peripheral else None,
            # The asset record's serial, so the first birth matches it.
            serial=str(serial) if serial else None,
        )
        for uid, category, peripheral, serial in rows
    ]
