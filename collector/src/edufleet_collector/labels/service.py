"""Label codes and the label data of devices: issue, reissue, retire, look up.

A label carries ``{public_url}/r/<code>``. The code is random, so it says
nothing about the device, and each device has at most one active code. A
reprint issues a new code and retires the old one, so a torn-off or copied
label stops working once it is replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from psycopg import sql

from ..accounts import Principal
from ..db import Conn
from ..errors import NotFound
from ..registry.codes import new_device_code
from .sheet import Label

log = logging.getLogger("edufleet.collector.labels")


def label_url(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}/r/{code}"


def reissue_code(conn: Conn, device_id: int) -> str:
    """Retire the device's active code, if any, and issue a new one."""
    conn.execute(
        "UPDATE device_codes SET retired_at = now() "
        "WHERE device_id = %s AND retired_at IS NULL",
        [device_id],
    )
    code = new_device_code()
    conn.execute(
        "INSERT INTO device_codes (code, device_id) VALUES (%s, %s)", [code, device_id]
    )
    log.info("issued a new label code for device %d", device_id)
    return code


def retire_code(conn: Conn, code: str) -> int:
    """Retire one active code; return its device. The device then has no code."""
    row = conn.execute(
        "UPDATE device_codes SET retired_at = now() "
        "WHERE code = %s AND retired_at IS NULL RETURNING device_id",
        [code],
    ).fetchone()
    if row is None:
        raise NotFound(f"label code {code!r} is not an active code")
    log.info("retired label code of device %d", row[0])
    return int(row[0])


def active_code(conn: Conn, device_id: int) -> str:
    """The device's active code, issuing one if it has none."""
    row = conn.execute(
        "SELECT code FROM device_codes WHERE device_id = %s AND retired_at IS NULL",
        [device_id],
    ).fetchone()
    return str(row[0]) if row else reissue_code(conn, device_id)


_LABEL_QUERY = sql.SQL(
    """
    SELECT d.id, d.asset_tag, c.name_zh, s.name, coalesce(r.name, ''), dc.code
    FROM devices d
    JOIN schools s ON s.id = d.school_id
    JOIN device_categories c ON c.code = d.category
    LEFT JOIN rooms r ON r.id = d.room_id
    LEFT JOIN device_codes dc ON dc.device_id = d.id AND dc.retired_at IS NULL
    WHERE d.status <> 'retired' AND {where}
    ORDER BY r.name NULLS LAST, d.asset_tag
    """
)


def _labels(
    conn: Conn,
    where: sql.Composable,
    params: list[object],
    *,
    public_url: str,
    reissue: bool,
) -> list[Label]:
    rows = conn.execute(_LABEL_QUERY.format(where=where), params).fetchall()
    labels = []
    for device_id, asset_tag, category, school, room, active in rows:
        code = active if active is not None and not reissue else None
        if code is None:
            code = reissue_code(conn, int(device_id))
        labels.append(
            Label(
                url=label_url(public_url, str(code)),
                school=str(school),
                room=str(room),
                asset_tag=str(asset_tag),
                category=str(category),
            )
        )
    return labels


def labels_for_school(
    conn: Conn,
    school_code: str,
    *,
    public_url: str,
    room: str | None = None,
    reissue: bool = False,
) -> list[Label]:
    """Labels of a school's devices (or one room's), in room and tag order."""
    school = conn.execute(
        "SELECT id FROM schools WHERE code = %s", [school_code]
    ).fetchone()
    if school is None:
        raise NotFound(f"school {school_code!r} does not exist; check its code")
    where: sql.Composable = sql.SQL("d.school_id = %s")
    params: list[object] = [school[0]]
    if room is not None:
        found = conn.execute(
            "SELECT 1 FROM rooms WHERE school_id = %s AND name = %s", [school[0], room]
        ).fetchone()
        if found is None:
            raise NotFound(f"school {school_code!r} has no room named {room!r}")
        where = sql.SQL("d.school_id = %s AND r.name = %s")
        params.append(room)
    return _labels(conn, where, params, public_url=public_url, reissue=reissue)


def labels_for_devices(
    conn: Conn,
    device_ids: Sequence[int],
    *,
    principal: Principal,
    public_url: str,
    reissue: bool = False,
) -> list[Label]:
    """Labels of the chosen devices that lie in the principal's scope."""
    scope, scope_params = principal.school_condition("d.school_id")
    where = sql.SQL("d.id = ANY(%s) AND {}").format(scope)
    return _labels(
        conn,
        where,
        [list(device_ids), *scope_params],
        public_url=public_url,
        reissue=reissue,
    )
