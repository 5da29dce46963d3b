"""Engineers under /api/v1/engineers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from ...registry import engineers
from ...registry.engineers import (
    EngineerCreate,
    EngineerPublic,
    EngineerStatus,
    EngineerUpdate,
    Skill,
)
from ...registry.pagination import Listing
from ..deps import ConnDep, PrincipalDep
from .paging import PageDep
from .regions import RegionAdminDep

router = APIRouter(prefix="/api/v1/engineers", tags=["engineers"])


@router.get("", summary="List engineers in scope")
def list_engineers(
    *,
    conn: ConnDep,
    principal: PrincipalDep,
    page: PageDep,
    region: Annotated[
        str | None, Query(description="region code; covers its subtree")
    ] = None,
    status: EngineerStatus | None = None,
    skill: Skill | None = None,
    q: Annotated[str | None, Query(max_length=100, description="name contains")] = None,
) -> Listing[EngineerPublic]:
    return engineers.list_engineers(
        conn, principal, page=page, region=region, status=status, skill=skill, q=q
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add an engineer")
def create_engineer(
    conn: ConnDep, principal: RegionAdminDep, body: EngineerCreate
) -> EngineerPublic:
    return engineers.create_engineer(conn, principal, body)


@router.get("/{engineer_id}", summary="Read an engineer")
def get_engineer(
    conn: ConnDep, principal: PrincipalDep, engineer_id: int
) -> EngineerPublic:
    return engineers.get_engineer(conn, principal, engineer_id)


@router.patch("/{engineer_id}", summary="Change an engineer")
def update_engineer(
    conn: ConnDep, principal: RegionAdminDep, engineer_id: int, body: EngineerUpdate
) -> EngineerPublic:
    return engineers.update_engineer(conn, principal, engineer_id, body)
