"""Schools: create, read, update and list within the caller's scope."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from psycopg import sql
from pydantic import BaseModel, Field

from ..accounts import Principal
from ..db import Conn
from ..errors import InvalidInput, NotFound
from .dberrors import translated
from .pagination import Listing, Page, paginate
from .query import Where, insert_row, like_pattern, update_row
from .regions import ensure_region_exists, require_writable_region

CODE_PATTERN = r"^[0-9A-Za-z_-]{1,32}$"

Code = Annotated[str, Field(pattern=CODE_PATTERN, examples=["4601050001"])]
Name = Annotated[str, Field(min_length=1, max_length=200, examples=["海口市第一中学"])]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class SchoolCreate(BaseModel):
    code: Code
    name: Name
    region_code: Code
    address: str = Field(default="", max_length=300)
    lat: Latitude | None = None
    lon: Longitude | None = None
    contact_name: str = Field(default="", max_length=100)
    contact_phone: str = Field(default="", max_length=40)
    boarding: bool = False


class SchoolUpdate(BaseModel):
    name: Name | None = None
    region_code: Code | None = None
    address: str | None = Field(default=None, max_length=300)
    lat: Latitude | None = None
    lon: Longitude | None = None
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=40)
    boarding: bool | None = None


class SchoolPublic(SchoolCreate):
    id: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = sql.SQL(
    "s.code, s.name, s.region_code, s.address, s.lat, s.lon, s.contact_name, "
    "s.contact_phone, s.boarding, s.id, s.created_at, s.updated_at"
)
_KEYS = tuple(SchoolPublic.model_fields)
_NOT_NULL = {"name", "region_code", "address", "contact_name", "contact_phone"}


def _public(row: tuple[object, ...]) -> SchoolPublic:
    return SchoolPublic.model_validate(dict(zip(_KEYS, row, strict=True)))


def school_list_query(
    conn: Conn,
    principal: Principal,
    *,
    page: Page,
    region: str | None = None,
    q: str | None = None,
) -> tuple[sql.Composed, list[object]]:
    """The statement that lists one page of schools, and its parameters."""
    where = Where().scope(principal, "s.id").page(page, "s.id")
    if region is not None:
        ensure_region_exists(conn, region, field="region")
        where.add("s.region_code IN (SELECT region_subtree(%s))", region)
    if q:
        where.add("s.name ILIKE %s", like_pattern(q))
    statement = sql.SQL("SELECT {} FROM schools s WHERE {} ORDER BY s.id LIMIT %s")
    return statement.format(_COLUMNS, where.compose()), [
        *where.params,
        page.limit + 1,
    ]


def list_schools(
    conn: Conn,
    principal: Principal,
    *,
    page: Page,
    region: str | None = None,
    q: str | None = None,
) -> Listing[SchoolPublic]:
    """Schools in scope, by id; ``region`` covers its whole subtree."""
    statement, params = school_list_query(
        conn, principal, page=page, region=region, q=q
    )
    # Planned for these values each time: a generic plan cannot know how deep
    # the cursor is or how many rows a filter keeps.
    rows = conn.execute(statement, params, prepare=False).fetchall()
    return paginate([_public(r) for r in rows], page, key=lambda s: s.id)


def get_school(conn: Conn, principal: Principal, code: str) -> SchoolPublic:
    where = Where().scope(principal, "s.id").add("s.code = %s", code)
    row = conn.execute(
        sql.SQL("SELECT {} FROM schools s WHERE {}").format(_COLUMNS, where.compose()),
        where.params,
    ).fetchone()
    if row is None:
        raise NotFound(f"school {code!r} does not exist or is outside your scope")
    return _public(row)


def school_id(conn: Conn, principal: Principal, code: str, *, field: str | None) -> int:
    """The id of a school in scope.

    With ``field`` (the school is named in a request body) an unknown school is
    InvalidInput on that field; without, it is NotFound (the school is the path).
    """
    where = Where().scope(principal, "id").add("code = %s", code)
    row = conn.execute(
        sql.SQL("SELECT id FROM schools WHERE {}").format(where.compose()),
        where.params,
    ).fetchone()
    if row is not None:
        return int(row[0])
    message = f"school {code!r} does not exist or is outside your scope"
    if field is None:
        raise NotFound(message)
    raise InvalidInput(message + "; GET /api/v1/schools lists the codes", field=field)


def create_school(conn: Conn, principal: Principal, data: SchoolCreate) -> SchoolPublic:
    """Add a school to a region the caller administers."""
    require_writable_region(conn, principal, data.region_code, field="region_code")
    values = data.model_dump()
    with translated("school"):
        row = insert_row(conn, "schools", values, _COLUMNS)
    return _public(row)


def update_school(
    conn: Conn, principal: Principal, code: str, data: SchoolUpdate
) -> SchoolPublic:
    """Change the given fields of a school in scope."""
    changes = data.model_dump(exclude_unset=True)
    for key in _NOT_NULL & changes.keys():
        if changes[key] is None:
            raise InvalidInput(f"school {key} cannot be null", field=key)
    current = get_school(conn, principal, code)
    if changes.get("region_code", current.region_code) != current.region_code:
        require_writable_region(
            conn, principal, changes["region_code"], field="region_code"
        )
    if not changes:
        return current
    with translated("school"):
        row = update_row(conn, "schools", current.id, changes, _COLUMNS)
    assert row is not None
    return _public(row)
