"""Firing the escalation timers kept in ``ticket_timers``.

A worker claims due timers with ``FOR UPDATE SKIP LOCKED``, handles each in
the claiming transaction and marks it fired there, so two workers never fire
one timer twice and a crash leaves the timer to be fired again. Each handler
re-checks the ticket before acting: a timer whose reason has passed (the
ticket was accepted, the clock paused, the policy changed) does nothing, and
the SLA timers are re-armed from fresh figures.

- ``accept_timeout``: still not accepted by the dispatched engineer, so the
  ticket goes to the next engineer (the backup) and the supervisors are told.
- ``redispatch``: nobody was available; try the dispatch again.
- ``response_warn`` / ``resolution_warn``: the clock used its warning share
  of the target (80 % by default); the supervisors are told.
- ``response_breach`` / ``resolution_breach``: the target passed.
- ``auto_close``: a resolved ticket nobody rated closes.
- ``verify``: a fix the fault did not come back after is marked verified;
  if the agent reported the fault again since, the ticket reopens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from ..db import Conn
from ..errors import EdufleetError
from . import notices
from .model import DEFAULT_CONFIG, SYSTEM_ACTOR, Ticket, TicketConfig
from .service import dispatch_ticket, find_open_ticket, transition
from .sla import figures_for, refresh_sla
from .store import add_event, load_ticket, update_ticket

log = logging.getLogger("edufleet.collector.tickets.timers")


@dataclass(frozen=True)
class Timer:
    id: int
    ticket_id: int
    kind: str
    due_at: datetime
    data: dict[str, Any]


@dataclass
class FiringReport:
    fired: int = 0
    acted: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def claim_due(conn: Conn, *, now: datetime, limit: int) -> list[Timer]:
    """Lock up to ``limit`` due timers that no other worker holds."""
    rows = conn.execute(
        """
        SELECT id, ticket_id, kind, due_at, data FROM ticket_timers
        WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= %s
        ORDER BY due_at, id
        LIMIT %s
        FOR UPDATE SKIP LOCKED
        """,
        [now, limit],
    ).fetchall()
    return [Timer(int(r[0]), int(r[1]), str(r[2]), r[3], dict(r[4])) for r in rows]


def fire_due_timers(
    conn: Conn,
    *,
    now: datetime,
    owner: str,
    config: TicketConfig = DEFAULT_CONFIG,
    limit: int = 100,
) -> FiringReport:
    """Fire the due timers in one transaction; returns what was done."""
    report = FiringReport()
    with conn.transaction():
        for timer in claim_due(conn, now=now, limit=limit):
            conn.execute(
                "UPDATE ticket_timers SET fired_at = %s, fired_by = %s WHERE id = %s",
                [now, owner, timer.id],
            )
            try:
                with conn.transaction():
                    acted = fire(conn, timer, now=now, config=config)
            except (EdufleetError, psycopg.Error) as exc:
                # The timer stays fired: a handler that fails now would fail
                # on every pass. Its ticket keeps its state for a human.
                log.error(
                    "timer %d (%s) of ticket %d failed and was dropped: %s",
                    timer.id,
                    timer.kind,
                    timer.ticket_id,
                    exc,
                )
                acted = False
            report.fired += 1
            report.acted += int(acted)
            report.kinds[timer.kind] = report.kinds.get(timer.kind, 0) + 1
    return report


def fire(conn: Conn, timer: Timer, *, now: datetime, config: TicketConfig) -> bool:
    """Handle one timer; True when it changed the ticket or notified someone."""
    ticket = load_ticket(conn, timer.ticket_id, lock=True)
    handler = _HANDLERS[timer.kind]
    return handler(conn, ticket, timer, now, config)


def _accept_timeout(
    conn: Conn, ticket: Ticket, timer: Timer, now: datetime, config: TicketConfig
) -> bool:
    waited_for = timer.data.get("engineer_id")
    if ticket.status != "dispatched" or ticket.engineer_id != waited_for:
        return False
    minutes = int(config.accept_timeout.total_seconds() // 60)
    note = f"not accepted within {minutes} min by engineer #{ticket.engineer_id}"
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=SYSTEM_ACTOR,
        kind="accept_timeout",
        note=note,
        data={"engineer_id": ticket.engineer_id},
    )
    updated = dispatch_ticket(
        conn,
        ticket,
        actor=SYSTEM_ACTOR,
        now=now,
        config=config,
        kind="reassigned",
        note=f"escalated: {note}",
    )
    event_id = add_event(
        conn,
        ticket.id,
        at=now,
        actor=SYSTEM_ACTOR,
        kind="escalated",
        note=f"{note}; {updated.dispatch_reason}",
        data={"from_engineer_id": waited_for, "to_engineer_id": updated.engineer_id},
    )
    notices.notify_supervisors(
        conn,
        updated,
        event_id=event_id,
        event="accept_timeout",
        note=f"{note}; {updated.dispatch_reason}",
        now=now,
        config=config,
    )
    refresh_sla(conn, updated, now, calendars=config.calendars)
    return True


def _redispatch(
    conn: Conn, ticket: Ticket, timer: Timer, now: datetime, config: TicketConfig
) -> bool:
    if ticket.status != "reported" or ticket.engineer_id is not None:
        return False
    if ticket.parent_id is not None or ticket.merged_into is not None:
        return False
    # A retry considers everyone again, also engineers who timed out earlier.
    updated = dispatch_ticket(
        conn,
        ticket,
        actor=SYSTEM_ACTOR,
        now=now,
        config=config,
        note="retry",
        fresh=True,
    )
    refresh_sla(conn, updated, now, calendars=config.calendars)
    return updated.status == "dispatched"


def _sla(
    conn: Conn, ticket: Ticket, timer: Timer, now: datetime, config: TicketConfig
) -> bool:
    clock_name, stage = timer.kind.split("_")
    figures = figures_for(conn, ticket, now, calendars=config.calendars)
    clock = figures.response if clock_name == "response" else figures.resolution
    due = clock.warn_at if stage == "warn" else clock.due_at
    if not clock.running or due is None or due > now:
        # The reason passed or moved (accepted, paused, new policy): re-arm only.
        conn.execute(
            "UPDATE ticket_timers SET fired_at = NULL, fired_by = NULL WHERE id = %s",
            [timer.id],
        )
        refresh_sla(conn, ticket, now, calendars=config.calendars)
        return False
    percent = round(100 * clock.used_ratio)
    target_hours = clock.target_seconds / 3600
    measure = "service hours" if clock.measure == "service" else "hours"
    if stage == "warn":
        kind = "sla_warning"
        note = (
            f"{clock_name} SLA at {percent}% of {target_hours:g} {measure}; "
            f"due {clock.due_at.isoformat() if clock.due_at else 'unknown'}"
        )
    else:
        kind = "sla_breached"
        note = f"{clock_name} SLA of {target_hours:g} {measure} breached"
    event_id = add_event(
        conn,
        ticket.id,
        at=now,
        actor=SYSTEM_ACTOR,
        kind=kind,
        note=note,
        data={"clock": clock_name, "used_ratio": clock.used_ratio},
    )
    notices.notify_supervisors(
        conn, ticket, event_id=event_id, event=kind, note=note, now=now, config=config
    )
    refresh_sla(conn, ticket, now, calendars=config.calendars)
    return True


def _auto_close(
    conn: Conn, ticket: Ticket, timer: Timer, now: datetime, config: TicketConfig
) -> bool:
    if ticket.status != "resolved":
        return False
    days = config.rating_window.total_seconds() / 86400
    transition(
        conn,
        ticket.id,
        "close",
        SYSTEM_ACTOR,
        f"closed without a rating after {days:g} days",
        now,
        config=config,
        reason="unrated",
    )
    return True


def _verify(
    conn: Conn, ticket: Ticket, timer: Timer, now: datetime, config: TicketConfig
) -> bool:
    if ticket.status not in ("resolved", "closed") or ticket.resolved_at is None:
        return False
    again = None
    if ticket.fault_code is not None and ticket.device_id is not None:
        again = conn.execute(
            "SELECT ts FROM fault_events WHERE subject_device_id = %s AND code = %s "
            "AND action = 'opened' AND ts > %s ORDER BY ts LIMIT 1",
            [ticket.device_id, ticket.fault_code, ticket.resolved_at],
        ).fetchone()
    if again is not None and ticket.device_id is not None:
        newer = find_open_ticket(conn, ticket.device_id, ticket.fault_code)
        if newer is not None:
            update_ticket(conn, ticket.id, {"verified": False, "verified_at": now}, now)
            add_event(
                conn,
                ticket.id,
                at=now,
                actor=SYSTEM_ACTOR,
                kind="verification_failed",
                note=f"fault {ticket.fault_code} came back as ticket #{newer.id}",
                data={"ticket_id": newer.id},
            )
            return True
        transition(
            conn,
            ticket.id,
            "reopen",
            SYSTEM_ACTOR,
            f"fault {ticket.fault_code} was reported again at {again[0].isoformat()}",
            now,
            config=config,
            reason="verification_failed",
        )
        return True
    update_ticket(conn, ticket.id, {"verified": True, "verified_at": now}, now)
    days = config.verify_after.total_seconds() / 86400
    add_event(
        conn,
        ticket.id,
        at=now,
        actor=SYSTEM_ACTOR,
        kind="verified",
        note=f"no recurrence within {days:g} days of the fix",
    )
    return True


_HANDLERS = {
    "accept_timeout": _accept_timeout,
    "redispatch": _redispatch,
    "response_warn": _sla,
    "response_breach": _sla,
    "resolution_warn": _sla,
    "resolution_breach": _sla,
    "auto_close": _auto_close,
    "verify": _verify,
}
