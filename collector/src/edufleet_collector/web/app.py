"""The FastAPI application: API routes, pages and health checks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from psycopg_pool import ConnectionPool

from .. import __version__
from ..db.pool import open_pool
from ..errors import Conflict, InvalidInput, NotFound
from ..settings import Settings
from .api import (
    assignments,
    devices,
    engineers,
    health,
    imports,
    regions,
    rooms,
    schools,
)
from .api import enroll as enroll_api
from .api import tickets as tickets_api
from .deps import WEB_POOL_MIN_MAX
from .pages import install as install_pages

log = logging.getLogger("edufleet.collector.web")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse(
            {"detail": [{"loc": loc, "msg": str(exc), "type": "value_error"}]},
            status_code=422,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)


def create_app(settings: Settings, pool: ConnectionPool | None = None) -> FastAPI:
    """Build the app; it opens its own pool unless one is given (tests pass theirs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = pool is None
        app.state.pool = (
            pool
            if pool is not None
            else open_pool(
                settings,
                name="web",
                # Opened whole at start: growing under a burst opens one
                # connection at a time, and requests would queue for seconds.
                min_size=max(settings.db_pool_max_size, WEB_POOL_MIN_MAX),
                max_size=max(settings.db_pool_max_size, WEB_POOL_MIN_MAX),
            )
        )
        try:
            yield
        finally:
            if owned:
                app.state.pool.close()

    app = FastAPI(
        title="edufleet",
        version=__version__,
        description="School IT equipment: registry, tickets and dispatch.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if pool is not None:
        app.state.pool = pool
    _install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(imports.router)
    app.include_router(enroll_api.router)
    app.include_router(tickets_api.router)
    for module in (regions, schools, rooms, assignments, devices, engineers):
        app.include_router(module.router)
    install_pages(app, settings)
    app.mount("/metrics", make_asgi_app())
    return app
