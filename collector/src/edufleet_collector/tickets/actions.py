"""The actions of the ticket lifecycle: which are allowed, and what each does.

Each action handler takes a :class:`Step` (the locked ticket, who acts, the
note, the time, the rules and the action's data) and returns the ticket as it
now is; ``service.transition`` checks the action is allowed, runs it and
refreshes the SLA figures. Every handler appends its events to the log.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from ..db import Conn
from ..errors import Conflict, InvalidInput
from . import notices
from .assign import dispatch_ticket
from .model import (
    OPEN_STATUSES,
    PAUSE_REASONS,
    PRIORITIES,
    STATUSES,
    SYSTEM_ACTOR,
    Ticket,
    TicketConfig,
)
from .sla import cancel_timers, refresh_sla, set_timer
from .store import add_event, find_tickets, load_ticket, update_ticket

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


def check_allowed(ticket: Ticket, action: str) -> None:
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


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise InvalidInput(
            f"note has {len(note)} characters; the limit is {MAX_NOTE}", field="note"
        )
    return note


@dataclass(frozen=True)
class Step:
    """One action on one ticket, as the handlers receive it."""

    conn: Conn
    ticket: Ticket
    actor: str
    note: str
    now: datetime
    config: TicketConfig
    data: dict[str, Any]


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


def _accept(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config, data = step.now, step.config, step.data
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


def _schedule(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config, data = step.now, step.config, step.data
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


def _resolve(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config, data = step.now, step.config, step.data
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


def _close(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config, data = step.now, step.config, step.data
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


def _cancel(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now, config = step.note, step.now, step.config
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


def _reopen(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config, data = step.now, step.config, step.data
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


def _hand_back(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config = step.now, step.config
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


def _reassign(step: Step) -> Ticket:
    conn, ticket, actor, note = step.conn, step.ticket, step.actor, step.note
    now, config, data = step.now, step.config, step.data
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


def _change_priority(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now, data = step.note, step.now, step.data
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


def _merge(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now, data = step.note, step.now, step.data
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


def _pause(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now, data = step.note, step.now, step.data
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


def _resume(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now = step.note, step.now
    if not _end_pauses(conn, ticket.id, now):
        raise Conflict(f"ticket {ticket.id} is not paused; nothing to resume")
    add_event(conn, ticket.id, at=now, actor=actor, kind="resumed", note=note)
    return update_ticket(conn, ticket.id, {}, now)


def _note(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now = step.note, step.now
    if not note.strip():
        raise InvalidInput("a note needs some text", field="note")
    add_event(conn, ticket.id, at=now, actor=actor, kind="note", note=note)
    return update_ticket(conn, ticket.id, {}, now)


def _self_recover(step: Step) -> Ticket:
    conn, ticket, actor = step.conn, step.ticket, step.actor
    note, now, config = step.note, step.now, step.config
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


HANDLERS: dict[str, Callable[[Step], Ticket]] = {
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
            token = new_rating_token(conn, ticket.id, now, config.rating_window)
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


def rating_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_rating_token(
    conn: Conn, ticket_id: int, now: datetime, valid_for: timedelta
) -> str:
    token = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO rating_tokens (digest, ticket_id, created_at, expires_at) "
        "VALUES (%s, %s, %s, %s)",
        [rating_digest(token), ticket_id, now, now + valid_for],
    )
    return token


def rating_link(config: TicketConfig, token: str) -> str:
    return f"{config.public_url}{RATING_PATH}{token}"
