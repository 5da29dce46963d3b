"""Small builders for the registry's list filters and partial updates."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql
from psycopg.rows import TupleRow

from ..accounts import Principal
from ..db import Conn
from .pagination import Page

_ID = sql.SQL("id")


class Where:
    """A conjunction of conditions and their parameters, in order."""

    def __init__(self) -> None:
        self._parts: list[sql.Composable] = []
        self.params: list[object] = []

    def add(self, condition: str | sql.Composable, *params: object) -> Where:
        self._parts.append(
            sql.SQL(condition) if isinstance(condition, str) else condition
        )
        self.params.extend(params)
        return self

    def scope(self, principal: Principal, column: str) -> Where:
        condition, params = principal.school_condition(column)
        return self.add(condition, *params)

    def page(self, page: Page, column: str) -> Where:
        if page.after is not None:
            self.add(sql.SQL("{} > %s").format(_ident(column)), page.after)
        return self

    def compose(self) -> sql.Composed:
        if not self._parts:
            return sql.Composed([sql.SQL("true")])
        return sql.SQL(" AND ").join(sql.SQL("({})").format(p) for p in self._parts)


def _ident(column: str) -> sql.Identifier:
    return sql.Identifier(*column.split("."))


def set_clause(changes: Mapping[str, object]) -> tuple[sql.Composable, list[object]]:
    """``col = %s, ...`` for the given columns, plus ``updated_at = now()``."""
    parts: list[sql.Composable] = [
        sql.SQL("{} = %s").format(sql.Identifier(c)) for c in changes
    ]
    parts.append(sql.SQL("updated_at = now()"))
    return sql.SQL(", ").join(parts), list(changes.values())


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def insert_row(
    conn: Conn,
    table: str,
    values: Mapping[str, object],
    returning: sql.Composable = _ID,
) -> TupleRow:
    """INSERT one row, answering the ``returning`` columns (aliased by the
    table's first letter, as the services' column lists are)."""
    row = conn.execute(
        sql.SQL("INSERT INTO {} AS {} ({}) VALUES ({}) RETURNING {}").format(
            sql.Identifier(table),
            sql.Identifier(table[0]),
            sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(sql.Placeholder() * len(values)),
            returning,
        ),
        list(values.values()),
    ).fetchone()
    if row is None:
        raise LookupError(f"INSERT INTO {table} returned no row")
    return row


def update_row(
    conn: Conn,
    table: str,
    row_id: int,
    changes: Mapping[str, object],
    returning: sql.Composable = _ID,
) -> TupleRow | None:
    """UPDATE the given columns of one row by id and stamp ``updated_at``."""
    assignments, params = set_clause(changes)
    return conn.execute(
        sql.SQL("UPDATE {} AS {} SET {} WHERE {}.id = %s RETURNING {}").format(
            sql.Identifier(table),
            sql.Identifier(table[0]),
            assignments,
            sql.Identifier(table[0]),
            returning,
        ),
        [*params, row_id],
    ).fetchone()
