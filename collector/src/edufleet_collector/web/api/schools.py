"""Schools under /api/v1/schools."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from ...registry import schools
from ...registry.pagination import Listing
from ...registry.schools import SchoolCreate, SchoolPublic, SchoolUpdate
from ..deps import AdminDep, ConnDep, PrincipalDep
from .paging import PageDep
from .regions import RegionAdminDep

router = APIRouter(prefix="/api/v1/schools", tags=["schools"])


@router.get("", summary="List schools in scope")
def list_schools(
    conn: ConnDep,
    principal: PrincipalDep,
    page: PageDep,
    region: Annotated[
        str | None, Query(description="region code; covers its subtree")
    ] = None,
    q: Annotated[str | None, Query(max_length=100, description="name contains")] = None,
) -> Listing[SchoolPublic]:
    return schools.list_schools(conn, principal, page=page, region=region, q=q)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add a school")
def create_school(
    conn: ConnDep, principal: RegionAdminDep, body: SchoolCreate
) -> SchoolPublic:
    return schools.create_school(conn, principal, body)


@router.get("/{code}", summary="Read a school")
def get_school(conn: ConnDep, principal: PrincipalDep, code: str) -> SchoolPublic:
    return schools.get_school(conn, principal, code)


@router.patch("/{code}", summary="Change a school's details")
def update_school(
    conn: ConnDep, principal: AdminDep, code: str, body: SchoolUpdate
) -> SchoolPublic:
    return schools.update_school(conn, principal, code, body)
