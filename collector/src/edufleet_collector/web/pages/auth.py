"""Logging in and out of the staff pages, and who may open which page.

Failed logins are counted in the database (``login_failures``), so the
limits hold across every web process: after ``MAX_FAILURES_PER_NAME`` failures
for one account, or ``MAX_FAILURES_PER_IP`` from one address, within
``THROTTLE_WINDOW``, further attempts are refused until the window has passed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...accounts import (
    Principal,
    principal_for_user,
    revoke_sessions,
    verify_password,
)
from ..csrf import CsrfDep
from ..deps import SESSION_COOKIE, ConnDep, OptionalPrincipalDep
from ..i18n import negotiate, translator
from ..sessions import SessionSigner
from .render import Pages

log = logging.getLogger("edufleet.collector.web.auth")

THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_IP = 20

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """Raised by page dependencies when nobody is logged in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Raised when the logged-in user's role may not open a page."""


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def staff(request: Request, principal: OptionalPrincipalDep) -> Principal:
    """The logged-in user, or a redirect to the login page."""
    if principal is None:
        raise LoginRequired(request.url.path)
    request.state.principal = principal
    return principal


def require_engineer(principal: Annotated[Principal, Depends(staff)]) -> Principal:
    if principal.engineer_id is None:
        raise PageForbidden()
    return principal


def require_admin(principal: Annotated[Principal, Depends(staff)]) -> Principal:
    if not principal.is_admin:
        raise PageForbidden()
    return principal


StaffDep = Annotated[Principal, Depends(staff)]
EngineerDep = Annotated[Principal, Depends(require_engineer)]
PageAdminDep = Annotated[Principal, Depends(require_admin)]


def home_of(principal: Principal) -> str:
    return "/a" if principal.is_admin else "/e"


def _safe_next(value: str) -> str | None:
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


def _throttled(conn: ConnDep, name: str, ip: str | None) -> bool:
    row = conn.execute(
        """
        SELECT count(*) FILTER (WHERE user_name = %(name)s),
               count(*) FILTER (WHERE client_ip = %(ip)s::inet)
        FROM login_failures
        WHERE at > now() - %(window)s
          AND (user_name = %(name)s OR client_ip = %(ip)s::inet)
        """,
        {"name": name, "ip": ip, "window": THROTTLE_WINDOW},
    ).fetchone()
    by_name, by_ip = row if row else (0, 0)
    return int(by_name) >= MAX_FAILURES_PER_NAME or int(by_ip) >= MAX_FAILURES_PER_IP


def _login_page(
    request: Request, *, error: str = "", name: str = "", status_code: int = 200
) -> HTMLResponse:
    pages: Pages = request.app.state.pages
    return pages.render(
        request,
        "staff/login.html",
        {"error": error, "name": name, "next": request.query_params.get("next", "")},
        status_code=status_code,
    )


@router.get("/login")
def login_form(request: Request, principal: OptionalPrincipalDep) -> Response:
    if principal is not None:
        return RedirectResponse(home_of(principal), status_code=303)
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    conn: ConnDep,
    _csrf: CsrfDep,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "",
) -> Response:
    ip = client_ip(request)
    if _throttled(conn, name, ip):
        log.warning("login for %r from %s refused: too many failures", name, ip)
        minutes = int(THROTTLE_WINDOW.total_seconds() // 60)
        return _login_page(
            request,
            error=_translate(request, "login.throttled").format(minutes=minutes),
            name=name,
            status_code=429,
        )

    row = conn.execute(
        "SELECT id, password_hash FROM users WHERE name = %s AND active", [name]
    ).fetchone()
    if row is None or not verify_password(row[1], password):
        conn.execute(
            "INSERT INTO login_failures (user_name, client_ip) VALUES (%s, %s)",
            [name, ip],
        )
        log.warning("failed login for %r from %s", name, ip)
        conn.commit()
        return _login_page(
            request,
            error=_translate(request, "login.failed"),
            name=name,
            status_code=401,
        )

    conn.execute("DELETE FROM login_failures WHERE user_name = %s", [name])
    sessions: SessionSigner = request.app.state.sessions
    principal = principal_for_user(conn, int(row[0]))
    target = _safe_next(next_path) or (home_of(principal) if principal else "/")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(int(row[0])),
        max_age=sessions.max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    log.info("user %r logged in", name)
    conn.commit()
    return response


@router.post("/logout")
def logout(request: Request, conn: ConnDep, _csrf: CsrfDep) -> Response:
    """End the session on this device and every other: copied cookies too."""
    sessions: SessionSigner = request.app.state.sessions
    session = sessions.read(request.cookies.get(SESSION_COOKIE, ""))
    if session is not None:
        revoke_sessions(conn, user_id=session[0])
        conn.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _translate(request: Request, key: str) -> str:
    return translator(negotiate(request))(key)
