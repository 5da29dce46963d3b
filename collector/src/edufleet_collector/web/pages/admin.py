"""The admin and bureau pages: devices, labels, ledger import, tickets, engineers.

Every list and every change goes through the registry, enrollment and tickets
services with the logged-in principal, so a user only ever reaches the
schools in their scope; anything outside it answers 404.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg import sql
from pydantic import ValidationError

from ... import enrollment
from ...accounts import Principal
from ...db import Conn
from ...db.conflicts import retry_on_conflict
from ...errors import Conflict, EdufleetError, InvalidInput, NotFound
from ...labels import (
    LAYOUTS,
    labels_for_devices,
    layout_named,
    retire_code,
    write_pdf,
)
from ...registry.assignments import (
    AssignmentSet,
    list_assignments,
    remove_assignment,
    set_assignment,
)
from ...registry.devices import (
    STATUSES as DEVICE_STATUSES,
)
from ...registry.devices import (
    DeviceFilters,
    DeviceUpdate,
    get_device,
    list_devices,
    update_device,
)
from ...registry.engineers import list_engineers
from ...registry.ledger import import_ledger
from ...registry.pagination import Page
from ...registry.rooms import RoomCreate, create_room, list_rooms
from ...registry.schools import list_schools
from ...tickets import service
from ...tickets.model import STATUSES as TICKET_STATUSES
from ...tickets.model import TicketConfig
from ..csrf import CsrfDep
from ..deps import ConnDep, SettingsDep
from .auth import PageAdminDep
from .engineer import actor_of, not_found
from .render import Pages

router = APIRouter(include_in_schema=False)

MAX_LEDGER_BYTES = 20 * 1024 * 1024
PAGE_SIZE = 100


def _render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    pages: Pages = request.app.state.pages
    return pages.render(request, f"admin/{template}", context, status_code=status_code)


def _categories(conn: Conn) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT code, name_zh FROM device_categories ORDER BY code"
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def sla_summary(conn: Conn, principal: Principal) -> list[dict[str, Any]]:
    """Per school in scope: open tickets and the share resolved within the SLA."""
    scope, params = principal.school_condition("t.school_id")
    query = sql.SQL(
        """
        SELECT s.code, s.name,
               count(*) FILTER (WHERE ticket_is_open(t.status)),
               count(*) FILTER (WHERE t.resolved_at IS NOT NULL),
               count(*) FILTER (WHERE t.response_breached),
               count(*) FILTER (WHERE t.resolution_breached),
               round(avg(t.response_seconds) / 60)
        FROM tickets t JOIN schools s ON s.id = t.school_id
        WHERE t.merged_into IS NULL AND t.reported_at > now() - interval '30 days'
          AND {scope}
        GROUP BY s.code, s.name ORDER BY 3 DESC, s.code LIMIT 200
        """
    ).format(scope=scope)
    keys = (
        "code",
        "name",
        "open",
        "resolved",
        "response_breached",
        "resolution_breached",
        "response_minutes",
    )
    return [dict(zip(keys, row, strict=True)) for row in conn.execute(query, params)]


@router.get("/a")
def dashboard(request: Request, principal: PageAdminDep, conn: ConnDep) -> HTMLResponse:
    return _render(request, "dashboard.html", {"summary": sla_summary(conn, principal)})


@router.get("/a/devices")
def devices(
    *,
    request: Request,
    principal: PageAdminDep,
    conn: ConnDep,
    q: str = "",
    school: str = "",
    category: str = "",
    status: str = "",
    after: str = "",
) -> HTMLResponse:
    """Search and filter the devices in scope; pick some to print labels."""
    filters = DeviceFilters(
        school=school or None,
        category=category or None,
        status=status or None,
        q=q or None,
    )
    error = ""
    try:
        listing = list_devices(
            conn, principal, filters, Page.parse(PAGE_SIZE, after or None)
        )
        items, next_cursor = listing.items, listing.next
    except (NotFound, InvalidInput) as exc:
        items, next_cursor, error = [], None, str(exc)
    return _render(
        request,
        "devices.html",
        {
            "devices": items,
            "next": next_cursor,
            "filters": {
                "q": q,
                "school": school,
                "category": category,
                "status": status,
            },
            "categories": _categories(conn),
            "statuses": DEVICE_STATUSES,
            "layouts": list(LAYOUTS),
            "error": error,
        },
    )


@router.get("/a/devices/{device_id}")
def device_page(
    request: Request, device_id: int, principal: PageAdminDep, conn: ConnDep
) -> HTMLResponse:
    try:
        device = get_device(conn, principal, device_id)
    except NotFound:
        return not_found(request)
    return _device_form(request, conn, principal, device)


def _device_form(
    request: Request,
    conn: Conn,
    principal: Principal,
    device: Any,
    *,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    rooms = list_rooms(conn, principal, device.school_code, page=Page(limit=500)).items
    return _render(
        request,
        "device.html",
        {
            "device": device,
            "rooms": rooms,
            "statuses": DEVICE_STATUSES,
            "error": error,
        },
        status_code=status_code,
    )


@router.post("/a/devices/{device_id}")
def device_save(
    *,
    request: Request,
    device_id: int,
    principal: PageAdminDep,
    conn: ConnDep,
    _csrf: CsrfDep,
    name: Annotated[str, Form(max_length=200)] = "",
    brand: Annotated[str, Form(max_length=100)] = "",
    model: Annotated[str, Form(max_length=100)] = "",
    serial: Annotated[str, Form(max_length=100)] = "",
    room_id: Annotated[str, Form(max_length=20)] = "",
    status: Annotated[str, Form(max_length=20)] = "in_service",
) -> Response:
    try:
        device = get_device(conn, principal, device_id)
    except NotFound:
        return not_found(request)
    try:
        changes = DeviceUpdate(
            name=name,
            brand=brand,
            model=model,
            serial=serial,
            room_id=int(room_id) if room_id else None,
            status=status,
        )
        update_device(conn, principal, device_id, changes)
    except (InvalidInput, NotFound, Conflict, ValidationError, ValueError) as exc:
        conn.rollback()
        return _device_form(
            request, conn, principal, device, error=str(exc), status_code=422
        )
    conn.commit()
    return RedirectResponse(f"/a/devices/{device_id}", status_code=303)


@router.post("/a/devices/{device_id}/retire-code")
def device_retire_code(
    request: Request,
    device_id: int,
    principal: PageAdminDep,
    conn: ConnDep,
    _csrf: CsrfDep,
) -> Response:
    """Stop the device's current label from working; a reprint issues a new code."""
    try:
        device = get_device(conn, principal, device_id)
    except NotFound:
        return not_found(request)
    if device.qr_code:
        retire_code(conn, device.qr_code)
        conn.commit()
    return RedirectResponse(f"/a/devices/{device_id}", status_code=303)


@router.post("/a/labels")
def print_labels(
    *,
    request: Request,
    principal: PageAdminDep,
    conn: ConnDep,
    settings: SettingsDep,
    _csrf: CsrfDep,
    device: Annotated[list[int], Form()],
    layout: Annotated[str, Form(max_length=20)] = "3x8",
    start_at: Annotated[int, Form(ge=1, le=1000)] = 1,
    reissue: Annotated[bool, Form()] = False,
) -> Response:
    """The chosen devices' labels as a PDF, laid out like ``edufleet labels``."""
    try:
        sheet = layout_named(layout)
        labels = labels_for_devices(
            conn,
            device,
            principal=principal,
            public_url=settings.public_url,
            reissue=reissue,
        )
        out = io.BytesIO()
        write_pdf(labels, out, layout=sheet, start_at=start_at)
    except InvalidInput as exc:
        conn.rollback()
        return _render(request, "error.html", {"error": str(exc)}, 422)
    conn.commit()
    return Response(
        out.getvalue(),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="labels.pdf"'},
    )


@router.get("/a/import")
def import_form(request: Request, principal: PageAdminDep) -> HTMLResponse:
    return _render(request, "import.html", {"report": None, "error": ""})


@router.post("/a/import")
async def import_upload(
    *,
    request: Request,
    principal: PageAdminDep,
    conn: ConnDep,
    _csrf: CsrfDep,
    ledger: UploadFile,
    school_code: Annotated[str, Form(max_length=32)] = "",
    dry_run: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    """Import a ledger file and show the importer's row report."""
    data = await ledger.read(MAX_LEDGER_BYTES + 1)
    if len(data) > MAX_LEDGER_BYTES:
        return _render(
            request,
            "import.html",
            {
                "report": None,
                "error": f"ledger file exceeds the {MAX_LEDGER_BYTES:,}-byte limit; "
                "split it by school",
            },
            413,
        )
    try:
        report = import_ledger(
            conn,
            data,
            ledger.filename or "ledger.csv",
            school_code=school_code or None,
            dry_run=dry_run,
            scope=principal.school_ids,
        )
    except (NotFound, InvalidInput) as exc:
        return _render(request, "import.html", {"report": None, "error": str(exc)}, 422)
    if not report.ok or dry_run:
        conn.rollback()
    else:
        conn.commit()
    return _render(
        request,
        "import.html",
        {"report": report, "error": ""},
        200 if report.ok else 422,
    )


@router.get("/a/tickets")
def tickets(
    *,
    request: Request,
    principal: PageAdminDep,
    conn: ConnDep,
    status: str = "",
    school: str = "",
    open_only: bool = False,
) -> HTMLResponse:
    """Tickets in scope, newest first, with reassign and merge."""
    error = ""
    school_id = None
    if school:
        row = conn.execute(
            "SELECT id FROM schools WHERE code = %s", [school]
        ).fetchone()
        school_id = int(row[0]) if row and principal.allows_school(int(row[0])) else -1
    try:
        found = service.search_tickets(
            conn,
            school_ids=principal.school_ids,
            status=status or None,
            school_id=school_id,
            open_only=open_only,
            limit=200,
        )
    except InvalidInput as exc:
        found, error = [], str(exc)
    return _render(
        request,
        "tickets.html",
        {
            "tickets": found,
            "filters": {"status": status, "school": school, "open_only": open_only},
            "statuses": TICKET_STATUSES,
            "error": error,
        },
    )


@router.post("/a/tickets/{ticket_id}/{action}")
def ticket_action(
    *,
    request: Request,
    ticket_id: int,
    action: str,
    principal: PageAdminDep,
    conn: ConnDep,
    settings: SettingsDep,
    _csrf: CsrfDep,
    engineer_id: Annotated[str, Form(max_length=20)] = "",
    into_id: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Reassign a ticket to an engineer, or merge it into another ticket."""
    if action not in ("reassign", "merge"):
        return not_found(request)
    try:
        ticket = service.get_ticket(conn, ticket_id)
    except NotFound:
        return not_found(request)
    if not principal.allows_school(ticket.school_id):
        return not_found(request)
    data: dict[str, Any] = {}
    try:
        if action == "reassign":
            if engineer_id:
                data["engineer_id"] = _engineer_in_scope(conn, principal, engineer_id)
        else:
            other = service.get_ticket(conn, int(into_id))
            if not principal.allows_school(other.school_id):
                raise NotFound(f"ticket {into_id} does not exist")
            data["into_id"] = other.id
        retry_on_conflict(
            conn,
            lambda: service.transition(
                conn,
                ticket.id,
                action,
                actor_of(principal),
                note.strip() or action,
                datetime.now(UTC),
                config=TicketConfig.from_settings(settings),
                **data,
            ),
            what=f"{action} on ticket {ticket.id}",
        )
    except (InvalidInput, Conflict, NotFound, ValueError) as exc:
        conn.rollback()
        return _render(request, "error.html", {"error": str(exc)}, 422)
    conn.commit()
    return RedirectResponse("/a/tickets", status_code=303)


def _engineer_in_scope(conn: Conn, principal: Principal, engineer_id: str) -> int:
    wanted = int(engineer_id)
    page = list_engineers(conn, principal, page=Page(limit=500))
    if wanted not in {e.id for e in page.items}:
        raise NotFound(f"engineer {wanted} does not exist")
    return wanted


@router.get("/a/schools")
def schools(
    request: Request, principal: PageAdminDep, conn: ConnDep, q: str = ""
) -> HTMLResponse:
    listing = list_schools(conn, principal, page=Page(limit=500), q=q or None)
    return _render(request, "schools.html", {"schools": listing.items, "q": q})


def _school_page(
    request: Request,
    conn: Conn,
    principal: Principal,
    code: str,
    *,
    new_token: str = "",
) -> HTMLResponse:
    """A school's rooms, engineers and enrollment tokens; NotFound out of scope."""
    rooms = list_rooms(conn, principal, code, page=Page(limit=500)).items
    return _render(
        request,
        "school.html",
        {
            "code": code,
            "rooms": rooms,
            "engineers": list_assignments(conn, principal, code),
            "tokens": enrollment.list_enrollment_tokens(
                conn, principal.school_ids, school_code=code
            ),
            "new_token": new_token,
        },
    )


@router.get("/a/schools/{code}")
def school_page(
    request: Request, code: str, principal: PageAdminDep, conn: ConnDep
) -> HTMLResponse:
    try:
        return _school_page(request, conn, principal, code)
    except NotFound:
        return not_found(request)


@router.post("/a/schools/{code}/enrollment")
def new_enrollment_token(
    *,
    request: Request,
    code: str,
    principal: PageAdminDep,
    conn: ConnDep,
    _csrf: CsrfDep,
    label: Annotated[str, Form(max_length=200)] = "",
    max_uses: Annotated[int, Form(ge=1, le=10_000)] = 50,
) -> HTMLResponse:
    """Issue an enrollment token for the school's agents; shown once."""
    try:
        list_rooms(conn, principal, code, page=Page(limit=1))
        token, _ = enrollment.create_enrollment_token(
            conn,
            school_code=code,
            max_uses=max_uses,
            label=label,
            created_by=principal.user_id,
        )
    except NotFound:
        return not_found(request)
    except EdufleetError as exc:
        conn.rollback()
        return _render(request, "error.html", {"error": str(exc)}, 422)
    conn.commit()
    return _school_page(request, conn, principal, code, new_token=token)


@router.post("/a/schools/{code}/rooms")
def add_room(
    *,
    request: Request,
    code: str,
    principal: PageAdminDep,
    conn: ConnDep,
    _csrf: CsrfDep,
    name: Annotated[str, Form(max_length=100)],
    building: Annotated[str, Form(max_length=100)] = "",
    kind: Annotated[str, Form(max_length=20)] = "classroom",
) -> Response:
    """Add a room to the school."""
    return _change_school(
        request,
        conn,
        code,
        lambda: create_room(
            conn,
            principal,
            code,
            RoomCreate.model_validate(
                {"name": name, "building": building, "kind": kind}
            ),
        ),
    )


@router.post("/a/schools/{code}/engineers")
def assign_engineer(
    *,
    request: Request,
    code: str,
    principal: PageAdminDep,
    conn: ConnDep,
    _csrf: CsrfDep,
    engineer_id: Annotated[int, Form(ge=1)],
    role: Annotated[str, Form(max_length=10)] = "backup",
    remove: Annotated[bool, Form()] = False,
) -> Response:
    """Assign an engineer to the school (primary or backup), or remove one."""

    def change() -> None:
        if remove:
            remove_assignment(conn, principal, code, engineer_id)
            return
        set_assignment(
            conn,
            principal,
            code,
            engineer_id,
            AssignmentSet.model_validate({"role": role}),
        )

    return _change_school(request, conn, code, change)


def _change_school(
    request: Request, conn: Conn, code: str, change: Callable[[], object]
) -> Response:
    """Run a change on a school's page and go back to it, or say why it failed."""
    try:
        change()
    except NotFound:
        conn.rollback()
        return not_found(request)
    except (InvalidInput, Conflict, ValidationError) as exc:
        conn.rollback()
        return _render(request, "error.html", {"error": str(exc)}, 422)
    conn.commit()
    return RedirectResponse(f"/a/schools/{code}", status_code=303)


@router.get("/a/engineers")
def engineers(request: Request, principal: PageAdminDep, conn: ConnDep) -> HTMLResponse:
    listing = list_engineers(conn, principal, page=Page(limit=500))
    return _render(request, "engineers.html", {"engineers": listing.items})
