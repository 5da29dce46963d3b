"""Reporters' personal data under PIPL: who may see it, masking, audit, purge.

A reporter's name and phone number are shown in full only to the engineer the
ticket is assigned to and to admins whose scope holds the ticket's school;
every such read is written to ``audit_log``. Everyone else sees them masked.
Once a ticket has been closed (or cancelled) for the retention period, the
worker erases them, and deletes the report's photo.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from psycopg.types.json import Jsonb

from .accounts import Principal
from .db import Conn
from .photos import photo_path

log = logging.getLogger("edufleet.collector.privacy")


def mask_name(name: str) -> str:
    """Keep the first character: 张三 becomes 张*, Li Wei becomes L*****."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str) -> str:
    """Keep the first three and last four digits: 138****5678."""
    digits = phone.strip()
    if not digits:
        return ""
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def may_see_personal_data(
    principal: Principal, *, school_id: int, engineer_id: int | None
) -> bool:
    """The ticket's own engineer, and admins whose scope holds its school."""
    if principal.engineer_id is not None and principal.engineer_id == engineer_id:
        return True
    return principal.is_admin and principal.allows_school(school_id)


def audit_personal_read(
    conn: Conn,
    principal: Principal,
    *,
    ticket_id: int,
    fields: tuple[str, ...] = ("reporter_name", "reporter_phone"),
    client_ip: str | None = None,
) -> None:
    """Record that ``principal`` was shown a ticket's reporter data."""
    conn.execute(
        "INSERT INTO audit_log (user_id, action, object_type, object_id, detail, "
        "client_ip) VALUES (%s, 'read_personal_data', 'ticket', %s, %s, %s)",
        [principal.user_id, str(ticket_id), Jsonb({"fields": list(fields)}), client_ip],
    )


def purge_personal_data(
    conn: Conn,
    *,
    retention_days: int,
    now: datetime | None = None,
    upload_dir: str | None = None,
) -> int:
    """Erase reporters' names, phones and photos of tickets finished over
    ``retention_days`` ago; return how many tickets were purged.

    Photo files are deleted from ``upload_dir`` (when given) as soon as their
    tickets no longer name them.
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    rows = conn.execute(
        """
        WITH due AS (
            SELECT id, data -> 'photo' ->> 'name' AS photo
            FROM tickets
            WHERE reporter_purged_at IS NULL
              AND (reporter_name <> '' OR reporter_phone <> '' OR data ? 'photo')
              AND status IN ('closed', 'cancelled')
              AND coalesce(closed_at, updated_at) < %(cutoff)s
            FOR UPDATE
        )
        UPDATE tickets t
        SET reporter_name = '', reporter_phone = '', reporter_purged_at = %(now)s,
            data = t.data - 'photo'
        FROM due
        WHERE t.id = due.id
        RETURNING t.id, due.photo
        """,
        {"now": now, "cutoff": cutoff},
    ).fetchall()
    photos = 0
    for _, name in rows:
        path = photo_path(upload_dir, name) if upload_dir and name else None
        if path is not None:
            try:
                path.unlink()
                photos += 1
            except OSError as exc:
                log.warning(
                    "could not delete the purged photo %s: %s; delete it by hand",
                    path,
                    exc.strerror,
                )
    if rows:
        log.info(
            "erased reporter data of %d ticket(s) closed before %s, %d photo(s)",
            len(rows),
            cutoff.isoformat(),
            photos,
        )
    return len(rows)
