"""The ticket service: create, dispatch, move through the lifecycle, rate.

Every ticket change goes through this module, whether it comes from an agent
fault (see ``faults``), a teacher's QR report, the hotline or an admin, so all
of them get the same dedup, dispatch, SLA clocks and notifications. Functions
take a connection and work inside the caller's transaction; the caller commits.

The lifecycle::

    reported -> dispatched -> accepted -> scheduled -> resolved -> closed
                                 \\___________________/
    any open state -> cancelled;  resolved/closed -(reopen)-> dispatched

Every change appends an event (actor, time, note, from -> to). An action that
is not allowed in the ticket's state raises ``Conflict`` naming the actions
that are.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from ..db import Conn
from ..errors import Conflict, InvalidInput, NotFound
from . import notices
from .dispatch import choose_engineer
from .model import (
    DEFAULT_CONFIG,
    OPEN_STATUSES,
    PAUSE_REASONS,
    PRIORITIES,
    SOURCES,
    STATUSES,
    SYSTEM_ACTOR,
    CreateOutcome,
    Ticket,
    TicketConfig,
    TicketEvent,
    colour_of,
)
from .sla import cancel_timers, refresh_sla, set_timer
from .store import (
    add_event,
    find_tickets,
    insert_ticket,
    list_events,
    load_ticket,
    update_ticket,
)

log = logging.getLogger("edufleet.collector.tickets")

ALL = frozenset(STATUSES)
OPEN = OPEN_STATUSES

TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "accept": (frozenset({"reported", "dispatched"}), "accepted"),
    "schedule": (frozenset({"accepted", "scheduled"}), "scheduled"),
    "resolve": (frozenset({"accepted", "scheduled"}), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
    "cancel": (OPEN, "cancelled"),
    "reopen": (frozenset({"resolved", "closed"}), "dispatched"),
    "hand_back": (frozenset({"dispatched", "accepted", "scheduled"}), "dispatched"),
    "reassign": (OPEN, "dispatched"),
    "change_priority": (OPEN, None),
    "merge": (OPEN, "closed"),
    "pause": (frozenset({"accepted", "scheduled"}), None),
    "resume": (frozenset({"accepted", "scheduled"}), None),
    "note": (ALL, None),
    "self_recover": (frozenset({"reported", "dispatched"}), "closed"),
}
"""Each action: the states it is allowed from, and the state it leads to."""

ACTIONS = tuple(TRANSITIONS)
MAX_NOTE = 4000
RATING_PATH = "/rate/"


def allowed_actions(status: str) -> list[str]:
    """The actions allowed from ``status``, in lifecycle order."""
    return [action for action, (sources, _) in TRANSITIONS.items() if status in sources]


def _check_allowed(ticket: Ticket, action: str) -> None:
    if action not in TRANSITIONS:
        raise InvalidInput(
            f"action {action!r} is unknown; use one of {', '.join(ACTIONS)}",
            field="action",
        )
    sources, _ = TRANSITIONS[action]
    if ticket.status not in sources:
        allowed = ", ".join(allowed_actions(ticket.status)) or "none"
        raise Conflict(
            f"ticket {ticket.id} is {ticket.status}: {action!r} is not allowed; "
            f"allowed from {ticket.status}: {allowed}"
        )


def _check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise InvalidInput(
            f"note has {len(note)} characters; the limit is {MAX_NOTE}", field="note"
        )
    return note


# Creating tickets ----------------------------------------------------------


@dataclass(frozen=True)
class _Device:
    id: int
    school_id: int
    room_id: int | None
    category: str
    category_name: str
    skill: str
    room_kind: str | None
    always_on: bool


def _lock_device(conn: Conn, device_id: int) -> _Device:
    """Load the device and hold its row, so reports for one device queue up."""
    row = conn.execute(
        """
        SELECT d.id, d.school_id, d.room_id, d.category, c.name_zh, c.skill,
               r.kind, c.always_on
        FROM devices d
        JOIN device_categories c ON c.code = d.category
        LEFT JOIN rooms r ON r.id = d.room_id
        WHERE d.id = %s
        FOR NO KEY UPDATE OF d
        """,
        [device_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"device {device_id} does not exist")
    return _Device(
        id=int(row[0]),
        school_id=int(row[1]),
        room_id=row[2],
        category=str(row[3]),
        category_name=str(row[4]),
        skill=str(row[5]),
        room_kind=row[6],
        always_on=bool(row[7]),
    )


def default_priority(device: _Device, source: str) -> str:
    """Exam rooms are critical; always-on equipment is high; the rest normal."""
    if device.room_kind == "exam":
        return "critical"
    if device.always_on or device.skill == "network":
        return "high"
    return "normal"


def _symptom_name(conn: Conn, category: str, symptom: str | None) -> str | None:
    if not symptom:
        return None
    if symptom == "other":
        return "其他 Other"
    row = conn.execute(
        "SELECT name_zh FROM category_symptoms WHERE category = %s AND code = %s",
        [category, symptom],
    ).fetchone()
    if row is None:
        raise InvalidInput(
            f"symptom {symptom!r} is not offered for {category} devices; pick one of "
            "the category's symptoms or 'other'",
            field="symptom",
        )
    return str(row[0])


def find_open_ticket(
    conn: Conn, device_id: int, fault_code: str | None = None
) -> Ticket | None:
    """The device's open ticket (for ``fault_code`` if given), following merges."""
    where: sql.Composable = sql.SQL(
        "device_id = %s AND kind = 'device' AND ticket_is_open(status) "
        "AND merged_into IS NULL"
    )
    params: list[Any] = [device_id]
    if fault_code is not None:
        where += sql.SQL(" AND fault_code = %s")
        params.append(fault_code)
    found = find_tickets(
        conn, where, params, tail="ORDER BY parent_id IS NOT NULL, id LIMIT 1"
    )
    return found[0] if found else None


def open_ticket(
    conn: Conn,
    *,
    source: str,
    device_id: int,
    actor: str,
    now: datetime,
    symptom: str | None = None,
    fault_code: str | None = None,
    description: str = "",
    reporter_name: str = "",
    reporter_phone: str = "",
    priority: str | None = None,
    title: str | None = None,
    severity: str = "",
    parent_id: int | None = None,
    data: dict[str, Any] | None = None,
    config: TicketConfig = DEFAULT_CONFIG,
) -> CreateOutcome:
    """Create and dispatch a device ticket, or record a "me too" on its open one.

    People's reports (no ``fault_code``) join any open ticket of the device;
    an agent's fault joins only the open ticket of the same fault code (and
    then the caller counts a recurrence). ``parent_id`` links the ticket under a
    network incident, and such a ticket is not dispatched by itself.
    """
    if source not in SOURCES:
        raise InvalidInput(
            f"source {source!r} is not one of {', '.join(SOURCES)}", field="source"
        )
    if priority is not None and priority not in PRIORITIES:
        raise InvalidInput(
            f"priority {priority!r} is not one of {', '.join(PRIORITIES)}",
            field="priority",
        )
    if len(description) > MAX_NOTE:
        raise InvalidInput(
            f"description has {len(description)} characters; the limit is {MAX_NOTE}",
            field="description",
        )
    device = _lock_device(conn, device_id)
    symptom_name = _symptom_name(conn, device.category, symptom)

    existing = find_open_ticket(conn, device_id, fault_code)
    if existing is not None:
        if fault_code is not None:
            return CreateOutcome(existing, created=False)
        joined = add_me_too(
            conn,
            existing.id,
            actor=actor,
            now=now,
            reporter_name=reporter_name,
            reporter_phone=reporter_phone,
            description=description,
            symptom=symptom,
            source=source,
        )
        return CreateOutcome(joined, created=False)

    ticket = insert_ticket(
        conn,
        {
            "kind": "device",
            "device_id": device.id,
            "school_id": device.school_id,
            "room_id": device.room_id,
            "source": source,
            "fault_code": fault_code,
            "symptom": symptom,
            "severity": severity,
            "title": (
                title
                or " ".join(
                    p for p in (device.category_name, symptom_name or fault_code) if p
                )
            )[:200],
            "description": description,
            "priority": priority or default_priority(device, source),
            "reporter_name": reporter_name.strip()[:100],
            "reporter_phone": reporter_phone.strip()[:40],
            "status_token": secrets.token_urlsafe(18),
            "parent_id": parent_id,
            "data": data or {},
            "reported_at": now,
            "updated_at": now,
        },
    )
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="created",
        to_status="reported",
        note=description,
        data={"source": source, "symptom": symptom, "fault_code": fault_code},
    )
    if parent_id is None:
        ticket = dispatch_ticket(
            conn, ticket, actor=SYSTEM_ACTOR, now=now, config=config
        )
    else:
        add_event(
            conn,
            ticket.id,
            at=now,
            actor=SYSTEM_ACTOR,
            kind="grouped",
            note=f"part of network incident #{parent_id}; not dispatched by itself",
            data={"parent_id": parent_id},
        )
    return CreateOutcome(
        refresh_sla(conn, ticket, now, calendars=config.calendars), created=True
    )


def create_ticket(
    conn: Conn,
    *,
    source: str,
    device_id: int,
    actor: str,
    now: datetime,
    symptom: str | None = None,
    fault_code: str | None = None,
    description: str = "",
    reporter_name: str = "",
    reporter_phone: str = "",
    priority: str | None = None,
    title: str | None = None,
    config: TicketConfig = DEFAULT_CONFIG,
) -> Ticket:
    """Report a device's fault: a new dispatched ticket, or a "me too" on the open one.

    ``source`` is qr, hotline, admin or agent; ``symptom`` one of the device
    category's symptom codes or 'other'. The reporter's name and phone are
    personal data: they are kept on the ticket only to tell the reporter of
    progress. Returns the ticket the report landed on.
    """
    return open_ticket(
        conn,
        source=source,
        device_id=device_id,
        actor=actor,
        now=now,
        symptom=symptom,
        fault_code=fault_code,
        description=description,
        reporter_name=reporter_name,
        reporter_phone=reporter_phone,
        priority=priority,
        title=title,
        config=config,
    ).ticket


def add_me_too(
    conn: Conn,
    ticket_id: int,
    *,
    actor: str,
    now: datetime,
    reporter_name: str = "",
    reporter_phone: str = "",
    description: str = "",
    symptom: str | None = None,
    source: str = "qr",
) -> Ticket:
    """Record another report of the same problem on an open ticket."""
    ticket = load_ticket(conn, ticket_id, lock=True)
    if not ticket.is_open:
        raise Conflict(
            f"ticket {ticket_id} is {ticket.status}; a new report needs a new ticket"
        )
    changes: dict[str, Any] = {"me_too_count": ticket.me_too_count + 1}
    if not ticket.reporter_phone and reporter_phone:
        changes["reporter_name"] = reporter_name.strip()[:100]
        changes["reporter_phone"] = reporter_phone.strip()[:40]
    updated = update_ticket(conn, ticket.id, changes, now)
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="me_too",
        note=_check_note(description),
        data={
            "source": source,
            "symptom": symptom,
            "has_contact": bool(reporter_phone),
        },
    )
    return updated


def create_incident(
    conn: Conn,
    *,
    school_id: int,
    scope: str,
    scope_id: int | None,
    device_id: int | None,
    title: str,
    description: str,
    actor: str,
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
) -> Ticket:
    """Open a network incident for a school (the caller checked none is open)."""
    room_id = scope_id if scope == "room" else None
    ticket = insert_ticket(
        conn,
        {
            "kind": "incident",
            "device_id": device_id,
            "school_id": school_id,
            "room_id": room_id,
            "source": "agent",
            "fault_code": "network_outage",
            "title": title[:200],
            "description": description,
            "priority": "high",
            "status_token": secrets.token_urlsafe(18),
            "data": {"scope": scope, "scope_id": scope_id},
            "reported_at": now,
            "updated_at": now,
        },
    )
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="created",
        to_status="reported",
        note=description,
        data={"scope": scope, "scope_id": scope_id},
    )
    ticket = dispatch_ticket(conn, ticket, actor=SYSTEM_ACTOR, now=now, config=config)
    return refresh_sla(conn, ticket, now, calendars=config.calendars)


# Dispatch ------------------------------------------------------------------


def _skill_for(conn: Conn, ticket: Ticket) -> str | None:
    if ticket.kind == "incident":
        return "network"
    row = conn.execute(
        "SELECT c.skill FROM devices d JOIN device_categories c ON c.code = d.category "
        "WHERE d.id = %s",
        [ticket.device_id],
    ).fetchone()
    return str(row[0]) if row else None


def passed_over(conn: Conn, ticket_id: int) -> set[int]:
    """Engineers who timed out on or handed back this ticket; dispatch skips them."""
    rows = conn.execute(
        "SELECT DISTINCT (data->>'engineer_id')::bigint FROM ticket_events "
        "WHERE ticket_id = %s AND kind IN ('accept_timeout', 'handed_back') "
        "AND data ? 'engineer_id'",
        [ticket_id],
    ).fetchall()
    return {int(r[0]) for r in rows if r[0] is not None}


def dispatch_ticket(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    now: datetime,
    config: TicketConfig,
    exclude: Collection[int] = (),
    note: str = "",
    kind: str = "dispatched",
    engineer_id: int | None = None,
) -> Ticket:
    """Dispatch a ticket (again), record why, tell the engineer, arm the timer."""
    if engineer_id is not None:
        row = conn.execute(
            "SELECT name, status FROM engineers WHERE id = %s", [engineer_id]
        ).fetchone()
        if row is None:
            raise NotFound(f"engineer {engineer_id} does not exist")
        if row[1] != "active":
            raise Conflict(
                f"engineer {row[0]} (#{engineer_id}) is {row[1]}; "
                "choose an active engineer"
            )
        rule, name = "manual", str(row[0])
        reason = f"assigned by {actor} to {name} (#{engineer_id})"
        considered: list[dict[str, Any]] = []
    else:
        decision = choose_engineer(
            conn,
            school_id=ticket.school_id,
            skill=_skill_for(conn, ticket),
            now=now,
            exclude=set(exclude) | passed_over(conn, ticket.id),
        )
        engineer_id, rule, reason = (
            decision.engineer_id,
            decision.rule,
            decision.reason,
        )
        considered = decision.considered
    if note:
        reason = f"{note}; {reason}"
    if ticket.dispatch_rule is not None:
        cancel_timers(conn, ticket.id, now, ["accept_timeout", "redispatch"])

    if engineer_id is None:
        updated = update_ticket(
            conn,
            ticket.id,
            {
                "status": "reported",
                "engineer_id": None,
                "dispatch_rule": "none",
                "dispatch_reason": reason,
            },
            now,
        )
        event_id = add_event(
            conn,
            ticket.id,
            at=now,
            actor=actor,
            kind="dispatch_failed",
            from_status=ticket.status,
            to_status="reported" if ticket.status != "reported" else None,
            note=reason,
            data={"considered": considered},
        )
        notices.notify_supervisors(
            conn,
            updated,
            event_id=event_id,
            event="dispatch_failed",
            note=reason,
            now=now,
            config=config,
        )
        set_timer(conn, ticket.id, "redispatch", now + config.accept_timeout, now)
        log.warning("ticket %d could not be dispatched: %s", ticket.id, reason)
        return updated

    updated = update_ticket(
        conn,
        ticket.id,
        {
            "status": "dispatched",
            "engineer_id": engineer_id,
            "dispatch_rule": rule,
            "dispatch_reason": reason,
            "dispatched_at": now,
        },
        now,
    )
    event_id = add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind=kind,
        from_status=ticket.status,
        to_status="dispatched",
        note=reason,
        data={"engineer_id": engineer_id, "rule": rule, "considered": considered},
    )
    notices.notify_engineer(
        conn, updated, event_id=event_id, event=kind, now=now, config=config
    )
    set_timer(
        conn,
        ticket.id,
        "accept_timeout",
        now + config.accept_timeout,
        now,
        data={"engineer_id": engineer_id},
    )
    return updated


# Lifecycle -----------------------------------------------------------------


def get_ticket(conn: Conn, ticket_id: int) -> Ticket:
    """One ticket by id; NotFound if there is none."""
    return load_ticket(conn, ticket_id)


def ticket_events(conn: Conn, ticket_id: int) -> list[TicketEvent]:
    """A ticket's event log, oldest first."""
    load_ticket(conn, ticket_id)
    return list_events(conn, ticket_id)


def transition(  # noqa: PLR0917 - the positional form is the published interface
    conn: Conn,
    ticket_id: int,
    action: str,
    actor: str,
    note: str = "",
    now: datetime | None = None,
    *,
    config: TicketConfig = DEFAULT_CONFIG,
    **data: Any,
) -> Ticket:
    """Apply one action to a ticket and return it as it now is.

    Actions and their data:

    - ``accept`` (engineer_id: who accepts, defaults to the dispatched engineer)
    - ``schedule`` (visit_at: aware datetime of the booked visit; the resolution
      clock pauses for the appointment until then)
    - ``resolve`` (resolution_code, parts: list, note)
    - ``close``, ``cancel`` (note says why), ``reopen``
    - ``hand_back`` (note: the reason; the ticket is dispatched to someone else)
    - ``reassign`` (engineer_id, or none to pick the next engineer; note: reason)
    - ``change_priority`` (priority)
    - ``merge`` (into_id: the ticket this one duplicates)
    - ``pause`` (reason: appointment, parts or school_closed; until: optional)
    - ``resume``, ``note``, ``self_recover`` (for the fault rules)

    Raises Conflict (HTTP 409) when the action is not allowed in the ticket's
    state, listing the allowed ones; InvalidInput when data is missing.
    """
    if now is None:
        raise InvalidInput("now is required: pass the clock's time", field="now")
    note = _check_note(note)
    ticket = load_ticket(conn, ticket_id, lock=True)
    _check_allowed(ticket, action)
    handler = _HANDLERS[action]
    updated = handler(
        conn, ticket, actor=actor, note=note, now=now, config=config, data=data
    )
    return refresh_sla(conn, updated, now, calendars=config.calendars)


def _move(
    conn: Conn,
    ticket: Ticket,
    to_status: str,
    *,
    actor: str,
    note: str,
    now: datetime,
    kind: str,
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[Ticket, int]:
    values = dict(changes or {})
    values["status"] = to_status
    updated = update_ticket(conn, ticket.id, values, now)
    event_id = add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind=kind,
        from_status=ticket.status,
        to_status=to_status,
        note=note,
        data=data,
    )
    return updated, event_id


def _end_pauses(conn: Conn, ticket_id: int, now: datetime) -> bool:
    row = conn.execute(
        "UPDATE ticket_pauses SET ended_at = GREATEST(started_at, LEAST(%s, "
        "COALESCE(ends_at, %s))) WHERE ticket_id = %s AND ended_at IS NULL "
        "RETURNING id",
        [now, now, ticket_id],
    ).fetchone()
    return row is not None


def _accept(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    engineer_id = data.get("engineer_id") or ticket.engineer_id
    if engineer_id is None:
        raise InvalidInput(
            f"ticket {ticket.id} has no engineer yet; say who accepts it (engineer_id)",
            field="engineer_id",
        )
    changes: dict[str, Any] = {"engineer_id": int(engineer_id)}
    if ticket.accepted_at is None:
        changes["accepted_at"] = now
    cancel_timers(conn, ticket.id, now, ["accept_timeout", "redispatch"])
    updated, event_id = _move(
        conn,
        ticket,
        "accepted",
        actor=actor,
        note=note,
        now=now,
        kind="accepted",
        changes=changes,
        data={"engineer_id": int(engineer_id)},
    )
    _tell_reporters(conn, updated, event_id, event="accepted", now=now, config=config)
    return updated


def _schedule(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    visit_at = data.get("visit_at")
    if not isinstance(visit_at, datetime) or visit_at.tzinfo is None:
        raise InvalidInput(
            "visit_at must be a date and time with a time zone, "
            "e.g. 2026-03-02T14:30:00+08:00",
            field="visit_at",
        )
    _end_pauses(conn, ticket.id, now)
    if visit_at > now:
        conn.execute(
            "INSERT INTO ticket_pauses (ticket_id, reason, started_at, ends_at, actor, "
            "note) VALUES (%s, 'appointment', %s, %s, %s, %s)",
            [ticket.id, now, visit_at, actor, note],
        )
    updated, event_id = _move(
        conn,
        ticket,
        "scheduled",
        actor=actor,
        note=note,
        now=now,
        kind="scheduled",
        changes={"visit_at": visit_at},
        data={"visit_at": visit_at.isoformat()},
    )
    _tell_reporters(conn, updated, event_id, event="scheduled", now=now, config=config)
    return updated


def _resolve(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    code = str(data.get("resolution_code") or "").strip()
    if not code or len(code) > 64:
        raise InvalidInput(
            "resolution_code is required (1-64 characters), e.g. replaced_lamp",
            field="resolution_code",
        )
    parts = data.get("parts") or []
    if not isinstance(parts, list):
        raise InvalidInput("parts must be a list of the parts used", field="parts")
    _end_pauses(conn, ticket.id, now)
    updated, event_id = _move(
        conn,
        ticket,
        "resolved",
        actor=actor,
        note=note,
        now=now,
        kind="resolved",
        changes={
            "resolution_code": code,
            "resolution_note": note,
            "parts": parts,
            "resolved_at": now,
            "verified": None,
        },
        data={"resolution_code": code, "parts": parts},
    )
    _after_resolution(conn, updated, now, config)
    _tell_reporters(
        conn, updated, event_id, event="resolved", now=now, config=config, rate=True
    )
    _settle_followers(conn, updated, "resolved", now, config)
    return updated


def _after_resolution(
    conn: Conn, ticket: Ticket, now: datetime, config: TicketConfig
) -> None:
    cancel_timers(conn, ticket.id, now, ["accept_timeout", "redispatch"])
    set_timer(conn, ticket.id, "auto_close", now + config.rating_window, now)
    if ticket.device_id is not None:
        set_timer(
            conn,
            ticket.id,
            "verify",
            now + config.verify_after,
            now,
            data={"resolved_at": now.isoformat()},
        )


def _close(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    cancel_timers(conn, ticket.id, now, ["auto_close"])
    updated, _ = _move(
        conn,
        ticket,
        "closed",
        actor=actor,
        note=note,
        now=now,
        kind="closed",
        changes={"closed_at": now},
        data={"reason": data.get("reason", "closed")},
    )
    _settle_followers(conn, updated, "closed", now, config)
    return updated


def _cancel(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    if not note.strip():
        raise InvalidInput("say why the ticket is cancelled (note)", field="note")
    _end_pauses(conn, ticket.id, now)
    cancel_timers(conn, ticket.id, now)
    updated, _ = _move(
        conn,
        ticket,
        "cancelled",
        actor=actor,
        note=note,
        now=now,
        kind="cancelled",
        changes={"closed_at": now},
    )
    _settle_followers(conn, updated, "cancelled", now, config)
    return updated


def _reopen(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    cancel_timers(conn, ticket.id, now, ["auto_close", "verify"])
    conn.execute(
        "UPDATE rating_tokens SET expires_at = %s WHERE ticket_id = %s "
        "AND used_at IS NULL AND expires_at > %s",
        [now, ticket.id, now],
    )
    previous = ticket.engineer_id
    reopened, _ = _move(
        conn,
        ticket,
        "reported",
        actor=actor,
        note=note,
        now=now,
        kind="reopened",
        changes={
            "reopen_count": ticket.reopen_count + 1,
            "closed_at": None,
            "verified": None,
            "verified_at": None,
            "self_recovered": False,
        },
        data={"reason": data.get("reason", "reopened"), "from": ticket.status},
    )
    available = (
        previous is not None
        and conn.execute(
            "SELECT 1 FROM engineers WHERE id = %s AND status = 'active'", [previous]
        ).fetchone()
    )
    return dispatch_ticket(
        conn,
        reopened,
        actor=actor,
        now=now,
        config=config,
        engineer_id=previous if available else None,
        note="reopened: back to the engineer who resolved it"
        if available
        else "reopened",
    )


def _hand_back(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    if not note.strip():
        raise InvalidInput("say why the ticket is handed back (note)", field="note")
    _end_pauses(conn, ticket.id, now)
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="handed_back",
        note=note,
        data={"engineer_id": ticket.engineer_id},
    )
    return dispatch_ticket(
        conn,
        ticket,
        actor=actor,
        now=now,
        config=config,
        kind="reassigned",
        note=f"handed back by {actor}: {note}",
    )


def _reassign(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    if not note.strip():
        raise InvalidInput("say why the ticket is reassigned (note)", field="note")
    engineer_id = data.get("engineer_id")
    if engineer_id is not None and int(engineer_id) == ticket.engineer_id:
        raise Conflict(
            f"ticket {ticket.id} is already with engineer {engineer_id}; "
            "choose someone else"
        )
    _end_pauses(conn, ticket.id, now)
    exclude = [ticket.engineer_id] if ticket.engineer_id is not None else []
    return dispatch_ticket(
        conn,
        ticket,
        actor=actor,
        now=now,
        config=config,
        kind="reassigned",
        note=f"reassigned: {note}",
        exclude=exclude,
        engineer_id=int(engineer_id) if engineer_id is not None else None,
    )


def _change_priority(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    priority = data.get("priority")
    if priority not in PRIORITIES:
        raise InvalidInput(
            f"priority must be one of {', '.join(PRIORITIES)}", field="priority"
        )
    updated = update_ticket(conn, ticket.id, {"priority": priority}, now)
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="priority_changed",
        note=note,
        data={"from": ticket.priority, "to": priority},
    )
    return updated


def _merge(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    into_id = data.get("into_id")
    if into_id is None:
        raise InvalidInput("into_id names the ticket to merge into", field="into_id")
    into_id = int(into_id)
    if into_id == ticket.id:
        raise Conflict(f"ticket {ticket.id} cannot be merged into itself")
    target = load_ticket(conn, into_id, lock=True)
    if target.merged_into is not None or target.status == "cancelled":
        raise Conflict(
            f"ticket {into_id} is {target.status}"
            + (f" and merged into {target.merged_into}" if target.merged_into else "")
            + "; merge into the ticket that stays"
        )
    _end_pauses(conn, ticket.id, now)
    cancel_timers(conn, ticket.id, now)
    changes: dict[str, Any] = {"merged_into": into_id, "closed_at": now}
    if target.status in ("resolved", "closed"):
        changes |= {
            "resolution_code": target.resolution_code,
            "resolution_note": target.resolution_note,
            "resolved_at": target.resolved_at,
        }
    else:
        changes["resolution_code"] = "duplicate"
    updated, _ = _move(
        conn,
        ticket,
        "closed",
        actor=actor,
        note=note,
        now=now,
        kind="merged",
        changes=changes,
        data={"into_id": into_id},
    )
    update_ticket(
        conn,
        target.id,
        {"me_too_count": target.me_too_count + 1 + ticket.me_too_count},
        now,
    )
    add_event(
        conn,
        target.id,
        at=now,
        actor=actor,
        kind="merge_received",
        note=note,
        data={"from_id": ticket.id},
    )
    return updated


def _pause(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    reason = data.get("reason")
    if reason not in PAUSE_REASONS:
        raise InvalidInput(
            f"pause reason must be one of {', '.join(PAUSE_REASONS)}", field="reason"
        )
    until = data.get("until")
    if until is not None and (not isinstance(until, datetime) or until <= now):
        raise InvalidInput(
            "until must be a future date and time with a time zone", field="until"
        )
    _end_pauses(conn, ticket.id, now)
    conn.execute(
        "INSERT INTO ticket_pauses "
        "(ticket_id, reason, started_at, ends_at, actor, note) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        [ticket.id, reason, now, until, actor, note],
    )
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=actor,
        kind="paused",
        note=note,
        data={"reason": reason, "until": until.isoformat() if until else None},
    )
    return update_ticket(conn, ticket.id, {}, now)


def _resume(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    if not _end_pauses(conn, ticket.id, now):
        raise Conflict(f"ticket {ticket.id} is not paused; nothing to resume")
    add_event(conn, ticket.id, at=now, actor=actor, kind="resumed", note=note)
    return update_ticket(conn, ticket.id, {}, now)


def _note(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    if not note.strip():
        raise InvalidInput("a note needs some text", field="note")
    add_event(conn, ticket.id, at=now, actor=actor, kind="note", note=note)
    return update_ticket(conn, ticket.id, {}, now)


def _self_recover(
    conn: Conn,
    ticket: Ticket,
    *,
    actor: str,
    note: str,
    now: datetime,
    config: TicketConfig,
    data: dict[str, Any],
) -> Ticket:
    cancel_timers(conn, ticket.id, now)
    updated, _ = _move(
        conn,
        ticket,
        "closed",
        actor=actor,
        note=note or "the fault cleared before an engineer accepted the ticket",
        now=now,
        kind="self_recovered",
        changes={
            "closed_at": now,
            "self_recovered": True,
            "resolution_code": "self_recovered",
        },
    )
    _settle_followers(conn, updated, "closed", now, config)
    return updated


_HANDLERS = {
    "accept": _accept,
    "schedule": _schedule,
    "resolve": _resolve,
    "close": _close,
    "cancel": _cancel,
    "reopen": _reopen,
    "hand_back": _hand_back,
    "reassign": _reassign,
    "change_priority": _change_priority,
    "merge": _merge,
    "pause": _pause,
    "resume": _resume,
    "note": _note,
    "self_recover": _self_recover,
}


def _tell_reporters(
    conn: Conn,
    ticket: Ticket,
    event_id: int,
    *,
    event: str,
    now: datetime,
    config: TicketConfig,
    rate: bool = False,
) -> None:
    """Tell the reporter of this ticket and of the duplicates merged into it.

    With ``rate`` each reporter also gets a single-use rating link.
    """
    merged = find_tickets(conn, sql.SQL("merged_into = %s"), [ticket.id])
    for each in [ticket, *merged]:
        if not each.reporter_phone:
            continue
        rating_url = None
        if rate:
            token = _new_rating_token(conn, ticket.id, now, config.rating_window)
            rating_url = rating_link(config, token)
        notices.notify_reporter(
            conn,
            each,
            event_id=event_id,
            event=event,
            now=now,
            config=config,
            rating_url=rating_url,
        )


def _settle_followers(
    conn: Conn, ticket: Ticket, outcome: str, now: datetime, config: TicketConfig
) -> None:
    """Give the tickets under an incident, and merged duplicates, its outcome."""
    followers = find_tickets(
        conn,
        sql.SQL("(parent_id = %s AND ticket_is_open(status)) OR merged_into = %s"),
        [ticket.id, ticket.id],
    )
    for follower in followers:
        if follower.merged_into == ticket.id:
            if outcome in ("resolved", "closed"):
                update_ticket(
                    conn,
                    follower.id,
                    {
                        "resolution_code": ticket.resolution_code,
                        "resolution_note": ticket.resolution_note,
                        "resolved_at": ticket.resolved_at,
                    },
                    now,
                )
            continue
        status = "cancelled" if outcome == "cancelled" else "closed"
        cancel_timers(conn, follower.id, now)
        moved, _ = _move(
            conn,
            follower,
            status,
            actor=SYSTEM_ACTOR,
            note=f"settled with network incident #{ticket.id} ({outcome})",
            now=now,
            kind="settled_by_parent",
            changes={
                "closed_at": now,
                "resolution_code": ticket.resolution_code,
                "resolved_at": ticket.resolved_at,
            },
            data={"parent_id": ticket.id},
        )
        refresh_sla(conn, moved, now, calendars=config.calendars)


# Queues and views ------------------------------------------------------------


def queue_for_engineer(conn: Conn, engineer_id: int, now: datetime) -> list[Ticket]:
    """The engineer's open tickets, most urgent first.

    Urgency is the next SLA deadline: the response deadline while the ticket
    is not accepted, else the resolution deadline; breached tickets and higher
    priorities come first, tickets whose clock is paused last.
    """
    return find_tickets(
        conn,
        sql.SQL("engineer_id = %s AND status = ANY(%s)"),
        [engineer_id, ["dispatched", "accepted", "scheduled"]],
        tail="""ORDER BY
            (response_breached AND accepted_at IS NULL) OR resolution_breached DESC,
            CASE WHEN accepted_at IS NULL THEN response_due_at
                 ELSE resolution_due_at END ASC NULLS LAST,
            array_position(ARRAY['critical', 'high', 'normal', 'low'], priority),
            reported_at, id""",
    )


def search_tickets(
    conn: Conn,
    *,
    school_ids: Collection[int] | None = None,
    status: str | None = None,
    colour: str | None = None,
    engineer_id: int | None = None,
    school_id: int | None = None,
    device_id: int | None = None,
    priority: str | None = None,
    open_only: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[Ticket]:
    """Tickets matching the filters, newest first; ``school_ids`` limits the scope."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(STATUSES)}", field="status"
        )
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500", field="limit")
    parts: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    for column, value in (
        ("status", status),
        ("engineer_id", engineer_id),
        ("school_id", school_id),
        ("device_id", device_id),
        ("priority", priority),
    ):
        if value is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if colour is not None:
        parts.append(sql.SQL("ticket_colour(status) = %s"))
        params.append(colour)
    if open_only:
        parts.append(sql.SQL("ticket_is_open(status)"))
    if school_ids is not None:
        parts.append(sql.SQL("school_id = ANY(%s)"))
        params.append(list(school_ids))
    params += [limit, offset]
    return find_tickets(
        conn,
        sql.SQL(" AND ").join(parts),
        params,
        tail="ORDER BY reported_at DESC, id DESC LIMIT %s OFFSET %s",
    )


@dataclass(frozen=True)
class StatusView:
    """What the public status page shows: no personal data, no internal notes."""

    ticket_id: int
    title: str
    status: str
    colour: str
    school_name: str
    room_name: str
    device_label: str
    engineer_name: str
    visit_at: datetime | None
    reported_at: datetime
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    merged_into: int | None
    rated: bool
    history: list[tuple[datetime, str, str | None]]
    """(time, event kind, new status) of the status changes, oldest first."""


def ticket_status_view(conn: Conn, ticket_id: int) -> StatusView:
    """The public view of a ticket; a merged duplicate shows the ticket it joined."""
    ticket = load_ticket(conn, ticket_id)
    shown = ticket
    if ticket.merged_into is not None:
        shown = load_ticket(conn, ticket.merged_into)
    row = conn.execute(
        """
        SELECT s.name, COALESCE(r.name, ''),
               COALESCE(NULLIF(d.name, ''), c.name_zh, ''), COALESCE(e.name, ''),
               EXISTS (SELECT 1 FROM ticket_ratings tr WHERE tr.ticket_id = %(orig)s)
        FROM schools s
        LEFT JOIN rooms r ON r.id = %(room)s
        LEFT JOIN devices d ON d.id = %(device)s
        LEFT JOIN device_categories c ON c.code = d.category
        LEFT JOIN engineers e ON e.id = %(engineer)s
        WHERE s.id = %(school)s
        """,
        {
            "school": shown.school_id,
            "room": shown.room_id,
            "device": shown.device_id,
            "engineer": shown.engineer_id,
            "orig": ticket.id,
        },
    ).fetchone()
    assert row is not None
    history: list[tuple[datetime, str, str | None]] = [
        (e.at, e.kind, e.to_status)
        for e in list_events(conn, shown.id)
        if e.to_status is not None
    ]
    return StatusView(
        ticket_id=ticket.id,
        title=shown.title,
        status=shown.status,
        colour=colour_of(shown.status),
        school_name=str(row[0]),
        room_name=str(row[1]),
        device_label=str(row[2]),
        engineer_name=str(row[3]),
        visit_at=shown.visit_at,
        reported_at=ticket.reported_at,
        accepted_at=shown.accepted_at,
        resolved_at=shown.resolved_at,
        closed_at=shown.closed_at,
        merged_into=ticket.merged_into,
        rated=bool(row[4]),
        history=history,
    )


def ticket_by_status_token(conn: Conn, token: str) -> Ticket:
    """The ticket behind a status page link; NotFound for an unknown token."""
    found = find_tickets(conn, sql.SQL("status_token = %s"), [token])
    if not found:
        raise NotFound("no ticket has this status link; check the address")
    return found[0]


# Rating ----------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def issue_rating_token(
    conn: Conn,
    ticket_id: int,
    now: datetime,
    *,
    valid_for: timedelta = DEFAULT_CONFIG.rating_window,
) -> str:
    """A single-use rating token for a resolved ticket; only its digest is stored."""
    ticket = load_ticket(conn, ticket_id)
    if ticket.status != "resolved":
        raise Conflict(
            f"ticket {ticket_id} is {ticket.status}; only a resolved ticket is rated"
        )
    return _new_rating_token(conn, ticket_id, now, valid_for)


def _new_rating_token(
    conn: Conn, ticket_id: int, now: datetime, valid_for: timedelta
) -> str:
    token = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO rating_tokens (digest, ticket_id, created_at, expires_at) "
        "VALUES (%s, %s, %s, %s)",
        [_digest(token), ticket_id, now, now + valid_for],
    )
    return token


def rating_link(config: TicketConfig, token: str) -> str:
    return f"{config.public_url}{RATING_PATH}{token}"


def rating_ticket(conn: Conn, token: str, now: datetime) -> Ticket:
    """The ticket a still-usable rating token belongs to (for showing the form)."""
    row = conn.execute(
        "SELECT ticket_id FROM rating_tokens WHERE digest = %s AND used_at IS NULL "
        "AND expires_at > %s",
        [_digest(token), now],
    ).fetchone()
    if row is None:
        raise NotFound("this rating link has been used or has expired")
    return load_ticket(conn, int(row[0]))


def rate(
    conn: Conn,
    token: str,
    stars: int,
    comment: str = "",
    *,
    now: datetime,
    config: TicketConfig = DEFAULT_CONFIG,
) -> Ticket:
    """Record the reporter's 1-5 stars and comment; spends the token, closes it."""
    if not isinstance(stars, int) or not 1 <= stars <= 5:
        raise InvalidInput("stars must be a whole number from 1 to 5", field="stars")
    if len(comment) > 2000:
        raise InvalidInput(
            f"comment has {len(comment)} characters; the limit is 2000", field="comment"
        )
    row = conn.execute(
        "UPDATE rating_tokens SET used_at = %s WHERE digest = %s AND used_at IS NULL "
        "AND expires_at > %s RETURNING ticket_id",
        [now, _digest(token), now],
    ).fetchone()
    if row is None:
        raise NotFound("this rating link has been used or has expired")
    ticket_id = int(row[0])
    conn.execute(
        "INSERT INTO ticket_ratings (ticket_id, stars, comment, rated_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (ticket_id) DO UPDATE SET "
        "stars = EXCLUDED.stars, comment = EXCLUDED.comment, "
        "rated_at = EXCLUDED.rated_at",
        [ticket_id, stars, comment, now],
    )
    add_event(
        conn,
        ticket_id,
        at=now,
        actor="reporter",
        kind="rated",
        note=comment,
        data={"stars": stars},
    )
    ticket = load_ticket(conn, ticket_id, lock=True)
    if ticket.status == "resolved":
        return transition(
            conn,
            ticket_id,
            "close",
            "reporter",
            f"rated {stars} of 5",
            now,
            config=config,
            reason="rated",
        )
    return ticket
