"""How far each analytics job has got, in ``analytics_watermarks``."""

from __future__ import annotations

from datetime import datetime

from ..db import Conn


def watermark(conn: Conn, name: str) -> datetime | None:
    """The moment the job ``name`` last computed up to; None if it never ran."""
    row = conn.execute(
        "SELECT done_until FROM analytics_watermarks WHERE name = %s", [name]
    ).fetchone()
    return row[0] if row else None


def set_watermark(conn: Conn, name: str, moment: datetime) -> None:
    conn.execute(
        "INSERT INTO analytics_watermarks (name, done_until) VALUES (%s, %s) "
        "ON CONFLICT (name) DO UPDATE SET done_until = excluded.done_until",
        [name, moment],
    )
