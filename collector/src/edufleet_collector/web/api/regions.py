"""GET /api/v1/regions, and the dependency for writes that need a region admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from ...accounts import Principal
from ...registry.pagination import Listing
from ...registry.regions import RegionPublic, is_region_admin, list_regions
from ..deps import ConnDep, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["regions"])


def require_region_admin(principal: PrincipalDep) -> Principal:
    if not is_region_admin(principal):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this needs a province_admin or district_bureau role",
        )
    return principal


RegionAdminDep = Annotated[Principal, Depends(require_region_admin)]


@router.get("/regions", summary="List regions, parents before children")
def get_regions(
    conn: ConnDep,
    principal: PrincipalDep,
    under: Annotated[
        str | None, Query(description="only this region and its descendants")
    ] = None,
) -> Listing[RegionPublic]:
    return Listing[RegionPublic](items=list_regions(conn, under=under), next=None)
