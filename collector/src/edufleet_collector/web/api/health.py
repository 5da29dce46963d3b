"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg import Error as PsycopgError
from psycopg_pool import PoolTimeout

from ..deps import get_pool

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Check that the service can reach its database")
def healthz(request: Request) -> JSONResponse:
    pool = get_pool(request)
    try:
        with pool.connection(timeout=5) as conn:
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except (PsycopgError, PoolTimeout) as exc:
        return JSONResponse(
            {"status": "error", "database": f"unreachable: {exc}"}, status_code=503
        )
    return JSONResponse(
        {"status": "ok", "database": "ok", "schema_version": row[0] if row else None}
    )
