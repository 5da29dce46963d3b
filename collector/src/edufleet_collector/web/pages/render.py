"""Templates, the inline style sheet and the headers every page is sent with.

Pages carry their CSS inline, so a teacher's phone gets the landing page in
one round trip; the Content-Security-Policy names that style sheet by its
hash and allows no script at all.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..csrf import CSRF_COOKIE, CsrfTokens, browser_value
from ..i18n import LANG_COOKIE, LANGUAGES, negotiate, translator

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
_DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


def _local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Times are shown in China Standard Time, where every school is."""
    if value is None:
        return ""
    return value.astimezone(LOCAL_ZONE).strftime(fmt)


class Pages:
    """The template environment of the HTML pages."""

    def __init__(self, secret_key: str) -> None:
        self.env = Environment(
            loader=PackageLoader("edufleet_collector.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["local"] = _local_time
        css = (
            resources.files("edufleet_collector.web")
            .joinpath("static/site.css")
            .read_text(encoding="utf-8")
        )
        self.css = Markup(css)
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        self.content_security_policy = (
            "default-src 'none'; "
            f"style-src 'sha256-{digest}'; "
            "img-src 'self' data:; "
            "form-action 'self'; "
            "frame-ancestors 'none'; "
            "base-uri 'none'"
        )
        self.csrf = CsrfTokens(secret_key)

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        """Render a page in the request's language, with its CSRF token."""
        lang = negotiate(request)
        csrf_value = browser_value(request)
        values: dict[str, Any] = {
            "t": translator(lang),
            "lang": lang,
            "other_lang": next(code for code in LANGUAGES if code != lang),
            "css": self.css,
            "csrf_token": self.csrf.token_for(csrf_value),
            "path": request.url.path,
            "principal": getattr(request.state, "principal", None),
        }
        values.update(context or {})
        body = self.env.get_template(template).render(values)
        response = HTMLResponse(body, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        if getattr(request.state, "csrf_new", False):
            response.set_cookie(
                CSRF_COOKIE,
                csrf_value,
                httponly=True,
                samesite="lax",
                secure=_https(request),
            )
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return response


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


class SecurityHeaders:
    """ASGI middleware adding the security headers to every response."""

    def __init__(self, app: ASGIApp, *, content_security_policy: str) -> None:
        self.app = app
        self.csp = content_security_policy.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = not str(scope.get("path", "")).startswith(_DOC_PATHS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if with_csp:
                    headers.append((b"content-security-policy", self.csp))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


MAX_FORM_BYTES = 25 * 1024 * 1024
"""No page form is larger (a ledger file is at most 20 MB)."""


class BodyLimit:
    """ASGI middleware refusing a page form whose declared size is over the
    limit, before a byte of it is read. The API routes set their own limits."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_FORM_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope.get("path", "")).startswith(
            "/api/"
        ):
            for name, value in scope.get("headers", []):
                if name == b"content-length" and value.isdigit():
                    if int(value) > self.max_bytes:
                        response = PlainTextResponse(
                            f"the request body of {int(value):,} bytes exceeds the "
                            f"{self.max_bytes:,}-byte limit; send a smaller file",
                            status_code=413,
                            headers={"Connection": "close"},
                        )
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
