"""Dispatching a ticket: choose the engineer, record why, tell them, arm the timer."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

from ..db import Conn
from ..errors import Conflict, NotFound
from . import notices
from .dispatch import choose_engineer
from .model import Ticket, TicketConfig
from .sla import cancel_timers, set_timer
from .store import add_event, update_ticket

log = logging.getLogger("edufleet.collector.tickets")


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
    skill: str | None = None,
    fresh: bool = False,
) -> Ticket:
    """Dispatch a ticket (again), record why, tell the engineer, arm the timer.

    ``fresh`` says the ticket was just created: nobody was passed over yet.
    ``skill`` saves looking up the device category's skill.
    """
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
        skipped = set(exclude)
        if not fresh:
            skipped |= passed_over(conn, ticket.id)
        decision = choose_engineer(
            conn,
            school_id=ticket.school_id,
            skill=skill or _skill_for(conn, ticket),
            now=now,
            exclude=set(exclude)
            if fresh
            else set(exclude) | passed_over(conn, ticket.id),
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
        if ticket.dispatch_rule != "none":
            # Supervisors hear of the first failure, not of every retry.
            notices.notify_supervisors(
                conn,
                updated,
                event_id=event_id,
                event="dispatch_failed",
                note=reason,
                now=now,
                config=config,
            )
            log.warning("ticket %d could not be dispatched: %s", ticket.id, reason)
        set_timer(conn, ticket.id, "redispatch", now + config.accept_timeout, now)
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
