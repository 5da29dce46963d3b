"""Rooms of a school: classrooms, labs, exam rooms, network closets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from psycopg import sql
from pydantic import BaseModel, Field

from ..accounts import Principal
from ..db import Conn
from ..errors import InvalidInput, NotFound
from .dberrors import translated
from .pagination import Listing, Page, paginate
from .query import Where
from .schools import school_id

RoomKind = Literal["classroom", "lab", "office", "exam", "hall", "network", "other"]


class RoomCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["初一(3)班"])
    building: str = Field(default="", max_length=100)
    floor: str = Field(default="", max_length=20)
    kind: RoomKind = "classroom"


class RoomUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    building: str | None = Field(default=None, max_length=100)
    floor: str | None = Field(default=None, max_length=20)
    kind: RoomKind | None = None


class RoomPublic(RoomCreate):
    id: int
    school_code: str
    created_at: datetime


_SELECT = sql.SQL(
    "SELECT r.id, s.code, r.name, r.building, r.floor, r.kind, r.created_at "
    "FROM rooms r JOIN schools s ON s.id = r.school_id"
)


def _public(row: tuple[object, ...]) -> RoomPublic:
    keys = ("id", "school_code", "name", "building", "floor", "kind", "created_at")
    return RoomPublic.model_validate(dict(zip(keys, row, strict=True)))


def list_rooms(
    conn: Conn,
    principal: Principal,
    school_code: str,
    *,
    page: Page,
    kind: str | None = None,
) -> Listing[RoomPublic]:
    sid = school_id(conn, principal, school_code, field=None)
    where = Where().add("r.school_id = %s", sid).page(page, "r.id")
    if kind is not None:
        where.add("r.kind = %s", kind)
    rows = conn.execute(
        sql.SQL("{} WHERE {} ORDER BY r.id LIMIT %s").format(_SELECT, where.compose()),
        [*where.params, page.limit + 1],
    ).fetchall()
    return paginate([_public(r) for r in rows], page, key=lambda r: r.id)


def get_room(
    conn: Conn, principal: Principal, school_code: str, room_id: int
) -> RoomPublic:
    sid = school_id(conn, principal, school_code, field=None)
    row = conn.execute(
        sql.SQL("{} WHERE r.id = %s AND r.school_id = %s").format(_SELECT),
        [room_id, sid],
    ).fetchone()
    if row is None:
        raise NotFound(f"room {room_id} does not exist in school {school_code!r}")
    return _public(row)


def create_room(
    conn: Conn, principal: Principal, school_code: str, data: RoomCreate
) -> RoomPublic:
    sid = school_id(conn, principal, school_code, field=None)
    with translated("room in this school"):
        row = conn.execute(
            "INSERT INTO rooms (school_id, name, building, floor, kind) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [sid, data.name, data.building, data.floor, data.kind],
        ).fetchone()
    assert row is not None
    return get_room(conn, principal, school_code, int(row[0]))


def update_room(
    conn: Conn, principal: Principal, school_code: str, room_id: int, data: RoomUpdate
) -> RoomPublic:
    current = get_room(conn, principal, school_code, room_id)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise InvalidInput(f"room {key} cannot be null", field=key)
    if changes:
        with translated("room in this school"):
            conn.execute(
                sql.SQL("UPDATE rooms SET {} WHERE id = %s").format(
                    sql.SQL(", ").join(
                        sql.SQL("{} = %s").format(sql.Identifier(k)) for k in changes
                    )
                ),
                [*changes.values(), current.id],
            )
    return get_room(conn, principal, school_code, room_id)


def room_school(conn: Conn, room_id: int) -> int | None:
    """The school a room belongs to, or None if there is no such room."""
    row = conn.execute(
        "SELECT school_id FROM rooms WHERE id = %s", [room_id]
    ).fetchone()
    return int(row[0]) if row else None
