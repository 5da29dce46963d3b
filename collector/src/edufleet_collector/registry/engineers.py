"""Engineers: who fixes the equipment, their skills and availability.

A caller sees the engineers of the regions they administer and those assigned
to schools in their scope; an engineer also sees themself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from psycopg import sql
from pydantic import BaseModel, Field

from ..accounts import Principal
from ..db import Conn
from ..errors import InvalidInput, NotFound
from .dberrors import translated
from .pagination import Listing, Page, paginate
from .query import Where, insert_row, like_pattern, update_row
from .regions import ensure_region_exists, require_writable_region
from .schools import CODE_PATTERN

Skill = Literal["pc", "av", "network"]
EngineerStatus = Literal["active", "on_leave", "inactive"]
Skills = Annotated[list[Skill], Field(max_length=3, examples=[["pc", "av"]])]


class EngineerCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["王海涛"])
    region_code: str = Field(pattern=CODE_PATTERN, examples=["460106"])
    phone: str = Field(default="", max_length=40)
    email: str = Field(default="", max_length=200)
    wecom_userid: str = Field(default="", max_length=64)
    skills: Skills = Field(default_factory=list)
    status: EngineerStatus = "active"
    max_open_tickets: int = Field(default=15, gt=0, le=1000)


class EngineerUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    region_code: str | None = Field(default=None, pattern=CODE_PATTERN)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    wecom_userid: str | None = Field(default=None, max_length=64)
    skills: Skills | None = None
    status: EngineerStatus | None = None
    max_open_tickets: int | None = Field(default=None, gt=0, le=1000)


class EngineerPublic(EngineerCreate):
    id: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = sql.SQL(
    "e.name, e.region_code, e.phone, e.email, e.wecom_userid, e.skills, e.status, "
    "e.max_open_tickets, e.id, e.created_at, e.updated_at"
)
_KEYS = tuple(EngineerPublic.model_fields)


def _public(row: tuple[object, ...]) -> EngineerPublic:
    return EngineerPublic.model_validate(dict(zip(_KEYS, row, strict=True)))


def _visible(principal: Principal) -> tuple[sql.Composable, list[object]]:
    """The condition on ``e`` that limits engineers to the caller's view."""
    if principal.school_ids is None:
        return sql.SQL("true"), []
    parts = [
        sql.SQL(
            "e.id IN (SELECT engineer_id FROM school_engineers "
            "WHERE school_id = ANY(%s))"
        )
    ]
    params: list[object] = [list(principal.school_ids)]
    if principal.region_code is not None:
        parts.append(sql.SQL("e.region_code IN (SELECT region_subtree(%s))"))
        params.append(principal.region_code)
    if principal.engineer_id is not None:
        parts.append(sql.SQL("e.id = %s"))
        params.append(principal.engineer_id)
    return sql.SQL(" OR ").join(parts), params


def list_engineers(
    conn: Conn,
    principal: Principal,
    *,
    page: Page,
    region: str | None = None,
    status: str | None = None,
    skill: str | None = None,
    q: str | None = None,
) -> Listing[EngineerPublic]:
    visible, params = _visible(principal)
    where = Where().add(visible, *params).page(page, "e.id")
    if region is not None:
        ensure_region_exists(conn, region, field="region")
        where.add("e.region_code IN (SELECT region_subtree(%s))", region)
    if status is not None:
        where.add("e.status = %s", status)
    if skill is not None:
        where.add("e.skills @> ARRAY[%s]::text[]", skill)
    if q:
        where.add("e.name ILIKE %s", like_pattern(q))
    rows = conn.execute(
        sql.SQL("SELECT {} FROM engineers e WHERE {} ORDER BY e.id LIMIT %s").format(
            _COLUMNS, where.compose()
        ),
        [*where.params, page.limit + 1],
    ).fetchall()
    return paginate([_public(r) for r in rows], page, key=lambda e: e.id)


def get_engineer(conn: Conn, principal: Principal, engineer_id: int) -> EngineerPublic:
    visible, params = _visible(principal)
    where = Where().add(visible, *params).add("e.id = %s", engineer_id)
    row = conn.execute(
        sql.SQL("SELECT {} FROM engineers e WHERE {}").format(
            _COLUMNS, where.compose()
        ),
        where.params,
    ).fetchone()
    if row is None:
        raise NotFound(
            f"engineer {engineer_id} does not exist or is outside your scope"
        )
    return _public(row)


def create_engineer(
    conn: Conn, principal: Principal, data: EngineerCreate
) -> EngineerPublic:
    """Add an engineer to a region the caller administers."""
    require_writable_region(conn, principal, data.region_code, field="region_code")
    values = data.model_dump()
    with translated("engineer"):
        row = insert_row(conn, "engineers", values, _COLUMNS)
    return _public(row)


def update_engineer(
    conn: Conn, principal: Principal, engineer_id: int, data: EngineerUpdate
) -> EngineerPublic:
    """Change an engineer of a region the caller administers."""
    current = get_engineer(conn, principal, engineer_id)
    try:
        require_writable_region(conn, principal, current.region_code, field="id")
    except InvalidInput as exc:
        raise NotFound(
            f"engineer {engineer_id} does not exist or is outside your scope"
        ) from exc
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise InvalidInput(f"engineer {key} cannot be null", field=key)
    if "region_code" in changes:
        require_writable_region(
            conn, principal, changes["region_code"], field="region_code"
        )
    if not changes:
        return current
    with translated("engineer"):
        row = update_row(conn, "engineers", engineer_id, changes, _COLUMNS)
    assert row is not None
    return _public(row)
