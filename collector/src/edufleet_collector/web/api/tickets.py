"""The tickets API for engineers and admins, and the public rating endpoint.

Every call but the rating needs ``Authorization: Bearer <token>``. A ticket
outside the caller's scope answers 404, as if it did not exist. Engineers act
on the tickets dispatched to them (and may accept an undispatched ticket of a
school they cover); cancelling, reopening, changing priority and merging are
admin actions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import status as http
from pydantic import BaseModel, Field

from ...accounts import Principal
from ...db.conflicts import retry_on_conflict
from ...errors import NotFound
from ...tickets import service
from ...tickets.model import Ticket, TicketConfig
from ...tickets.sla import sla_figures
from ..deps import ConnDep, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["tickets"])


def get_now(request: Request) -> datetime:
    """The current time; tests put a clock on ``app.state.clock``."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


NowDep = Annotated[datetime, Depends(get_now)]


def get_ticket_config(request: Request) -> TicketConfig:
    """The ticket rules from the settings, built once per app with a calendar cache."""
    config: TicketConfig | None = getattr(request.app.state, "ticket_config", None)
    if config is None:
        config = TicketConfig.from_settings(request.app.state.settings)
        request.app.state.ticket_config = config
    return config


ConfigDep = Annotated[TicketConfig, Depends(get_ticket_config)]

ADMIN_ACTIONS = {"cancel", "reopen", "change_priority", "merge"}
PATH_ACTIONS = {
    "accept": "accept",
    "schedule": "schedule",
    "resolve": "resolve",
    "cancel": "cancel",
    "reopen": "reopen",
    "note": "note",
    "hand-back": "hand_back",
    "reassign": "reassign",
    "priority": "change_priority",
    "merge": "merge",
    "pause": "pause",
    "resume": "resume",
    "close": "close",
}


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 0) if name else ""


def mask_phone(phone: str) -> str:
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    out = ticket.public()
    out["reporter_name"] = mask_name(ticket.reporter_name)
    out["reporter_phone"] = mask_phone(ticket.reporter_phone)
    out["allowed_actions"] = service.allowed_actions(ticket.status)
    return out


def _visible(principal: Principal, ticket: Ticket) -> bool:
    if (
        principal.engineer_id is not None
        and ticket.engineer_id == principal.engineer_id
    ):
        return True
    return principal.allows_school(ticket.school_id)


def _load_visible(conn: ConnDep, principal: Principal, ticket_id: int) -> Ticket:
    try:
        ticket = service.get_ticket(conn, ticket_id)
    except NotFound:
        ticket = None
    if ticket is None or not _visible(principal, ticket):
        raise NotFound(f"ticket {ticket_id} does not exist or is outside your scope")
    return ticket


class TicketCreate(BaseModel):
    """A fault reported by hand (hotline or admin)."""

    device_id: int | None = Field(default=None, description="the device's id")
    asset_tag: str | None = Field(default=None, description="or its asset tag")
    device_code: str | None = Field(default=None, description="or its QR label code")
    source: Literal["hotline", "admin", "qr"] = "hotline"
    symptom: str | None = Field(default=None, max_length=64)
    description: str = Field(default="", max_length=4000)
    reporter_name: str = Field(default="", max_length=100)
    reporter_phone: str = Field(default="", max_length=40)
    priority: Literal["low", "normal", "high", "critical"] | None = None


class ActionBody(BaseModel):
    """Data of a ticket action; each action reads the fields it needs."""

    note: str = Field(default="", max_length=4000)
    engineer_id: int | None = None
    visit_at: datetime | None = None
    resolution_code: str | None = Field(default=None, max_length=64)
    parts: list[Any] = Field(default_factory=list)
    priority: Literal["low", "normal", "high", "critical"] | None = None
    into_id: int | None = None
    reason: Literal["appointment", "parts", "school_closed"] | None = None
    until: datetime | None = None


class RatingBody(BaseModel):
    stars: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)


def _resolve_device(conn: ConnDep, body: TicketCreate) -> int:
    if body.device_id is not None:
        return body.device_id
    if body.asset_tag:
        row = conn.execute(
            "SELECT id FROM devices WHERE asset_tag = %s", [body.asset_tag]
        ).fetchone()
    elif body.device_code:
        row = conn.execute(
            "SELECT device_id FROM device_codes WHERE code = %s AND retired_at IS NULL",
            [body.device_code],
        ).fetchone()
    else:
        raise HTTPException(
            http.HTTP_422_UNPROCESSABLE_ENTITY,
            "say which device: device_id, asset_tag or device_code",
        )
    if row is None:
        raise NotFound("no device has this asset tag or label code")
    return int(row[0])


@router.post("/tickets", status_code=201, summary="Report a fault by hand")
def create_ticket(
    body: TicketCreate,
    conn: ConnDep,
    principal: PrincipalDep,
    config: ConfigDep,
    now: NowDep,
) -> dict[str, Any]:
    device_id = _resolve_device(conn, body)
    row = conn.execute(
        "SELECT school_id FROM devices WHERE id = %s", [device_id]
    ).fetchone()
    if row is None or not principal.allows_school(int(row[0])):
        raise NotFound(f"device {device_id} does not exist or is outside your scope")
    outcome = retry_on_conflict(
        conn,
        lambda: service.open_ticket(
            conn,
            source=body.source,
            device_id=device_id,
            symptom=body.symptom,
            description=body.description,
            reporter_name=body.reporter_name,
            reporter_phone=body.reporter_phone,
            priority=body.priority,
            actor=f"user:{principal.name}",
            now=now,
            config=config,
        ),
        what=f"a ticket for device {device_id}",
    )
    out = ticket_json(outcome.ticket)
    out["created"] = outcome.created
    return out


@router.get("/tickets", summary="List tickets in your scope, newest first")
def list_tickets(
    *,
    conn: ConnDep,
    principal: PrincipalDep,
    status: str | None = None,
    colour: Literal["red", "yellow", "green", "grey"] | None = None,
    school_id: int | None = None,
    engineer_id: int | None = None,
    device_id: int | None = None,
    priority: str | None = None,
    open: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    tickets = service.search_tickets(
        conn,
        school_ids=principal.school_ids,
        status=status,
        colour=colour,
        school_id=school_id,
        engineer_id=engineer_id,
        device_id=device_id,
        priority=priority,
        open_only=open,
        limit=limit,
        offset=offset,
    )
    return {"tickets": [ticket_json(t) for t in tickets], "count": len(tickets)}


@router.get("/tickets/{ticket_id}", summary="One ticket")
def read_ticket(
    ticket_id: int, conn: ConnDep, principal: PrincipalDep
) -> dict[str, Any]:
    return ticket_json(_load_visible(conn, principal, ticket_id))


@router.get("/tickets/{ticket_id}/events", summary="A ticket's event log")
def read_events(
    ticket_id: int, conn: ConnDep, principal: PrincipalDep
) -> dict[str, Any]:
    _load_visible(conn, principal, ticket_id)
    events = service.ticket_events(conn, ticket_id)
    return {
        "events": [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "kind": e.kind,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "note": e.note,
                "data": e.data,
            }
            for e in events
        ]
    }


@router.get("/tickets/{ticket_id}/sla", summary="A ticket's SLA clocks as of now")
def read_sla(
    ticket_id: int, conn: ConnDep, principal: PrincipalDep, now: NowDep
) -> dict[str, Any]:
    _load_visible(conn, principal, ticket_id)
    figures = sla_figures(conn, ticket_id, now)

    def clock(c: Any) -> dict[str, Any]:
        return {
            "wall_seconds": c.wall_seconds,
            "service_seconds": c.service_seconds,
            "target_seconds": c.target_seconds,
            "measure": c.measure,
            "running": c.running,
            "due_at": c.due_at,
            "breached": c.breached,
        }

    return {
        "policy_id": figures.policy.id,
        "priority": figures.policy.priority,
        "response": clock(figures.response),
        "resolution": clock(figures.resolution),
        "paused_seconds": figures.paused_seconds,
    }


@router.post("/tickets/{ticket_id}/{action}", summary="Move a ticket on")
def act(
    *,
    ticket_id: int,
    action: str,
    conn: ConnDep,
    principal: PrincipalDep,
    config: ConfigDep,
    now: NowDep,
    body: ActionBody | None = None,
) -> dict[str, Any]:
    name = PATH_ACTIONS.get(action)
    if name is None:
        raise HTTPException(
            http.HTTP_404_NOT_FOUND,
            f"unknown ticket action {action!r}; use one of {', '.join(PATH_ACTIONS)}",
        )
    ticket = _load_visible(conn, principal, ticket_id)
    if not principal.is_admin:
        if name in ADMIN_ACTIONS:
            raise HTTPException(
                http.HTTP_403_FORBIDDEN, f"{action} needs an admin role"
            )
        own = principal.engineer_id is not None and (
            ticket.engineer_id == principal.engineer_id
            or (name == "accept" and ticket.engineer_id is None)
        )
        if not own:
            raise NotFound(
                f"ticket {ticket_id} does not exist or is outside your scope"
            )
    body = body or ActionBody()
    data: dict[str, Any] = {
        k: v
        for k, v in body.model_dump(exclude={"note"}).items()
        if v is not None and v != []
    }
    if name == "accept" and principal.engineer_id is not None:
        data["engineer_id"] = principal.engineer_id
    if name == "resolve":
        data.setdefault("parts", body.parts)
    updated = retry_on_conflict(
        conn,
        lambda: service.transition(
            conn,
            ticket_id,
            name,
            f"user:{principal.name}",
            body.note,
            now,
            config=config,
            **data,
        ),
        what=f"{name} on ticket {ticket_id}",
    )
    return ticket_json(updated)


@router.get("/me/queue", summary="My open tickets, most urgent first")
def my_queue(conn: ConnDep, principal: PrincipalDep, now: NowDep) -> dict[str, Any]:
    if principal.engineer_id is None:
        raise HTTPException(
            http.HTTP_403_FORBIDDEN, "the queue is for users linked to an engineer"
        )
    tickets = service.queue_for_engineer(conn, principal.engineer_id, now)
    return {"tickets": [ticket_json(t) for t in tickets]}


@router.post("/ratings/{token}", summary="Rate a resolved ticket with a rating link")
def post_rating(
    token: str, body: RatingBody, conn: ConnDep, config: ConfigDep, now: NowDep
) -> dict[str, Any]:
    ticket = service.rate(
        conn,
        token,
        body.stars,
        body.comment,
        now=now,
        config=config,
    )
    return {"ticket_id": ticket.id, "status": ticket.status, "stars": body.stars}
