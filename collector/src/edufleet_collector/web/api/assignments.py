"""Which engineers look after a school, under /api/v1/schools/{code}/engineers."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ...registry import assignments
from ...registry.assignments import AssignmentPublic, AssignmentSet
from ..deps import ConnDep, PrincipalDep
from .regions import RegionAdminDep

router = APIRouter(prefix="/api/v1/schools", tags=["assignments"])


@router.get("/{code}/engineers", summary="List a school's engineers, primary first")
def list_assignments(
    conn: ConnDep, principal: PrincipalDep, code: str
) -> list[AssignmentPublic]:
    return assignments.list_assignments(conn, principal, code)


@router.put(
    "/{code}/engineers/{engineer_id}",
    summary="Assign an engineer to a school as primary or backup",
    description="Making an engineer primary turns the previous primary into a "
    "backup. Answers the school's assignments after the change.",
)
def set_assignment(
    conn: ConnDep,
    principal: RegionAdminDep,
    code: str,
    engineer_id: int,
    body: AssignmentSet,
) -> list[AssignmentPublic]:
    return assignments.set_assignment(conn, principal, code, engineer_id, body)


@router.delete(
    "/{code}/engineers/{engineer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an engineer from a school",
)
def remove_assignment(
    conn: ConnDep, principal: RegionAdminDep, code: str, engineer_id: int
) -> Response:
    assignments.remove_assignment(conn, principal, code, engineer_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
