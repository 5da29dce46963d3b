"""Rooms of a school under /api/v1/schools/{code}/rooms."""

from __future__ import annotations

from fastapi import APIRouter, status

from ...registry import rooms
from ...registry.pagination import Listing
from ...registry.rooms import RoomCreate, RoomKind, RoomPublic, RoomUpdate
from ..deps import AdminDep, ConnDep, PrincipalDep
from .paging import PageDep

router = APIRouter(prefix="/api/v1/schools", tags=["rooms"])


@router.get("/{code}/rooms", summary="List a school's rooms")
def list_rooms(
    conn: ConnDep,
    principal: PrincipalDep,
    code: str,
    page: PageDep,
    kind: RoomKind | None = None,
) -> Listing[RoomPublic]:
    return rooms.list_rooms(conn, principal, code, page=page, kind=kind)


@router.post("/{code}/rooms", status_code=status.HTTP_201_CREATED, summary="Add a room")
def create_room(
    conn: ConnDep, principal: AdminDep, code: str, body: RoomCreate
) -> RoomPublic:
    return rooms.create_room(conn, principal, code, body)


@router.get("/{code}/rooms/{room_id}", summary="Read a room")
def get_room(
    conn: ConnDep, principal: PrincipalDep, code: str, room_id: int
) -> RoomPublic:
    return rooms.get_room(conn, principal, code, room_id)


@router.patch("/{code}/rooms/{room_id}", summary="Change a room")
def update_room(
    conn: ConnDep, principal: AdminDep, code: str, room_id: int, body: RoomUpdate
) -> RoomPublic:
    return rooms.update_room(conn, principal, code, room_id, body)
