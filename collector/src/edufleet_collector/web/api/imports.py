"""Asset ledger upload for the admin pages: ``POST /api/v1/imports/assets``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, UploadFile
from fastapi.responses import JSONResponse

from ...accounts import Principal
from ...db import Conn
from ...registry.ledger import import_ledger
from ..deps import AdminDep, ConnDep

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest ledger accepted: about 200,000 rows of CSV."""

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])

_REPORT_EXAMPLE = {
    "ok": False,
    "summary": {"rows_read": 2, "created": 0, "updated": 0, "unchanged": 0},
    "errors": [
        {
            "line": 3,
            "column": "金额",
            "value": "-12",
            "reason": "price -12.00 is negative; amounts must be ≥ 0",
        }
    ],
}


@router.post(
    "/assets",
    summary="Import an asset ledger (CSV or .xlsx): every row or none",
    responses={
        200: {"description": "imported (or checked, with dry_run)"},
        404: {"description": "the school does not exist or is outside your scope"},
        413: {"description": f"the file is larger than {MAX_UPLOAD_BYTES} bytes"},
        422: {
            "description": "the ledger has bad rows; nothing was written",
            "content": {"application/json": {"example": _REPORT_EXAMPLE}},
        },
    },
)
def import_assets(
    principal: AdminDep,
    conn: ConnDep,
    file: UploadFile,
    school: Annotated[str | None, Form(description="school code for every row")] = None,
    dry_run: Annotated[bool, Form(description="check and count only")] = False,
) -> JSONResponse:
    """Check an uploaded ledger and, if every row is good, import it.

    The caller's scope decides what may be imported: a ``school`` outside it is
    404, as if it did not exist; rows naming a school outside it, or moving a
    device out of a school outside it, are row errors (422). A school admin's
    rows go to their own school unless ``school`` says otherwise.
    """
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return JSONResponse(
            {
                "detail": f"the ledger file is larger than the "
                f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB upload limit; "
                "split it into several files and import each"
            },
            status_code=413,
        )

    report = import_ledger(
        conn,
        data,
        file.filename or "ledger.csv",
        school_code=school or _own_school_code(conn, principal),
        dry_run=dry_run,
        scope=principal.school_ids,
    )
    # Commit before answering, so a client that reads back sees the devices.
    conn.commit()
    return JSONResponse(report.as_dict(), status_code=200 if report.ok else 422)


def _own_school_code(conn: Conn, principal: Principal) -> str | None:
    if principal.school_id is None:
        return None
    row = conn.execute(
        "SELECT code FROM schools WHERE id = %s", [principal.school_id]
    ).fetchone()
    return str(row[0]) if row else None
