"""Devices (assets): create, read, update and list with filters, within scope.

A device is shown with its school's code, its room's name and the active code
of its QR label, if it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from psycopg import sql
from pydantic import BaseModel, Field

from ..accounts import Principal
from ..db import Conn
from ..errors import InvalidInput, NotFound
from .codes import new_device_code
from .dberrors import translated
from .pagination import Listing, Page, paginate
from .query import Where, insert_row, like_pattern, update_row
from .regions import ensure_region_exists
from .rooms import room_school
from .schools import CODE_PATTERN, school_id

DeviceStatus = Literal["in_service", "under_repair", "spare", "retired"]
STATUSES: tuple[DeviceStatus, ...] = ("in_service", "under_repair", "spare", "retired")

Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
UID_PATTERN = r"^[a-z0-9][a-z0-9_-]{2,63}$"

SEARCH_EXPRESSION = (
    "(d.asset_tag || ' ' || d.name || ' ' || d.brand || ' ' || d.model "
    "|| ' ' || d.serial)"
)
"""The expression ``devices_search_trgm_idx`` covers; text search must use it."""


class DeviceCreate(BaseModel):
    asset_tag: str = Field(min_length=1, max_length=64, examples=["4601050001-0001"])
    category: str = Field(min_length=1, max_length=32, examples=["projector"])
    school_code: str = Field(pattern=CODE_PATTERN, examples=["4601050001"])
    name: str = Field(default="", max_length=200)
    brand: str = Field(default="", max_length=100)
    model: str = Field(default="", max_length=100)
    serial: str = Field(default="", max_length=100)
    room_id: int | None = None
    parent_id: int | None = None
    purchase_date: date | None = None
    price: Price | None = None
    warranty_until: date | None = None
    status: DeviceStatus = "in_service"
    uid: str | None = Field(
        default=None,
        pattern=UID_PATTERN,
        description="identity on the wire; generated when omitted",
    )


class DeviceUpdate(BaseModel):
    asset_tag: str | None = Field(default=None, min_length=1, max_length=64)
    category: str | None = Field(default=None, min_length=1, max_length=32)
    school_code: str | None = Field(default=None, pattern=CODE_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    brand: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    serial: str | None = Field(default=None, max_length=100)
    room_id: int | None = None
    parent_id: int | None = None
    purchase_date: date | None = None
    price: Price | None = None
    warranty_until: date | None = None
    status: DeviceStatus | None = None


class DevicePublic(BaseModel):
    id: int
    uid: str
    asset_tag: str
    name: str
    category: str
    brand: str
    model: str
    serial: str
    school_code: str
    room_id: int | None
    room_name: str | None
    parent_id: int | None
    purchase_date: date | None
    price: Decimal | None
    warranty_until: date | None
    status: DeviceStatus
    qr_code: str | None = Field(description="the active code on the device's label")
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeviceFilters:
    region: str | None = None
    school: str | None = None
    category: str | None = None
    status: str | None = None
    q: str | None = None


# The school code, room name and QR code come from subqueries evaluated for the
# page's rows only. As joins, a merge join could read device_codes from its
# start up to a deep cursor, since the cursor's bound is not carried across.
_COLUMNS = sql.SQL(
    """
    d.id, d.uid, d.asset_tag, d.name, d.category, d.brand, d.model, d.serial,
    (SELECT s.code FROM schools s WHERE s.id = d.school_id),
    d.room_id,
    (SELECT r.name FROM rooms r WHERE r.id = d.room_id),
    d.parent_id, d.purchase_date, d.price, d.warranty_until, d.status,
    (SELECT c.code FROM device_codes c
     WHERE c.device_id = d.id AND c.retired_at IS NULL),
    d.created_at, d.updated_at
    """
)
_SELECT = sql.SQL("SELECT {} FROM devices d").format(_COLUMNS)

# Per-school top-N (see device_list_query) while it reads at most this many rows.
PER_SCHOOL_MAX_ROWS = 20_000
_PER_SCHOOL = sql.SQL(
    """
    (SELECT x.id FROM unnest(%s::bigint[]) AS sid (id)
     CROSS JOIN LATERAL (
         SELECT d.id FROM devices d WHERE d.school_id = sid.id AND {}
         ORDER BY d.id LIMIT %s
     ) AS x
     ORDER BY x.id LIMIT %s) AS p
    """
)
_KEYS = tuple(DevicePublic.model_fields)
_NOT_NULL = {"asset_tag", "category", "school_code", "name", "brand", "model"}
_NOT_NULL |= {"serial", "status"}


def _public(row: tuple[object, ...]) -> DevicePublic:
    return DevicePublic.model_validate(dict(zip(_KEYS, row, strict=True)))


def _school_set(
    conn: Conn, principal: Principal, region: str | None
) -> list[int] | None:
    """The ids of the schools a listing is limited to, or None for every school."""
    if region is None:
        return None if principal.school_ids is None else sorted(principal.school_ids)
    ensure_region_exists(conn, region, field="region")
    where = Where().scope(principal, "id")
    where.add("region_code IN (SELECT region_subtree(%s))", region)
    rows = conn.execute(
        sql.SQL("SELECT id FROM schools WHERE {} ORDER BY id").format(where.compose()),
        where.params,
    )
    return [int(r[0]) for r in rows]


def device_list_query(
    conn: Conn, principal: Principal, filters: DeviceFilters, page: Page
) -> tuple[sql.Composed, list[object]]:
    """The statement that lists one page of devices, and its parameters.

    Device ids follow the order in which schools were registered, so the rows
    of a set of schools may sit anywhere in the id order. For a small set the
    page is the first rows of each school's own index range, merged; a large
    set or a text search is filtered along the id order instead. The
    per-school step reads ids only, from the (school_id, id) and
    (school_id, category, id) indexes.
    """
    where = Where().page(page, "d.id")
    if filters.category is not None:
        where.add("d.category = %s", filters.category)
    if filters.status is not None:
        where.add("d.status = %s", filters.status)
    if filters.q:
        where.add(SEARCH_EXPRESSION + " ILIKE %s", like_pattern(filters.q))
    limit = page.limit + 1

    if filters.school is not None:
        sid = school_id(conn, principal, filters.school, field=None)
        where.add("d.school_id = %s", sid)
        schools = None
    else:
        schools = _school_set(conn, principal, filters.region)
    if schools is not None and (
        filters.q or len(schools) * limit > PER_SCHOOL_MAX_ROWS
    ):
        where.add("d.school_id = ANY(%s)", schools)
    elif schools is not None:
        source = _PER_SCHOOL.format(where.compose())
        statement = sql.SQL(
            "SELECT {} FROM {} JOIN devices d ON d.id = p.id ORDER BY d.id"
        ).format(_COLUMNS, source)
        return statement, [schools, *where.params, limit, limit]
    statement = sql.SQL("{} WHERE {} ORDER BY d.id LIMIT %s").format(
        _SELECT, where.compose()
    )
    return statement, [*where.params, limit]


def list_devices(
    conn: Conn, principal: Principal, filters: DeviceFilters, page: Page
) -> Listing[DevicePublic]:
    statement, params = device_list_query(conn, principal, filters, page)
    # Planned for these values each time: a generic plan cannot know how deep
    # the cursor is or how many rows a filter keeps.
    rows = conn.execute(statement, params, prepare=False).fetchall()
    return paginate([_public(r) for r in rows], page, key=lambda d: d.id)


def get_device(conn: Conn, principal: Principal, device_id: int) -> DevicePublic:
    where = Where().scope(principal, "d.school_id").add("d.id = %s", device_id)
    row = conn.execute(
        sql.SQL("{} WHERE {}").format(_SELECT, where.compose()), where.params
    ).fetchone()
    if row is None:
        raise NotFound(f"device {device_id} does not exist or is outside your scope")
    return _public(row)


def _check_category(conn: Conn, category: str) -> None:
    known = [
        r[0] for r in conn.execute("SELECT code FROM device_categories ORDER BY code")
    ]
    if category not in known:
        raise InvalidInput(
            f"category {category!r} is unknown; use one of {', '.join(known)}",
            field="category",
        )


def _check_room(conn: Conn, room_id: int | None, sid: int) -> None:
    if room_id is not None and room_school(conn, room_id) != sid:
        raise InvalidInput(
            f"room {room_id} is not a room of this device's school; "
            "GET /api/v1/schools/{code}/rooms lists them",
            field="room_id",
        )


def _check_parent(
    conn: Conn, parent_id: int | None, sid: int, device_id: int | None = None
) -> None:
    if parent_id is None:
        return
    if parent_id == device_id:
        raise InvalidInput("a device cannot be its own parent", field="parent_id")
    row = conn.execute(
        "SELECT school_id FROM devices WHERE id = %s", [parent_id]
    ).fetchone()
    if row is None or int(row[0]) != sid:
        raise InvalidInput(
            f"parent device {parent_id} is not a device of the same school",
            field="parent_id",
        )


def create_device(conn: Conn, principal: Principal, data: DeviceCreate) -> DevicePublic:
    """Register a device in a school in scope and issue its QR label code."""
    sid = school_id(conn, principal, data.school_code, field="school_code")
    _check_category(conn, data.category)
    _check_room(conn, data.room_id, sid)
    _check_parent(conn, data.parent_id, sid)
    values = data.model_dump(exclude={"school_code", "uid"})
    values["school_id"] = sid
    if data.uid is not None:
        values["uid"] = data.uid
    with translated("device"):
        (new_id,) = insert_row(conn, "devices", values)
        conn.execute(
            "INSERT INTO device_codes (code, device_id) VALUES (%s, %s)",
            [new_device_code(), new_id],
        )
    return get_device(conn, principal, int(new_id))


def update_device(
    conn: Conn, principal: Principal, device_id: int, data: DeviceUpdate
) -> DevicePublic:
    """Change the given fields of a device in scope.

    Moving a device to another school clears its room and parent unless the
    same request names new ones in that school.
    """
    current = get_device(conn, principal, device_id)
    changes = data.model_dump(exclude_unset=True)
    for key in _NOT_NULL & changes.keys():
        if changes[key] is None:
            raise InvalidInput(f"device {key} cannot be null", field=key)

    sid = school_id(conn, principal, current.school_code, field=None)
    if "school_code" in changes:
        new_sid = school_id(
            conn, principal, changes.pop("school_code"), field="school_code"
        )
        if new_sid != sid:
            changes.setdefault("room_id", None)
            changes.setdefault("parent_id", None)
        changes["school_id"] = sid = new_sid
    if "category" in changes:
        _check_category(conn, changes["category"])
    _check_room(conn, changes.get("room_id", current.room_id), sid)
    _check_parent(conn, changes.get("parent_id", current.parent_id), sid, device_id)

    if changes:
        with translated("device"):
            update_row(conn, "devices", device_id, changes)
    return get_device(conn, principal, device_id)
