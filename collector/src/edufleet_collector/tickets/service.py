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

import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from ..db import Conn
from ..errors import Conflict, InvalidInput, NotFound
from .actions import (
    ACTIONS,
    HANDLERS,
    MAX_NOTE,
    RATING_PATH,
    TRANSITIONS,
    Step,
    allowed_actions,
    check_allowed,
    check_note,
    new_rating_token,
    rating_digest,
    rating_link,
)
from .assign import dispatch_ticket, passed_over
from .model import (
    DEFAULT_CONFIG,
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
from .sla import arm_sla_timers, initial_figures, refresh_sla, sla_columns
from .store import (
    add_event,
    find_tickets,
    insert_ticket,
    list_events,
    load_ticket,
    update_ticket,
)

log = logging.getLogger("edufleet.collector.tickets")

__all__ = [
    "ACTIONS",
    "RATING_PATH",
    "TRANSITIONS",
    "StatusView",
    "add_me_too",
    "allowed_actions",
    "create_incident",
    "create_ticket",
    "dispatch_ticket",
    "find_open_ticket",
    "get_ticket",
    "issue_rating_token",
    "open_ticket",
    "passed_over",
    "queue_for_engineer",
    "rate",
    "rating_link",
    "rating_ticket",
    "search_tickets",
    "ticket_by_status_token",
    "ticket_events",
    "ticket_status_view",
    "transition",
]


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

    chosen_priority = priority or default_priority(device, source)
    figures = initial_figures(
        conn,
        school_id=device.school_id,
        priority=chosen_priority,
        reported_at=now,
        calendars=config.calendars,
    )
    ticket = insert_ticket(
        conn,
        sla_columns(figures)
        | {
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
            "priority": chosen_priority,
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
            conn,
            ticket,
            actor=SYSTEM_ACTOR,
            now=now,
            config=config,
            skill=device.skill,
            fresh=True,
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
    arm_sla_timers(conn, ticket, figures, now, fresh=True)
    return CreateOutcome(ticket, created=True)


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
        note=check_note(description),
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
    note = check_note(note)
    ticket = load_ticket(conn, ticket_id, lock=True)
    check_allowed(ticket, action)
    handler = HANDLERS[action]
    updated = handler(Step(conn, ticket, actor, note, now, config, data))
    return refresh_sla(conn, updated, now, calendars=config.calendars)


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
    return new_rating_token(conn, ticket_id, now, valid_for)


def rating_ticket(conn: Conn, token: str, now: datetime) -> Ticket:
    """The ticket a still-usable rating token belongs to (for showing the form)."""
    row = conn.execute(
        "SELECT ticket_id FROM rating_tokens WHERE digest = %s AND used_at IS NULL "
        "AND expires_at > %s",
        [rating_digest(token), now],
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
        [now, rating_digest(token), now],
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
