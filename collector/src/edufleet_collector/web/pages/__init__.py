"""The HTML pages: teachers' QR pages, engineers' queue, the admin pages."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from ...settings import Settings
from ..csrf import CsrfTokens
from ..i18n import negotiate, translator
from ..ratelimit import RateLimiter
from ..sessions import SessionSigner
from . import auth, public
from .admin import router as admin_router
from .engineer import router as engineer_router
from .render import BodyLimit, Pages, SecurityHeaders

_API_PREFIXES = ("/api/", "/healthz", "/metrics", "/docs", "/redoc", "/openapi.json")


def install(app: FastAPI, settings: Settings) -> None:
    """Add the pages, their session, CSRF and rate-limit state and their headers."""
    secret = settings.secret_key.get_secret_value()
    pages = Pages(secret)
    app.state.pages = pages
    app.state.sessions = SessionSigner(secret)
    app.state.csrf = CsrfTokens(secret)
    app.state.rate_limiter = RateLimiter()

    app.include_router(public.router)
    app.include_router(auth.router)
    app.include_router(engineer_router)
    app.include_router(admin_router)

    app.add_middleware(BodyLimit)
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(
        SecurityHeaders, content_security_policy=pages.content_security_policy
    )

    @app.exception_handler(auth.LoginRequired)
    async def _login_required(request: Request, exc: auth.LoginRequired) -> Response:
        target = "/login?" + urlencode({"next": exc.next_path})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(auth.PageForbidden)
    async def _forbidden(request: Request, exc: auth.PageForbidden) -> Response:
        return public.message(request, "error.title", "error.title", status_code=404)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(_API_PREFIXES):
            return await http_exception_handler(request, exc)
        t = translator(negotiate(request))
        body = t("error.forbidden") if exc.status_code == 403 else str(exc.detail)
        return pages.render(
            request,
            "message.html",
            {"title": t("error.title"), "body": body},
            status_code=exc.status_code,
        )
