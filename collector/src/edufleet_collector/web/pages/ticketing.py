"""What the pages read about tickets, and the calls they make to change them.

Reads are plain queries shaped for the pages. Every change goes through the
tickets service, so a QR report follows the same path as an agent's fault:
dedup, dispatch, SLA clocks and notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...db import Conn
from ...db.conflicts import retry_on_conflict
from ...errors import NotFound
from ...settings import Settings
from ...tickets import service
from ...tickets.model import TicketConfig, colour_of
from .uploads import StoredPhoto

REPORTER_ACTOR = "reporter"


@dataclass(frozen=True)
class TicketView:
    """A ticket as the public pages show it: no personal data."""

    id: int
    status: str
    status_token: str
    engineer: str
    visit_at: datetime | None
    reported_at: datetime
    me_too_count: int
    category: str
    school: str
    room: str
    asset_tag: str
    symptom: str
    resolution: str
    rating: dict[str, Any] | None

    @property
    def colour(self) -> str:
        return colour_of(self.status)

    @property
    def rateable(self) -> bool:
        return self.status == "resolved" and self.rating is None


_VIEW_SQL = """
    SELECT t.id, t.status, t.status_token, coalesce(e.name, ''), t.visit_at,
           t.reported_at, t.me_too_count,
           CASE WHEN %(lang)s = 'en' THEN c.name_en ELSE c.name_zh END,
           s.name, coalesce(r.name, ''), coalesce(d.asset_tag, ''),
           coalesce(CASE WHEN %(lang)s = 'en' THEN cs.name_en ELSE cs.name_zh END,
                    t.symptom, ''),
           coalesce(t.resolution_code, ''),
           (SELECT json_build_object('stars', tr.stars)
            FROM ticket_ratings tr WHERE tr.ticket_id = t.id)
    FROM tickets t
    JOIN schools s ON s.id = t.school_id
    LEFT JOIN devices d ON d.id = t.device_id
    LEFT JOIN device_categories c ON c.code = d.category
    LEFT JOIN category_symptoms cs ON cs.category = d.category AND cs.code = t.symptom
    LEFT JOIN rooms r ON r.id = t.room_id
    LEFT JOIN engineers e ON e.id = t.engineer_id
"""


def _view(row: tuple[Any, ...] | None) -> TicketView | None:
    if row is None:
        return None
    return TicketView(
        id=int(row[0]),
        status=str(row[1]),
        status_token=str(row[2]),
        engineer=str(row[3]),
        visit_at=row[4],
        reported_at=row[5],
        me_too_count=int(row[6]),
        category=str(row[7] or ""),
        school=str(row[8]),
        room=str(row[9]),
        asset_tag=str(row[10]),
        symptom=str(row[11]),
        resolution=str(row[12]),
        rating=row[13],
    )


def open_ticket_of_device(conn: Conn, device_id: int, lang: str) -> TicketView | None:
    """The device's open ticket (the one a new report would join), or None."""
    row = conn.execute(
        _VIEW_SQL
        + """
        WHERE t.device_id = %(device)s AND t.kind = 'device'
          AND ticket_is_open(t.status) AND t.merged_into IS NULL
        ORDER BY t.parent_id IS NOT NULL, t.id LIMIT 1
        """,
        {"device": device_id, "lang": lang},
    ).fetchone()
    return _view(row)


def status_view(conn: Conn, token: str, lang: str) -> TicketView | None:
    """The ticket behind a status token; a merged ticket shows the one it joined."""
    if not 16 <= len(token) <= 64:
        return None
    row = conn.execute(
        _VIEW_SQL
        + """
        WHERE t.id = (
            SELECT coalesce(m.merged_into, m.id) FROM tickets m
            WHERE m.status_token = %(token)s
        )
        """,
        {"token": token, "lang": lang},
    ).fetchone()
    return _view(row)


def ticket_view(conn: Conn, ticket_id: int, lang: str) -> TicketView | None:
    row = conn.execute(
        _VIEW_SQL + " WHERE t.id = %(id)s", {"id": ticket_id, "lang": lang}
    ).fetchone()
    return _view(row)


def _config(settings: Settings) -> TicketConfig:
    return TicketConfig.from_settings(settings)


def report_fault(
    conn: Conn,
    settings: Settings,
    *,
    device_id: int,
    symptom: str,
    title: str,
    description: str,
    reporter_name: str,
    reporter_phone: str,
    photo: StoredPhoto | None,
) -> str:
    """Create a ticket from a QR report (or join the open one); its status token."""
    data: dict[str, Any] = {}
    if photo is not None:
        data["photo"] = {
            "name": photo.name,
            "content_type": photo.content_type,
            "size": photo.size,
        }
    outcome = retry_on_conflict(
        conn,
        lambda: service.open_ticket(
            conn,
            source="qr",
            device_id=device_id,
            actor=REPORTER_ACTOR,
            now=datetime.now(UTC),
            symptom=symptom,
            title=title,
            description=description,
            reporter_name=reporter_name,
            reporter_phone=reporter_phone,
            data=data,
            config=_config(settings),
        ),
        what=f"a QR report on device {device_id}",
    )
    return outcome.ticket.status_token


def me_too(conn: Conn, *, ticket_id: int) -> None:
    """One more teacher has the same problem with the device."""
    retry_on_conflict(
        conn,
        lambda: service.add_me_too(
            conn, ticket_id, actor=REPORTER_ACTOR, now=datetime.now(UTC), source="qr"
        ),
        what=f"a 'me too' on ticket {ticket_id}",
    )


def rate_by_status(
    conn: Conn, settings: Settings, ticket_id: int, *, stars: int, comment: str
) -> None:
    """Rate from the status page: the status link itself is the authority, and a
    rating token is spent at once; a rated ticket is closed, so this works once."""
    now = datetime.now(UTC)
    token = service.issue_rating_token(conn, ticket_id, now)
    service.rate(conn, token, stars, comment, now=now, config=_config(settings))


def rate_by_token(
    conn: Conn, settings: Settings, token: str, *, stars: int, comment: str
) -> None:
    """Rate through the single-use link sent to the reporter."""
    service.rate(
        conn, token, stars, comment, now=datetime.now(UTC), config=_config(settings)
    )


def rating_ticket_id(conn: Conn, token: str) -> int | None:
    """The ticket of a usable rating token, or None."""
    if not 16 <= len(token) <= 64:
        return None
    try:
        return service.rating_ticket(conn, token, datetime.now(UTC)).id
    except NotFound:
        return None
