"""The engineer's pages, made for a phone: the queue, accept, book, resolve.

A ticket page opens for the engineer it is assigned to, for the other
engineers of its school (who see the reporter's data masked) and for admins
whose scope holds the school; anyone else gets the same 404 as for a ticket
that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from ...accounts import Principal
from ...db import Conn
from ...db.conflicts import retry_on_conflict
from ...errors import Conflict, InvalidInput, NotFound
from ...photos import photo_path
from ...privacy import audit_personal_read, mask_name, mask_phone, may_see_personal_data
from ...tickets import service
from ...tickets.model import Ticket, TicketConfig
from ..csrf import CsrfDep
from ..deps import ConnDep, SettingsDep
from ..i18n import RESOLUTION_CODES, negotiate, translator
from .auth import EngineerDep, StaffDep, client_ip
from .render import LOCAL_ZONE, Pages

router = APIRouter(include_in_schema=False)


def actor_of(principal: Principal) -> str:
    return f"user:{principal.name}"


def visible_ticket(conn: Conn, principal: Principal, ticket_id: int) -> Ticket:
    """The ticket if the principal may see it; NotFound otherwise."""
    try:
        ticket = service.get_ticket(conn, ticket_id)
    except NotFound:
        raise NotFound(f"ticket {ticket_id} does not exist") from None
    mine = (
        principal.engineer_id is not None
        and ticket.engineer_id == principal.engineer_id
    )
    if not mine and not principal.allows_school(ticket.school_id):
        raise NotFound(f"ticket {ticket_id} does not exist")
    return ticket


def not_found(request: Request) -> HTMLResponse:
    pages: Pages = request.app.state.pages
    t = translator(negotiate(request))
    return pages.render(
        request,
        "message.html",
        {"title": t("error.title"), "body": "404"},
        status_code=404,
    )


@router.get("/e")
def queue(request: Request, principal: EngineerDep, conn: ConnDep) -> HTMLResponse:
    """The engineer's open tickets, most urgent first."""
    assert principal.engineer_id is not None
    now = datetime.now(UTC)
    tickets = service.queue_for_engineer(conn, principal.engineer_id, now)
    places = _places(conn, [t.id for t in tickets])
    pages: Pages = request.app.state.pages
    return pages.render(
        request,
        "staff/queue.html",
        {"tickets": tickets, "places": places, "now": now},
    )


def _places(conn: Conn, ticket_ids: list[int]) -> dict[int, str]:
    rows = conn.execute(
        """
        SELECT t.id, s.name || coalesce(' · ' || r.name, '')
        FROM tickets t JOIN schools s ON s.id = t.school_id
        LEFT JOIN rooms r ON r.id = t.room_id
        WHERE t.id = ANY(%s)
        """,
        [ticket_ids],
    ).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def _ticket_page(
    request: Request,
    conn: Conn,
    principal: Principal,
    ticket: Ticket,
    *,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    reveal = may_see_personal_data(
        principal, school_id=ticket.school_id, engineer_id=ticket.engineer_id
    )
    has_personal = bool(ticket.reporter_name or ticket.reporter_phone)
    if reveal and has_personal:
        audit_personal_read(
            conn, principal, ticket_id=ticket.id, client_ip=client_ip(request)
        )
        conn.commit()
    reporter = {
        "name": ticket.reporter_name if reveal else mask_name(ticket.reporter_name),
        "phone": ticket.reporter_phone if reveal else mask_phone(ticket.reporter_phone),
    }
    pages: Pages = request.app.state.pages
    return pages.render(
        request,
        "staff/ticket.html",
        {
            "ticket": ticket,
            "place": _places(conn, [ticket.id]).get(ticket.id, ""),
            "reporter": reporter,
            "actions": service.allowed_actions(ticket.status),
            "resolution_codes": RESOLUTION_CODES,
            "photo": ticket.data.get("photo"),
            "error": error,
            "mine": principal.engineer_id == ticket.engineer_id,
        },
        status_code=status_code,
    )


@router.get("/e/tickets/{ticket_id}/photo")
def ticket_photo(
    request: Request,
    ticket_id: int,
    principal: StaffDep,
    conn: ConnDep,
    settings: SettingsDep,
) -> Response:
    """The report's photo, for those who may see the ticket."""
    try:
        ticket = visible_ticket(conn, principal, ticket_id)
    except NotFound:
        return not_found(request)
    photo = ticket.data.get("photo") or {}
    path = photo_path(settings.upload_dir, str(photo.get("name", "")))
    if path is None:
        return not_found(request)
    return FileResponse(
        path,
        media_type=str(photo.get("content_type", "application/octet-stream")),
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get("/e/tickets/{ticket_id}")
def ticket_page(
    request: Request, ticket_id: int, principal: StaffDep, conn: ConnDep
) -> HTMLResponse:
    try:
        ticket = visible_ticket(conn, principal, ticket_id)
    except NotFound:
        return not_found(request)
    return _ticket_page(request, conn, principal, ticket)


def _parse_visit(value: str) -> datetime:
    """A ``datetime-local`` field, read as China Standard Time."""
    try:
        local = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"visit time {value!r} is not a date and time like 2026-03-02T14:30",
            field="visit_at",
        ) from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=LOCAL_ZONE)
    return local


@router.post("/e/tickets/{ticket_id}/{action}")
def act(
    *,
    request: Request,
    ticket_id: int,
    action: str,
    principal: StaffDep,
    conn: ConnDep,
    settings: SettingsDep,
    _csrf: CsrfDep,
    visit_at: Annotated[str, Form(max_length=40)] = "",
    resolution_code: Annotated[str, Form(max_length=64)] = "",
    parts: Annotated[str, Form(max_length=1000)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Accept, book a visit or resolve, through the tickets service."""
    try:
        ticket = visible_ticket(conn, principal, ticket_id)
    except NotFound:
        return not_found(request)
    if action not in ("accept", "schedule", "resolve"):
        return not_found(request)
    data: dict[str, Any] = {}
    try:
        if action == "accept":
            if principal.engineer_id is not None:
                data["engineer_id"] = principal.engineer_id
        elif action == "schedule":
            data["visit_at"] = _parse_visit(visit_at)
        else:
            data["resolution_code"] = resolution_code
            data["parts"] = [p.strip() for p in parts.split(",") if p.strip()]
        retry_on_conflict(
            conn,
            lambda: service.transition(
                conn,
                ticket.id,
                action,
                actor_of(principal),
                note.strip(),
                datetime.now(UTC),
                config=TicketConfig.from_settings(settings),
                **data,
            ),
            what=f"{action} on ticket {ticket.id}",
        )
    except (InvalidInput, Conflict) as exc:
        conn.rollback()
        ticket = visible_ticket(conn, principal, ticket_id)
        return _ticket_page(
            request, conn, principal, ticket, error=str(exc), status_code=422
        )
    conn.commit()
    return RedirectResponse(f"/e/tickets/{ticket.id}", status_code=303)
