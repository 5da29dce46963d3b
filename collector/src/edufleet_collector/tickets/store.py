"""SQL of the tickets and their event log, shared by the ticket services."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from ..db import Conn
from ..errors import NotFound
from .model import TICKET_COLUMNS, Ticket, TicketEvent

_SELECT = sql.SQL("SELECT {} FROM tickets").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in TICKET_COLUMNS)
)


def ticket_from_row(row: tuple[Any, ...]) -> Ticket:
    return Ticket(*row)


def load_ticket(conn: Conn, ticket_id: int, *, lock: bool = False) -> Ticket:
    """One ticket; with ``lock`` its row is held FOR UPDATE until commit."""
    query = _SELECT + sql.SQL(" WHERE id = %s")
    if lock:
        query += sql.SQL(" FOR UPDATE")
    row = conn.execute(query, [ticket_id]).fetchone()
    if row is None:
        raise NotFound(f"ticket {ticket_id} does not exist")
    return ticket_from_row(row)


def find_tickets(
    conn: Conn, where: sql.Composable, params: list[Any], *, tail: str = ""
) -> list[Ticket]:
    query = _SELECT + sql.SQL(" WHERE ") + where + sql.SQL(" " + tail)
    return [ticket_from_row(r) for r in conn.execute(query, params)]


def update_ticket(
    conn: Conn, ticket_id: int, changes: Mapping[str, Any], now: datetime
) -> Ticket:
    """Set columns of a ticket (updated_at too) and return the new row."""
    values = dict(changes)
    values["updated_at"] = now
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values
    )
    query = (
        sql.SQL("UPDATE tickets SET ")
        + assignments
        + sql.SQL(" WHERE id = %s RETURNING ")
        + sql.SQL(", ").join(sql.Identifier(c) for c in TICKET_COLUMNS)
    )
    params = [_adapt(v) for v in values.values()] + [ticket_id]
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise NotFound(f"ticket {ticket_id} does not exist")
    return ticket_from_row(row)


def insert_ticket(conn: Conn, values: Mapping[str, Any]) -> Ticket:
    columns = list(values)
    query = sql.SQL("INSERT INTO tickets ({}) VALUES ({}) RETURNING ").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    ) + sql.SQL(", ").join(sql.Identifier(c) for c in TICKET_COLUMNS)
    row = conn.execute(query, [_adapt(v) for v in values.values()]).fetchone()
    assert row is not None
    return ticket_from_row(row)


def add_event(
    conn: Conn,
    ticket_id: int,
    *,
    at: datetime,
    actor: str,
    kind: str,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str = "",
    data: Mapping[str, Any] | None = None,
) -> int:
    """Append one event to a ticket's log and return its id."""
    row = conn.execute(
        """
        INSERT INTO ticket_events
            (ticket_id, at, actor, kind, from_status, to_status, note, data)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING id
        """,
        [
            ticket_id,
            at,
            actor,
            kind,
            from_status,
            to_status,
            note,
            Jsonb(dict(data or {})),
        ],
    ).fetchone()
    assert row is not None
    return int(row[0])


def list_events(conn: Conn, ticket_id: int) -> list[TicketEvent]:
    rows = conn.execute(
        "SELECT id, ticket_id, at, actor, kind, from_status, to_status, note, data "
        "FROM ticket_events WHERE ticket_id = %s ORDER BY at, id",
        [ticket_id],
    ).fetchall()
    return [TicketEvent(*r) for r in rows]


def _adapt(value: Any) -> Any:
    if isinstance(value, dict | list):
        return Jsonb(value)
    return value
