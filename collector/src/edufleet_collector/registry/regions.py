"""Regions (read only) and the region part of a caller's scope."""

from __future__ import annotations

from pydantic import BaseModel

from ..accounts import Principal
from ..db import Conn
from ..errors import InvalidInput, NotFound

REGION_ADMIN_ROLES = ("province_admin", "district_bureau")


class RegionPublic(BaseModel):
    code: str
    parent_code: str | None
    name_zh: str
    name_en: str
    level: str
    lat: float | None
    lon: float | None


def list_regions(conn: Conn, *, under: str | None = None) -> list[RegionPublic]:
    """Every region, or the subtree below ``under``, parents before children."""
    if under is not None:
        ensure_region_exists(conn, under, field="under")
    rows = conn.execute(
        """
        SELECT code, parent_code, name_zh, name_en, level, lat, lon
        FROM regions
        WHERE %(under)s::text IS NULL OR code IN (SELECT region_subtree(%(under)s))
        ORDER BY (parent_code IS NOT NULL), parent_code, code
        """,
        {"under": under},
    ).fetchall()
    return [
        RegionPublic(
            code=r[0],
            parent_code=r[1],
            name_zh=r[2],
            name_en=r[3],
            level=r[4],
            lat=r[5],
            lon=r[6],
        )
        for r in rows
    ]


def ensure_region_exists(conn: Conn, code: str, *, field: str) -> None:
    """NotFound naming the list to pick from when a region filter is unknown."""
    row = conn.execute("SELECT 1 FROM regions WHERE code = %s", [code]).fetchone()
    if row is None:
        raise NotFound(
            f"region {code!r} ({field}) does not exist; GET /api/v1/regions lists them"
        )


def is_region_admin(principal: Principal) -> bool:
    return principal.role in REGION_ADMIN_ROLES


def require_writable_region(
    conn: Conn, principal: Principal, code: str, *, field: str
) -> None:
    """InvalidInput unless the caller administers region ``code``.

    A province admin administers every region, a district bureau its own
    region and everything below it, other roles none.
    """
    row = conn.execute(
        """
        SELECT 1 FROM regions
        WHERE code = %(code)s
          AND (%(all)s OR code IN (SELECT region_subtree(%(root)s)))
        """,
        {
            "code": code,
            "all": principal.role == "province_admin",
            "root": principal.region_code if is_region_admin(principal) else None,
        },
    ).fetchone()
    if row is None:
        raise InvalidInput(
            f"region {code!r} does not exist or is outside your scope; "
            "GET /api/v1/regions lists the codes",
            field=field,
        )
