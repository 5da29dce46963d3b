"""Faults become tickets: agent fault events and lost devices.

Ingest calls these inside its own transaction, once per event:

- :func:`handle_fault_event` for a fault ``opened`` or ``cleared`` by an
  agent rule. It is idempotent on the agent's (device, sid, seq). An opened
  fault makes one ticket per (device, fault code) while one is open, and
  counts recurrences on it; a fault that recurs within the cool-down after
  its ticket was resolved (or closed as self-recovered) reopens that ticket,
  so a flapping fault stays one ticket. A cleared fault is recorded on the
  ticket and, if no engineer accepted it yet, closes it as self-recovered.
- :func:`handle_connectivity` for devices that went lost or silent (or came
  back). When several devices of one school go lost within the outage window,
  one network incident is opened for the school and the device tickets are
  linked under it instead of being dispatched one by one.
- :func:`handle_inventory_change` for a hardware change against the asset
  record: a low-priority ticket.

Racing processes cannot make two tickets for one fault: the device row is
locked for the decision, and a unique partial index on open (device, fault
code) refuses a second ticket whatever the timing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..db import Conn
from ..errors import InvalidInput, NotFound
from .model import (
    DEFAULT_CONFIG,
    OFFLINE_FAULT,
    SYSTEM_ACTOR,
    Ticket,
    TicketConfig,
)
from .service import create_incident, find_open_ticket, open_ticket, transition
from .sla import cancel_timers
from .store import add_event, find_tickets, load_ticket, update_ticket

log = logging.getLogger("edufleet.collector.tickets.faults")

FaultAction = Literal["opened", "cleared"]
LOST_STATES = frozenset({"lost", "silent", "unreachable"})
BACK_STATES = frozenset({"online", "sleeping"})
SEVERITY_PRIORITY = {"critical": "high"}


@dataclass(frozen=True)
class FaultOutcome:
    """What a fault event did.

    ``result`` is one of: created, recurrence, reopened, recovered,
    self_recovered, no_ticket (a clear with nothing open), duplicate (the
    same (device, sid, seq) was handled before).
    """

    result: str
    ticket_id: int | None

    @property
    def created(self) -> bool:
        return self.result == "created"


def _lock_device(conn: Conn, device_id: int) -> None:
    row = conn.execute(
        "SELECT id FROM devices WHERE id = %s FOR NO KEY UPDATE", [device_id]
    ).fetchone()
    if row is None:
        raise NotFound(f"device {device_id} does not exist")


def _recent_ticket(
    conn: Conn, device_id: int, code: str, since: datetime
) -> Ticket | None:
    """The device's ticket for ``code`` fixed or self-recovered since ``since``."""
    found = find_tickets(
        conn,
        sql.SQL(
            "device_id = %s AND fault_code = %s AND kind = 'device' "
            "AND status IN ('resolved', 'closed') AND merged_into IS NULL "
            "AND COALESCE(resolved_at, closed_at) >= %s"
        ),
        [device_id, code, since],
        tail="ORDER BY COALESCE(resolved_at, closed_at) DESC LIMIT 1",
    )
    return found[0] if found else None


def _count_recurrence(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    data: dict[str, Any],
) -> Ticket:
    updated = update_ticket(
        conn, ticket.id, {"recurrence_count": ticket.recurrence_count + 1}, now
    )
    add_event(
        conn, ticket.id, at=now, actor=actor, kind="recurrence", note=note, data=data
    )
    return updated


def raise_fault(
    conn: Conn,
    *,
    device_id: int,
    code: str,
    severity: str,
    message: str,
    evidence: dict[str, Any],
    actor: str,
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
    parent_id: int | None = None,
    priority: str | None = None,
) -> FaultOutcome:
    """Open a fault on a locked device: a new ticket, a recurrence or a reopening."""
    data = {"severity": severity, "evidence": evidence}
    existing = find_open_ticket(conn, device_id, code)
    if existing is not None:
        _count_recurrence(conn, existing, actor=actor, note=message, now=now, data=data)
        return FaultOutcome("recurrence", existing.id)

    recent = _recent_ticket(conn, device_id, code, now - config.fault_cooldown)
    if recent is not None:
        _count_recurrence(conn, recent, actor=actor, note=message, now=now, data=data)
        transition(
            conn,
            recent.id,
            "reopen",
            actor,
            f"fault {code} came back: {message}".strip(),
            now,
            config=config,
            reason="fault_recurred",
        )
        return FaultOutcome("reopened", recent.id)

    try:
        with conn.transaction():
            outcome = open_ticket(
                conn,
                source="agent",
                device_id=device_id,
                fault_code=code,
                severity=severity,
                description=message,
                actor=actor,
                now=now,
                priority=priority or SEVERITY_PRIORITY.get(severity),
                parent_id=parent_id,
                data={"evidence": evidence},
                config=config,
            )
    except psycopg.errors.UniqueViolation:
        # Another process opened it between our check and insert.
        existing = find_open_ticket(conn, device_id, code)
        if existing is None:
            raise
        _count_recurrence(conn, existing, actor=actor, note=message, now=now, data=data)
        return FaultOutcome("recurrence", existing.id)
    if not outcome.created:
        _count_recurrence(
            conn, outcome.ticket, actor=actor, note=message, now=now, data=data
        )
        return FaultOutcome("recurrence", outcome.ticket.id)
    return FaultOutcome("created", outcome.ticket.id)


def clear_fault(
    conn: Conn,
    *,
    device_id: int,
    code: str,
    message: str,
    actor: str,
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
) -> FaultOutcome:
    """Record that a fault cleared; self-recover its ticket if nobody accepted it."""
    ticket = find_open_ticket(conn, device_id, code)
    if ticket is None:
        return FaultOutcome("no_ticket", None)
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="recovered",
        note=message or f"fault {code} cleared",
    )
    if (
        config.self_recover
        and ticket.accepted_at is None
        and ticket.status in ("reported", "dispatched")
    ):
        transition(
            conn,
            ticket.id,
            "self_recover",
            actor,
            f"fault {code} cleared before an engineer accepted the ticket",
            now,
            config=config,
        )
        return FaultOutcome("self_recovered", ticket.id)
    update_ticket(conn, ticket.id, {}, now)
    return FaultOutcome("recovered", ticket.id)


def handle_fault_event(
    conn: Conn,
    *,
    device_id: int,
    action: str,
    code: str,
    severity: str,
    message: str,
    evidence: dict[str, Any],
    subject_device_id: int | None,
    sid: str,
    seq: int,
    ts: datetime,
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
) -> FaultOutcome:
    """Turn one agent fault event into ticket changes; see the module docstring.

    ``device_id`` is the reporting agent's device; ``subject_device_id`` the
    device the fault is about (a projector behind a controller, say), the
    reporter itself when None. Runs in the caller's transaction.
    """
    if action not in ("opened", "cleared"):
        raise InvalidInput(
            f"fault action {action!r} must be 'opened' or 'cleared'", field="action"
        )
    if not code or len(code) > 64:
        raise InvalidInput("fault code must have 1-64 characters", field="code")
    subject = subject_device_id or device_id
    inserted = conn.execute(
        """
        INSERT INTO fault_events
            (device_id, sid, seq, subject_device_id, action, code, severity,
             message, evidence, ts, received_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (device_id, sid, seq) DO NOTHING
        RETURNING 1
        """,
        [
            device_id,
            sid,
            seq,
            subject,
            action,
            code,
            severity,
            message[:4000],
            Jsonb(evidence),
            ts,
            now,
        ],
    ).fetchone()
    if inserted is None:
        row = conn.execute(
            "SELECT ticket_id FROM fault_events WHERE device_id = %s AND sid = %s "
            "AND seq = %s",
            [device_id, sid, seq],
        ).fetchone()
        return FaultOutcome("duplicate", row[0] if row else None)

    _lock_device(conn, subject)
    actor = f"agent:{device_id}"
    if action == "opened":
        outcome = raise_fault(
            conn,
            device_id=subject,
            code=code,
            severity=severity,
            message=message[:4000],
            evidence=evidence,
            actor=actor,
            now=now,
            config=config,
        )
    else:
        outcome = clear_fault(
            conn,
            device_id=subject,
            code=code,
            message=message[:4000],
            actor=actor,
            now=now,
            config=config,
        )
    conn.execute(
        "UPDATE fault_events SET ticket_id = %s, outcome = %s "
        "WHERE device_id = %s AND sid = %s AND seq = %s",
        [outcome.ticket_id, outcome.result, device_id, sid, seq],
    )
    return outcome


# Connectivity and root-cause grouping ----------------------------------------


@dataclass
class ConnectivityOutcome:
    """Tickets touched by a connectivity change."""

    created: list[int] = field(default_factory=list)
    grouped: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    incidents: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Lost:
    device_id: int
    room_id: int | None
    switch_id: int | None
    ticket_id: int | None


def _devices_by_school(conn: Conn, device_ids: Sequence[int]) -> dict[int, list[int]]:
    rows = conn.execute(
        "SELECT id, school_id FROM devices WHERE id = ANY(%s) ORDER BY id",
        [list(device_ids)],
    ).fetchall()
    found: dict[int, list[int]] = {}
    for device_id, school_id in rows:
        found.setdefault(int(school_id), []).append(int(device_id))
    missing = set(device_ids) - {d for ds in found.values() for d in ds}
    if missing:
        log.warning(
            "connectivity change for unknown devices %s ignored", sorted(missing)
        )
    return found


def _recent_losses(conn: Conn, school_id: int, since: datetime) -> list[_Lost]:
    rows = conn.execute(
        """
        SELECT l.device_id, d.room_id,
               CASE WHEN pc.skill = 'network' THEN d.parent_id END, l.ticket_id
        FROM connectivity_losses l
        JOIN devices d ON d.id = l.device_id
        LEFT JOIN devices p ON p.id = d.parent_id
        LEFT JOIN device_categories pc ON pc.code = p.category
        WHERE l.school_id = %s AND l.lost_at >= %s
        ORDER BY l.device_id
        """,
        [school_id, since],
    ).fetchall()
    return [_Lost(int(r[0]), r[1], r[2], r[3]) for r in rows]


def _open_incident(conn: Conn, school_id: int) -> Ticket | None:
    found = find_tickets(
        conn,
        sql.SQL("school_id = %s AND kind = 'incident' AND ticket_is_open(status)"),
        [school_id],
        tail="LIMIT 1",
    )
    return found[0] if found else None


def _scope_of(losses: Sequence[_Lost]) -> tuple[str, int | None]:
    """The narrowest common cause: one switch, one room, or the whole school."""
    switches = Counter(lost.switch_id for lost in losses)
    if len(switches) == 1 and None not in switches:
        return "switch", next(iter(switches))
    rooms = Counter(lost.room_id for lost in losses)
    if len(rooms) == 1 and None not in rooms:
        return "room", next(iter(rooms))
    return "school", None


def _link_under(conn: Conn, ticket_id: int, incident_id: int, now: datetime) -> bool:
    ticket = load_ticket(conn, ticket_id, lock=True)
    if not ticket.is_open or ticket.parent_id is not None:
        return False
    cancel_timers(conn, ticket.id, now)
    update_ticket(conn, ticket.id, {"parent_id": incident_id}, now)
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=SYSTEM_ACTOR,
        kind="grouped",
        note=f"part of network incident #{incident_id}",
        data={"parent_id": incident_id},
    )
    return True


def _device_lost(
    conn: Conn,
    device_id: int,
    state: str,
    *,
    parent_id: int | None,
    now: datetime,
    config: TicketConfig,
    outcome: ConnectivityOutcome,
) -> None:
    result = raise_fault(
        conn,
        device_id=device_id,
        code=OFFLINE_FAULT,
        severity="",
        message=f"device is {state}",
        evidence={"state": state},
        actor=SYSTEM_ACTOR,
        now=now,
        config=config,
        parent_id=parent_id,
    )
    if result.ticket_id is None:
        return
    conn.execute(
        "UPDATE connectivity_losses SET ticket_id = %s WHERE device_id = %s",
        [result.ticket_id, device_id],
    )
    if result.result == "created":
        outcome.created.append(result.ticket_id)
    if parent_id is not None and _link_under(conn, result.ticket_id, parent_id, now):
        outcome.grouped.append(result.ticket_id)


def _school_lost(
    conn: Conn,
    school_id: int,
    *,
    device_ids: list[int],
    state: str,
    now: datetime,
    config: TicketConfig,
    outcome: ConnectivityOutcome,
) -> None:
    conn.execute("SELECT id FROM schools WHERE id = %s FOR NO KEY UPDATE", [school_id])
    for device_id in device_ids:
        conn.execute(
            """
            INSERT INTO connectivity_losses (device_id, school_id, state, lost_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (device_id) DO UPDATE SET state = EXCLUDED.state
            """,
            [device_id, school_id, state, now],
        )

    incident = _open_incident(conn, school_id)
    losses = _recent_losses(conn, school_id, now - config.outage_window)
    if incident is None and len(losses) >= config.outage_min_devices:
        scope, scope_id = _scope_of(losses)
        names = {
            "switch": "交换机 switch",
            "room": "教室 room",
            "school": "全校 school",
        }
        incident = create_incident(
            conn,
            school_id=school_id,
            scope=scope,
            scope_id=scope_id,
            device_id=scope_id if scope == "switch" else None,
            title=(
                f"网络故障 Network outage: {len(losses)} devices lost ({names[scope]})"
            ),
            description=(
                f"{len(losses)} devices went {state} within "
                f"{int(config.outage_window.total_seconds())} s"
            ),
            actor=SYSTEM_ACTOR,
            now=now,
            config=config,
        )
        outcome.incidents.append(incident.id)
        for lost in losses:
            if lost.device_id in device_ids:
                continue
            if lost.ticket_id is not None and _link_under(
                conn, lost.ticket_id, incident.id, now
            ):
                outcome.grouped.append(lost.ticket_id)

    for device_id in device_ids:
        _lock_device(conn, device_id)
        _device_lost(
            conn,
            device_id,
            state,
            parent_id=incident.id if incident is not None else None,
            now=now,
            config=config,
            outcome=outcome,
        )


def _school_back(
    conn: Conn,
    school_id: int,
    *,
    device_ids: list[int],
    now: datetime,
    config: TicketConfig,
    outcome: ConnectivityOutcome,
) -> None:
    conn.execute("SELECT id FROM schools WHERE id = %s FOR NO KEY UPDATE", [school_id])
    conn.execute(
        "DELETE FROM connectivity_losses WHERE device_id = ANY(%s)", [device_ids]
    )
    for device_id in device_ids:
        _lock_device(conn, device_id)
        result = clear_fault(
            conn,
            device_id=device_id,
            code=OFFLINE_FAULT,
            message="device is back online",
            actor=SYSTEM_ACTOR,
            now=now,
            config=config,
        )
        if result.ticket_id is not None:
            outcome.recovered.append(result.ticket_id)

    incident = _open_incident(conn, school_id)
    if incident is None:
        return
    still_lost = conn.execute(
        "SELECT count(*) FROM connectivity_losses l "
        "JOIN tickets t ON t.id = l.ticket_id "
        "WHERE l.school_id = %s AND t.parent_id = %s",
        [school_id, incident.id],
    ).fetchone()
    if still_lost and int(still_lost[0]) == 0:
        add_event(
            conn,
            incident.id,
            at=now,
            actor=SYSTEM_ACTOR,
            kind="recovered",
            note="every device of the outage is back",
        )
        if config.self_recover and incident.accepted_at is None:
            transition(
                conn,
                incident.id,
                "self_recover",
                SYSTEM_ACTOR,
                "the network came back before an engineer accepted the incident",
                now,
                config=config,
            )
            outcome.recovered.append(incident.id)


def _with_losses(conn: Conn, device_ids: Sequence[int]) -> list[int]:
    """The devices of ``device_ids`` with a recorded loss or an open offline ticket."""
    rows = conn.execute(
        """
        SELECT device_id FROM connectivity_losses WHERE device_id = ANY(%(ids)s)
        UNION
        SELECT device_id FROM tickets
        WHERE device_id = ANY(%(ids)s) AND fault_code = %(code)s
          AND ticket_is_open(status)
        """,
        {"ids": list(device_ids), "code": OFFLINE_FAULT},
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def handle_connectivity(
    conn: Conn,
    *,
    device_ids: list[int],
    state: str,
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
) -> ConnectivityOutcome:
    """Devices went lost or silent (or came back online): tickets and incidents.

    Call it only for losses that are faults (ingest judges them against the
    school calendar). ``state`` is lost, silent or unreachable for a loss, and
    online or sleeping for a return. Runs in the caller's transaction.
    """
    if state not in LOST_STATES | BACK_STATES:
        raise InvalidInput(
            f"connectivity state {state!r} must be one of "
            f"{', '.join(sorted(LOST_STATES | BACK_STATES))}",
            field="state",
        )
    outcome = ConnectivityOutcome()
    if state in BACK_STATES:
        device_ids = _with_losses(conn, device_ids)
        if not device_ids:
            return outcome
    for school_id, ids in sorted(_devices_by_school(conn, device_ids).items()):
        if state in LOST_STATES:
            _school_lost(
                conn,
                school_id,
                device_ids=ids,
                state=state,
                now=now,
                config=config,
                outcome=outcome,
            )
        else:
            _school_back(
                conn,
                school_id,
                device_ids=ids,
                now=now,
                config=config,
                outcome=outcome,
            )
    return outcome


def handle_inventory_change(
    conn: Conn,
    *,
    device_id: int,
    changes: dict[str, Any],
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
) -> FaultOutcome:
    """A hardware change against the asset record (RAM, disks, serial): a low ticket."""
    _lock_device(conn, device_id)
    fields_changed = ", ".join(sorted(changes)) or "inventory"
    return raise_fault(
        conn,
        device_id=device_id,
        code="inventory_change",
        severity="info",
        message=f"hardware differs from the asset record: {fields_changed}",
        evidence=changes,
        actor=SYSTEM_ACTOR,
        now=now,
        config=config,
        priority="low",
    )


def incident_of(conn: Conn, school_id: int) -> Ticket | None:
    """The school's open network incident, if any."""
    return _open_incident(conn, school_id)


__all__ = [
    "ConnectivityOutcome",
    "FaultOutcome",
    "handle_connectivity",
    "handle_fault_event",
    "handle_inventory_change",
    "incident_of",
]
