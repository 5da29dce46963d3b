"""Devices under /api/v1/devices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from ...enrollment import sync_device_identity
from ...errors import InvalidInput
from ...ingest.history import state_changes
from ...registry import devices
from ...registry.devices import (
    DeviceCreate,
    DeviceFilters,
    DevicePublic,
    DeviceStatus,
    DeviceUpdate,
)
from ...registry.pagination import Listing
from ..deps import AdminDep, ConnDep, PrincipalDep
from .enroll import OptionalDynsecDep
from .paging import PageDep

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.get("", summary="List devices in scope, filtered")
def list_devices(
    *,
    conn: ConnDep,
    principal: PrincipalDep,
    page: PageDep,
    school: Annotated[str | None, Query(description="school code")] = None,
    region: Annotated[
        str | None, Query(description="region code; covers its subtree")
    ] = None,
    category: Annotated[
        str | None, Query(max_length=32, description="device category code")
    ] = None,
    status: DeviceStatus | None = None,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            description="text in the asset tag, name, brand, model or serial",
        ),
    ] = None,
) -> Listing[DevicePublic]:
    filters = DeviceFilters(
        region=region, school=school, category=category, status=status, q=q
    )
    return devices.list_devices(conn, principal, filters, page)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a device")
def create_device(
    conn: ConnDep, principal: AdminDep, body: DeviceCreate
) -> DevicePublic:
    return devices.create_device(conn, principal, body)


@router.get("/{device_id}", summary="Read a device")
def get_device(conn: ConnDep, principal: PrincipalDep, device_id: int) -> DevicePublic:
    return devices.get_device(conn, principal, device_id)


@router.get("/{device_id}/states", summary="A device's connection-state changes")
def get_device_states(
    conn: ConnDep,
    principal: PrincipalDep,
    device_id: int,
    since: Annotated[
        datetime | None, Query(description="from (default: 7 days ago)")
    ] = None,
    until: Annotated[datetime | None, Query(description="until (default: now)")] = None,
) -> list[dict[str, Any]]:
    """Online, sleeping, lost and silent spells, oldest first, at most 1,000."""
    devices.get_device(conn, principal, device_id)  # 404 outside the caller's scope
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=7)
    for name, value in (("since", start), ("until", end)):
        if value.tzinfo is None:
            raise InvalidInput(
                f"{name} {value.isoformat()} has no time zone; add one, e.g. +08:00",
                field=name,
            )
    return [
        {"at": c.at, "state": c.state, "previous": c.previous}
        for c in state_changes(conn, device_id, since=start, until=end)
    ]


@router.patch("/{device_id}", summary="Change a device")
def update_device(
    conn: ConnDep,
    principal: AdminDep,
    dynsec: OptionalDynsecDep,
    device_id: int,
    body: DeviceUpdate,
) -> DevicePublic:
    """Change a device; retiring it revokes its broker login in the same step."""
    before = devices.get_device(conn, principal, device_id)
    updated = devices.update_device(conn, principal, device_id, body)
    sync_device_identity(conn, dynsec, device_id, previous_parent_id=before.parent_id)
    return updated
