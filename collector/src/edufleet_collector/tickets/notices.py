"""Who hears about a ticket change, and what they are told.

Engineers hear of tickets dispatched or reassigned to them, at their e-mail
address and in the engineers' channels of the school's region. Reporters hear
when their ticket is accepted, scheduled or resolved, through the reporters'
channel (an SMS gateway's webhook, say), with the link to the status page.
Supervisors (the district bureau) hear of escalations and SLA warnings in the
supervisors' channels. For each audience the channels of the nearest region
above the school that has any are used.

Every notification is queued in the outbox in the caller's transaction; its
idempotency key is derived from the ticket event that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..db import Conn
from ..notify.outbox import enqueue
from .model import Ticket, TicketConfig, colour_of

REPORTER_EVENTS = {
    "accepted": ("工程师已接单", "an engineer has taken your report"),
    "scheduled": ("已预约上门", "a visit is booked"),
    "resolved": ("维修完成，请评价", "the fault is fixed; please rate the service"),
}


@dataclass(frozen=True)
class Context:
    school_name: str
    region_code: str
    room_name: str
    device_label: str
    engineer_name: str
    engineer_email: str


def _context(conn: Conn, ticket: Ticket) -> Context:
    row = conn.execute(
        """
        SELECT s.name, s.region_code, COALESCE(r.name, ''),
               COALESCE(NULLIF(d.name, ''), d.asset_tag, ''), COALESCE(e.name, ''),
               COALESCE(e.email, '')
        FROM schools s
        LEFT JOIN rooms r ON r.id = %(room)s
        LEFT JOIN devices d ON d.id = %(device)s
        LEFT JOIN engineers e ON e.id = %(engineer)s
        WHERE s.id = %(school)s
        """,
        {
            "school": ticket.school_id,
            "room": ticket.room_id,
            "device": ticket.device_id,
            "engineer": ticket.engineer_id,
        },
    ).fetchone()
    assert row is not None
    return Context(*(str(v) for v in row))


def _channels(
    conn: Conn, region_code: str, audience: str
) -> list[tuple[int, str, str]]:
    """The enabled channels of the nearest region (or the catch-all) for an audience."""
    rows = conn.execute(
        """
        WITH found AS (
            SELECT c.id, c.kind, c.target, COALESCE(a.depth, 1000000) AS depth
            FROM notification_channels c
            LEFT JOIN region_ancestors(%(region)s) a ON a.code = c.region_code
            WHERE c.enabled AND c.audience = %(audience)s
              AND (c.region_code IS NULL OR a.code IS NOT NULL)
        )
        SELECT id, kind, target FROM found
        WHERE depth = (SELECT min(depth) FROM found)
        ORDER BY id
        """,
        {"region": region_code, "audience": audience},
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def status_link(config: TicketConfig, ticket: Ticket) -> str:
    return f"{config.public_url}/t/{ticket.status_token}"


def _payload(
    ticket: Ticket, ctx: Context, event: str, text: str, link: str | None
) -> dict[str, Any]:
    return {
        "event": event,
        "text": text,
        "ticket": {
            "id": ticket.id,
            "title": ticket.title,
            "status": ticket.status,
            "colour": colour_of(ticket.status),
            "priority": ticket.priority,
            "school": ctx.school_name,
            "room": ctx.room_name,
            "device": ctx.device_label,
            "engineer": ctx.engineer_name,
            "visit_at": ticket.visit_at.isoformat() if ticket.visit_at else None,
        },
        "link": link,
    }


def _where(ctx: Context) -> str:
    return " ".join(p for p in (ctx.school_name, ctx.room_name, ctx.device_label) if p)


def notify_engineer(
    conn: Conn,
    ticket: Ticket,
    *,
    event_id: int,
    event: str,
    now: datetime,
    config: TicketConfig,
) -> int:
    """Tell the ticket's engineer of a new or reassigned ticket; returns rows queued."""
    if ticket.engineer_id is None:
        return 0
    ctx = _context(conn, ticket)
    subject = f"【工单 #{ticket.id}】新派单 New ticket: {ticket.title}"
    body = (
        f"**{subject}**\n\n"
        f"- 地点 Where: {_where(ctx)}\n"
        f"- 优先级 Priority: {ticket.priority}\n"
        f"- 工程师 Engineer: {ctx.engineer_name}\n"
        f"- 派单原因 Why you: {ticket.dispatch_reason}\n"
    )
    payload = _payload(ticket, ctx, event, subject, None)
    queued = 0
    if config.email_engineers and ctx.engineer_email:
        queued += _fan_out(
            conn,
            ticket,
            [(None, "email", ctx.engineer_email)],
            recipient=ctx.engineer_name,
            note=_Note(event, event_id, subject, body, payload, now),
        )
    queued += _fan_out(
        conn,
        ticket,
        _channels(conn, ctx.region_code, "engineers"),
        recipient=ctx.engineer_name,
        note=_Note(event, event_id, subject, body, payload, now),
    )
    return queued


def notify_reporter(
    conn: Conn,
    ticket: Ticket,
    *,
    event_id: int,
    event: str,
    now: datetime,
    config: TicketConfig,
    rating_url: str | None = None,
) -> int:
    """Tell the reporter of progress, with the status page link, if reachable."""
    if event not in REPORTER_EVENTS or not ticket.reporter_phone:
        return 0
    ctx = _context(conn, ticket)
    zh, en = REPORTER_EVENTS[event]
    link = status_link(config, ticket)
    subject = f"【报修 #{ticket.id}】{zh} / {en}"
    when = ""
    if event == "scheduled" and ticket.visit_at is not None:
        when = f" {ticket.visit_at.isoformat()}"
    body = f"{subject}{when}: {ticket.title}, {_where(ctx)}. {link}"
    if rating_url:
        body += f" 评价 Rate: {rating_url}"
    payload = _payload(ticket, ctx, event, body, link)
    payload["phone"] = ticket.reporter_phone
    payload["rating_link"] = rating_url
    queued = 0
    queued += _fan_out(
        conn,
        ticket,
        _channels(conn, ctx.region_code, "reporters"),
        recipient=ticket.reporter_phone,
        note=_Note(event, event_id, subject, body, payload, now),
    )
    return queued


def notify_supervisors(
    conn: Conn,
    ticket: Ticket,
    *,
    event_id: int,
    event: str,
    note: str,
    now: datetime,
    config: TicketConfig,
) -> int:
    """Tell the district bureau of an escalation or an SLA warning."""
    ctx = _context(conn, ticket)
    subject = f"【工单 #{ticket.id} 升级 Escalation】{ticket.title}"
    body = (
        f"**{subject}**\n\n"
        f"- 地点 Where: {_where(ctx)}\n"
        f"- 状态 Status: {ticket.status} ({colour_of(ticket.status)})\n"
        f"- 工程师 Engineer: {ctx.engineer_name or '-'}\n"
        f"- 原因 Why: {note}\n"
    )
    payload = _payload(ticket, ctx, event, note, None)
    queued = 0
    queued += _fan_out(
        conn,
        ticket,
        _channels(conn, ctx.region_code, "supervisors"),
        recipient="supervisors",
        note=_Note(event, event_id, subject, body, payload, now),
    )
    return queued


@dataclass(frozen=True)
class _Note:
    """One message, before it is addressed to each channel."""

    event: str
    event_id: int
    subject: str
    body: str
    payload: dict[str, Any]
    now: datetime


def _fan_out(
    conn: Conn,
    ticket: Ticket,
    channels: Sequence[tuple[int | None, str, str]],
    *,
    recipient: str,
    note: _Note,
) -> int:
    """Queue the message once per (channel id, kind, target); returns rows queued."""
    queued = 0
    for channel_id, kind, target in channels:
        where = f"c{channel_id}" if channel_id is not None else f"to:{target}"
        row = enqueue(
            conn,
            ticket_id=ticket.id,
            event=note.event,
            channel=kind,
            channel_id=channel_id,
            target=target,
            recipient=recipient,
            subject=note.subject,
            body=note.body,
            payload=note.payload,
            idempotency_key=f"edufleet-t{ticket.id}-e{note.event_id}-{where}",
            now=note.now,
        )
        queued += int(row is not None)
    return queued
