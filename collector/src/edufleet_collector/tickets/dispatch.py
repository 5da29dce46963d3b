"""Choosing the engineer for a ticket, with a reason a supervisor can read.

The order is: the school's primary engineer; the school's backups by rank;
then the least-loaded active engineer of the district pool who has the skill
the device's category needs. The pool is every engineer whose region is the
school's region or one above it, plus every engineer who covers another school
of the same region. An engineer is passed over when inactive, on leave, off
shift, over ``max_open_tickets``, or excluded (already timed out or handed
the ticket back).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..db import Conn

LOAD_STATUSES = ["dispatched", "accepted", "scheduled"]

_CANDIDATE_COLUMNS = """
    e.id, e.name, e.status, e.max_open_tickets,
    (SELECT count(*) FROM tickets t
     WHERE t.engineer_id = e.id AND t.status = ANY(%(load)s)) AS open_tickets,
    EXISTS (SELECT 1 FROM engineer_leave l WHERE l.engineer_id = e.id
            AND l.starts_at <= %(now)s AND %(now)s < l.ends_at) AS on_leave,
    (NOT EXISTS (SELECT 1 FROM engineer_shifts s WHERE s.engineer_id = e.id)
     OR EXISTS (
        SELECT 1 FROM engineer_shifts s WHERE s.engineer_id = e.id
        AND s.weekday = extract(isodow FROM (%(now)s AT TIME ZONE %(tz)s))::int - 1
        AND (%(now)s AT TIME ZONE %(tz)s)::time >= s.starts
        AND (%(now)s AT TIME ZONE %(tz)s)::time < s.ends)) AS on_shift
"""


@dataclass(frozen=True)
class Candidate:
    engineer_id: int
    name: str
    rule: str
    rank: int
    status: str
    open_tickets: int
    max_open_tickets: int
    on_leave: bool
    on_shift: bool

    def unavailable_because(self, exclude: Collection[int]) -> str | None:
        """Why this engineer cannot take the ticket now, or None if they can."""
        if self.engineer_id in exclude:
            return "already passed over for this ticket"
        if self.status != "active":
            return f"is {self.status.replace('_', ' ')}"
        if self.on_leave:
            return "is on leave"
        if not self.on_shift:
            return "is off shift"
        if self.open_tickets >= self.max_open_tickets:
            return (
                f"has {self.open_tickets} open tickets (limit {self.max_open_tickets})"
            )
        return None

    def label(self) -> str:
        where = f", rank {self.rank}" if self.rule == "backup" else ""
        return f"{self.rule} engineer {self.name} (#{self.engineer_id}{where})"


@dataclass(frozen=True)
class DispatchDecision:
    """The chosen engineer (None when nobody is available) and why."""

    engineer_id: int | None
    engineer_name: str
    rule: str
    reason: str
    considered: list[dict[str, Any]] = field(default_factory=list)


def _candidate(row: tuple[Any, ...], *, rule: str, rank: int) -> Candidate:
    return Candidate(
        engineer_id=int(row[0]),
        name=str(row[1]),
        status=str(row[2]),
        max_open_tickets=int(row[3]),
        open_tickets=int(row[4]),
        on_leave=bool(row[5]),
        on_shift=bool(row[6]),
        rule=rule,
        rank=rank,
    )


def _school_engineers(
    conn: Conn, school_id: int, now: datetime, tz: str
) -> list[Candidate]:
    rows = conn.execute(
        "SELECT "
        + _CANDIDATE_COLUMNS
        + """, se.role, se.rank
        FROM school_engineers se JOIN engineers e ON e.id = se.engineer_id
        WHERE se.school_id = %(school)s
        ORDER BY se.role = 'primary' DESC, se.rank, e.id
        """,
        {"school": school_id, "now": now, "tz": tz, "load": LOAD_STATUSES},
    ).fetchall()
    return [_candidate(r, rule=str(r[7]), rank=int(r[8])) for r in rows]


def _pool(
    conn: Conn,
    school_id: int,
    *,
    skill: str | None,
    now: datetime,
    tz: str,
    skip: Collection[int],
) -> list[Candidate]:
    rows = conn.execute(
        "SELECT "
        + _CANDIDATE_COLUMNS
        + """
        FROM engineers e, schools s
        WHERE s.id = %(school)s AND e.status = 'active'
          AND (%(skill)s::text IS NULL OR %(skill)s::text = ANY(e.skills))
          AND e.id <> ALL(%(skip)s)
          AND (e.region_code IN (SELECT code FROM region_ancestors(s.region_code))
               OR e.id IN (SELECT se.engineer_id FROM school_engineers se
                           JOIN schools o ON o.id = se.school_id
                           WHERE o.region_code = s.region_code))
        ORDER BY open_tickets, e.id
        """,
        {
            "school": school_id,
            "skill": skill,
            "skip": list(skip),
            "now": now,
            "tz": tz,
            "load": LOAD_STATUSES,
        },
    ).fetchall()
    return [_candidate(r, rule="pool", rank=0) for r in rows]


def _room_left(conn: Conn, candidate: Candidate) -> str | None:
    """Lock the engineer and count again, so racing dispatches respect the limit.

    Returns why the engineer is full, or None when the ticket fits. The lock
    is held until the caller's transaction ends.
    """
    conn.execute(
        "SELECT 1 FROM engineers WHERE id = %s FOR NO KEY UPDATE",
        [candidate.engineer_id],
    )
    row = conn.execute(
        "SELECT count(*) FROM tickets WHERE engineer_id = %s AND status = ANY(%s)",
        [candidate.engineer_id, LOAD_STATUSES],
    ).fetchone()
    count = int(row[0]) if row else 0
    if count >= candidate.max_open_tickets:
        return f"has {count} open tickets (limit {candidate.max_open_tickets})"
    return None


def choose_engineer(
    conn: Conn,
    *,
    school_id: int,
    skill: str | None,
    now: datetime,
    exclude: Collection[int] = (),
    timezone: str = "Asia/Shanghai",
) -> DispatchDecision:
    """Pick the engineer for a ticket of ``school_id`` needing ``skill``."""
    notes: list[str] = []
    considered: list[dict[str, Any]] = []

    own = _school_engineers(conn, school_id, now, timezone)
    for candidate in own:
        why = candidate.unavailable_because(exclude) or _room_left(conn, candidate)
        considered.append(_describe(candidate, why))
        if why is None:
            notes.append(f"dispatched to the {candidate.label()}")
            return _decision(candidate, notes, considered)
        notes.append(f"{candidate.label()} {why}")
    if not own:
        notes.append("the school has no assigned engineer")

    pool = _pool(
        conn,
        school_id,
        skill=skill,
        now=now,
        tz=timezone,
        skip=[c.engineer_id for c in own],
    )
    for candidate in pool:
        why = candidate.unavailable_because(exclude) or _room_left(conn, candidate)
        considered.append(_describe(candidate, why))
        if why is None:
            skill_text = f"skill {skill}, " if skill else ""
            notes.append(
                f"dispatched to {candidate.name} (#{candidate.engineer_id}) from the "
                f"district pool: {skill_text}{candidate.open_tickets} open tickets, "
                "the least loaded available"
            )
            return _decision(candidate, notes, considered)
    notes.append(
        "no engineer of the district pool"
        + (f" with skill {skill}" if skill else "")
        + " is available"
    )
    return DispatchDecision(None, "", "none", "; ".join(notes), considered)


def _decision(
    candidate: Candidate, notes: list[str], considered: list[dict[str, Any]]
) -> DispatchDecision:
    return DispatchDecision(
        engineer_id=candidate.engineer_id,
        engineer_name=candidate.name,
        rule=candidate.rule,
        reason="; ".join(notes),
        considered=considered,
    )


def _describe(candidate: Candidate, why: str | None) -> dict[str, Any]:
    return {
        "engineer_id": candidate.engineer_id,
        "rule": candidate.rule,
        "open_tickets": candidate.open_tickets,
        "skipped": why,
    }
