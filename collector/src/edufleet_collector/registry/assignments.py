"""Which engineers look after a school: one primary, backups by rank."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..accounts import Principal
from ..db import Conn
from ..errors import NotFound
from .dberrors import translated
from .engineers import EngineerStatus, Skill, get_engineer
from .schools import school_id

AssignmentRole = Literal["primary", "backup"]


class AssignmentSet(BaseModel):
    role: AssignmentRole
    rank: int = Field(default=0, ge=0, le=100, description="backups are tried by rank")


class AssignmentPublic(BaseModel):
    school_code: str
    engineer_id: int
    engineer_name: str
    role: AssignmentRole
    rank: int
    engineer_status: EngineerStatus
    skills: list[Skill]


def list_assignments(
    conn: Conn, principal: Principal, school_code: str
) -> list[AssignmentPublic]:
    """The school's engineers, the primary first, then backups by rank."""
    sid = school_id(conn, principal, school_code, field=None)
    rows = conn.execute(
        """
        SELECT e.id, e.name, a.role, a.rank, e.status, e.skills
        FROM school_engineers a JOIN engineers e ON e.id = a.engineer_id
        WHERE a.school_id = %s
        ORDER BY a.role = 'backup', a.rank, e.id
        """,
        [sid],
    ).fetchall()
    return [
        AssignmentPublic(
            school_code=school_code,
            engineer_id=r[0],
            engineer_name=r[1],
            role=r[2],
            rank=r[3],
            engineer_status=r[4],
            skills=r[5],
        )
        for r in rows
    ]


def set_assignment(
    conn: Conn,
    principal: Principal,
    school_code: str,
    engineer_id: int,
    data: AssignmentSet,
) -> list[AssignmentPublic]:
    """Assign an engineer to a school, or change the role of one already assigned.

    Making an engineer primary turns the school's previous primary into its
    first backup, so a school never has two primaries and never loses one
    silently.
    """
    sid = school_id(conn, principal, school_code, field=None)
    get_engineer(conn, principal, engineer_id)
    with translated("assignment"):
        if data.role == "primary":
            conn.execute(
                "UPDATE school_engineers SET role = 'backup', rank = 0 "
                "WHERE school_id = %s AND role = 'primary' AND engineer_id <> %s",
                [sid, engineer_id],
            )
        conn.execute(
            """
            INSERT INTO school_engineers (school_id, engineer_id, role, rank)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (school_id, engineer_id)
            DO UPDATE SET role = EXCLUDED.role, rank = EXCLUDED.rank
            """,
            [sid, engineer_id, data.role, data.rank],
        )
    return list_assignments(conn, principal, school_code)


def remove_assignment(
    conn: Conn, principal: Principal, school_code: str, engineer_id: int
) -> None:
    sid = school_id(conn, principal, school_code, field=None)
    deleted = conn.execute(
        "DELETE FROM school_engineers WHERE school_id = %s AND engineer_id = %s",
        [sid, engineer_id],
    ).rowcount
    if not deleted:
        raise NotFound(
            f"engineer {engineer_id} is not assigned to school {school_code!r}"
        )
