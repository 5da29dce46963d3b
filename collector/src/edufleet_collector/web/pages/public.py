"""The teacher's pages: scan a label, report a fault, follow it, rate the fix.

No account is needed. A label's code that is unknown, retired or malformed
gets one and the same answer, so the page reveals nothing about which codes
exist. Each client and each label is rate-limited (see ``ratelimit.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import Conflict, InvalidInput, NotFound
from ...settings import Settings
from ..csrf import CsrfDep
from ..deps import ConnDep, SettingsDep, get_pool
from ..i18n import negotiate, translator
from ..ratelimit import Rate, RateLimiter
from . import ticketing
from .auth import client_ip
from .render import Pages
from .uploads import store_photo

router = APIRouter(include_in_schema=False)

_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")
MAX_DESCRIPTION = 2000
MAX_NAME = 50


@dataclass(frozen=True)
class DeviceCard:
    id: int
    school_id: int
    asset_tag: str
    category_code: str
    category: str
    school: str
    room: str
    symptoms: list[dict[str, str]]
    has_open_ticket: bool


def message(
    request: Request, title_key: str, body_key: str, *, status_code: int
) -> HTMLResponse:
    pages: Pages = request.app.state.pages
    t = translator(negotiate(request))
    return pages.render(
        request,
        "message.html",
        {"title": t(title_key), "body": t(body_key)},
        status_code=status_code,
    )


def _unknown_code(request: Request) -> HTMLResponse:
    return message(request, "code.unknown.title", "code.unknown.body", status_code=404)


def _too_many(request: Request) -> HTMLResponse:
    response = message(request, "limit.title", "limit.body", status_code=429)
    response.headers["Retry-After"] = "60"
    return response


def _limited(request: Request, code: str, *, report: bool) -> bool:
    """True when this client or this label has used up its requests."""
    limiter: RateLimiter = request.app.state.rate_limiter
    settings: Settings = request.app.state.settings
    ip = client_ip(request) or "unknown"
    if report:
        rate = Rate(
            burst=max(1, int(settings.qr_reports_per_hour // 4)),
            per_minute=settings.qr_reports_per_hour / 60,
        )
        return not (
            limiter.allow("report-client", ip, rate)
            and limiter.allow("report-label", code, rate)
        )
    view = Rate(
        burst=int(settings.qr_rate_per_minute), per_minute=settings.qr_rate_per_minute
    )
    label = Rate(burst=int(view.burst * 4), per_minute=view.per_minute * 4)
    return not (
        limiter.allow("view-client", ip, view)
        and limiter.allow("view-label", code, label)
    )


def find_device(conn: ConnDep, code: str, lang: str) -> DeviceCard | None:
    """The device behind an active label code, with its category's symptoms."""
    if not _CODE_RE.match(code):
        return None
    row = conn.execute(
        """
        SELECT d.id, d.school_id, d.asset_tag, d.category,
               CASE WHEN %(lang)s = 'en' THEN c.name_en ELSE c.name_zh END,
               s.name, coalesce(r.name, ''),
               coalesce((
                   SELECT json_agg(json_build_object(
                       'code', cs.code,
                       'name', CASE WHEN %(lang)s = 'en' THEN cs.name_en
                                    ELSE cs.name_zh END)
                       ORDER BY cs.position)
                   FROM category_symptoms cs WHERE cs.category = d.category
               ), '[]'::json),
               EXISTS (SELECT 1 FROM tickets t
                       WHERE t.device_id = d.id AND ticket_is_open(t.status)
                         AND t.kind = 'device' AND t.merged_into IS NULL)
        FROM device_codes dc
        JOIN devices d ON d.id = dc.device_id
        JOIN device_categories c ON c.code = d.category
        JOIN schools s ON s.id = d.school_id
        LEFT JOIN rooms r ON r.id = d.room_id
        WHERE dc.code = %(code)s AND dc.retired_at IS NULL AND d.status <> 'retired'
        """,
        {"code": code, "lang": lang},
    ).fetchone()
    if row is None:
        return None
    return DeviceCard(
        id=int(row[0]),
        school_id=int(row[1]),
        asset_tag=str(row[2]),
        category_code=str(row[3]),
        category=str(row[4]),
        school=str(row[5]),
        room=str(row[6]),
        symptoms=list(row[7]),
        has_open_ticket=bool(row[8]),
    )


def _device_page(
    request: Request,
    conn: ConnDep,
    settings: Settings,
    code: str,
    device: DeviceCard,
    *,
    form: dict[str, str] | None = None,
    error: str = "",
    me_too_done: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    pages: Pages = request.app.state.pages
    ticket = None
    if device.has_open_ticket or me_too_done:
        ticket = ticketing.open_ticket_of_device(conn, device.id, negotiate(request))
    return pages.render(
        request,
        "public/device.html",
        {
            "code": code,
            "device": device,
            "symptoms": device.symptoms,
            "ticket": ticket,
            "form": form or {"symptom": "", "description": "", "name": "", "phone": ""},
            "error": error,
            "me_too_done": me_too_done,
            "photo_mb": settings.upload_max_bytes // (1024 * 1024),
        },
        status_code=status_code,
    )


@router.get("/r/{code}")
def landing(request: Request, code: str, settings: SettingsDep) -> HTMLResponse:
    """What the device is and where; its open ticket, or the report form.

    The connection is taken inside the handler, only once the request has
    passed the rate limit, and returned before the page is sent.
    """
    if _limited(request, code, report=False):
        return _too_many(request)
    with get_pool(request).connection() as conn:
        device = find_device(conn, code, negotiate(request))
        if device is None:
            return _unknown_code(request)
        return _device_page(request, conn, settings, code, device)


def _check_report(
    device: DeviceCard, form: dict[str, str], t: Any
) -> tuple[str, str] | None:
    """The (field, message) of the first problem in a report, or None."""
    symptoms = {s["code"] for s in device.symptoms} | {"other"}
    if form["symptom"] not in symptoms:
        return "symptom", t("report.error.symptom")
    if form["symptom"] == "other" and not form["description"].strip():
        return "description", t("report.error.description")
    for field, label, limit in (
        ("description", "report.description", MAX_DESCRIPTION),
        ("name", "report.name", MAX_NAME),
    ):
        if len(form[field]) > limit:
            return field, t("report.error.too_long").format(field=t(label), limit=limit)
    if form["phone"] and not _PHONE_RE.match(form["phone"]):
        return "phone", t("report.error.phone")
    return None


@router.post("/r/{code}")
async def report(
    *,
    request: Request,
    code: str,
    conn: ConnDep,
    settings: SettingsDep,
    _csrf: CsrfDep,
    symptom: Annotated[str, Form(max_length=64)] = "",
    description: Annotated[str, Form(max_length=10_000)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    phone: Annotated[str, Form(max_length=1000)] = "",
    photo: UploadFile | None = None,
) -> Response:
    """Create a ticket from the form and send the teacher to its status page."""
    if _limited(request, code, report=True):
        return _too_many(request)
    lang = negotiate(request)
    t = translator(lang)
    device = find_device(conn, code, lang)
    if device is None:
        return _unknown_code(request)
    form = {
        "symptom": symptom,
        "description": description,
        "name": name.strip(),
        "phone": phone.strip(),
    }
    problem = _check_report(device, form, t)
    stored = None
    if problem is None and photo is not None and photo.filename:
        data = await photo.read(settings.upload_max_bytes + 1)
        try:
            stored = store_photo(
                data,
                photo.content_type or "",
                upload_dir=settings.upload_dir,
                max_bytes=settings.upload_max_bytes,
            )
        except InvalidInput as exc:
            mb = settings.upload_max_bytes // (1024 * 1024)
            problem = (
                "photo",
                t(
                    "report.error.photo_size"
                    if exc.field == "photo_size"
                    else "report.error.photo_type"
                ).format(mb=mb),
            )
    if problem is not None:
        return _device_page(
            request,
            conn,
            settings,
            code,
            device,
            form=form,
            error=problem[1],
            status_code=422,
        )

    symptom_name = next(
        (s["name"] for s in device.symptoms if s["code"] == symptom),
        t("report.symptom.other"),
    )
    token = ticketing.report_fault(
        conn,
        settings,
        device_id=device.id,
        symptom=symptom,
        title=f"{device.category}: {symptom_name}",
        description=form["description"].strip(),
        reporter_name=form["name"],
        reporter_phone=form["phone"],
        photo=stored,
    )
    conn.commit()
    return RedirectResponse(f"/t/{token}", status_code=303)


@router.post("/r/{code}/me-too")
def me_too(
    request: Request, code: str, conn: ConnDep, settings: SettingsDep, _csrf: CsrfDep
) -> Response:
    """Add one more reporter to the device's open ticket."""
    if _limited(request, code, report=True):
        return _too_many(request)
    device = find_device(conn, code, negotiate(request))
    if device is None:
        return _unknown_code(request)
    ticket = ticketing.open_ticket_of_device(conn, device.id, "zh")
    if ticket is None:
        return RedirectResponse(f"/r/{code}", status_code=303)
    try:
        ticketing.me_too(conn, ticket_id=ticket.id)
    except Conflict:
        return RedirectResponse(f"/r/{code}", status_code=303)
    conn.commit()
    return _device_page(request, conn, settings, code, device, me_too_done=True)


@router.get("/t/{token}")
def status_page(request: Request, token: str) -> HTMLResponse:
    """The red / yellow / green progress of one report, then its rating form."""
    if _limited(request, token, report=False):
        return _too_many(request)
    with get_pool(request).connection() as conn:
        view = ticketing.status_view(conn, token, negotiate(request))
    if view is None:
        return _unknown_code(request)
    pages: Pages = request.app.state.pages
    return pages.render(
        request,
        "public/status.html",
        {"ticket": view, "rate_action": f"/t/{token}/rate"},
    )


@router.post("/t/{token}/rate")
def rate_from_status(
    *,
    request: Request,
    token: str,
    conn: ConnDep,
    settings: SettingsDep,
    _csrf: CsrfDep,
    stars: Annotated[int, Form(ge=1, le=5)],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Rate a resolved ticket from its status page; possible once."""
    if _limited(request, token, report=True):
        return _too_many(request)
    view = ticketing.status_view(conn, token, negotiate(request))
    if view is None:
        return _unknown_code(request)
    try:
        ticketing.rate_by_status(
            conn, settings, view.id, stars=stars, comment=comment.strip()
        )
    except (NotFound, Conflict):
        return message(request, "rate.title", "rate.invalid", status_code=410)
    conn.commit()
    return RedirectResponse(f"/t/{token}", status_code=303)


def rating_form(request: Request, token: str, conn: ConnDep) -> HTMLResponse:
    """The rating form behind a single-use rating link."""
    ticket_id = ticketing.rating_ticket_id(conn, token)
    if ticket_id is None:
        return _unknown_code(request)
    view = ticketing.ticket_view(conn, ticket_id, negotiate(request))
    pages: Pages = request.app.state.pages
    return pages.render(
        request,
        "public/status.html",
        {"ticket": view, "rate_action": f"/rate/{token}"},
    )


@router.get("/rate/{token}")
def rating_page(request: Request, token: str, conn: ConnDep) -> HTMLResponse:
    if _limited(request, token, report=False):
        return _too_many(request)
    return rating_form(request, token, conn)


@router.post("/rate/{token}")
def rate_by_link(
    *,
    request: Request,
    token: str,
    conn: ConnDep,
    settings: SettingsDep,
    _csrf: CsrfDep,
    stars: Annotated[int, Form(ge=1, le=5)],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record the reporter's 1-5 stars, spending the rating token."""
    if _limited(request, token, report=True):
        return _too_many(request)
    ticket_id = ticketing.rating_ticket_id(conn, token)
    if ticket_id is None:
        return message(request, "rate.title", "rate.invalid", status_code=410)
    try:
        ticketing.rate_by_token(
            conn, settings, token, stars=stars, comment=comment.strip()
        )
    except (NotFound, Conflict):
        return message(request, "rate.title", "rate.invalid", status_code=410)
    view = ticketing.ticket_view(conn, ticket_id, "zh")
    target = f"/t/{view.status_token}" if view else "/"
    conn.commit()
    return RedirectResponse(target, status_code=303)
