"""Write checked ledger rows: COPY into a staging table, then set-based upserts.

The whole write is one transaction (a savepoint when the caller already has
one). Rows are matched to devices by asset tag; a device counts as updated only
when one of the columns the file carries differs (``IS DISTINCT FROM``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..db import Conn
from .codes import new_device_code
from .ledger_rows import LedgerRow, RowError

_DEVICE_COLUMNS = (
    "name",
    "category",
    "brand",
    "model",
    "serial",
    "school_id",
    "room_id",
    "purchase_date",
    "price",
    "warranty_until",
)
_STAGING_COLUMNS = (
    "line",
    "asset_tag",
    *("room_name" if c == "room_id" else c for c in _DEVICE_COLUMNS),
    "code",
)
"""The staging table's columns, in the order ``_stage`` writes them."""


@dataclass
class WriteCounts:
    created: int = 0
    updated: int = 0
    rooms_created: int = 0
    moved: int = 0


def write_rows(
    conn: Conn,
    rows: list[LedgerRow],
    *,
    present: set[str],
    tag_header: str,
    scope: frozenset[int] | None,
    dry_run: bool,
    lap: Callable[[str], None],
) -> tuple[WriteCounts, list[RowError]]:
    """Stage and upsert ``rows``; nothing stays written on an error or a dry run.

    ``present`` names the fields the file has columns for: only those (and the
    school) are updated on existing devices. ``lap`` is called after each phase.
    """
    counts = WriteCounts()
    errors: list[RowError] = []
    with conn.transaction():
        _stage(conn, rows)
        lap("copy")

        if scope is not None:
            errors = _moves_out_of_scope(conn, scope, tag_header)
        counts.moved = _count(
            conn,
            "SELECT count(*) FROM ledger_staging s JOIN devices d USING (asset_tag) "
            "WHERE d.school_id <> s.school_id",
        )
        lap("validate")
        if errors or dry_run:
            if not errors:
                _count_changes(conn, present, counts)
                lap("upsert")
            raise psycopg.Rollback()

        _upsert(conn, present, counts)
        lap("upsert")
    return counts, errors


def _stage(conn: Conn, rows: list[LedgerRow]) -> None:
    conn.execute("DROP TABLE IF EXISTS pg_temp.ledger_staging")
    conn.execute(
        """
        CREATE TEMP TABLE ledger_staging (
            line int NOT NULL,
            asset_tag text NOT NULL,
            name text NOT NULL,
            category text NOT NULL,
            brand text NOT NULL,
            model text NOT NULL,
            serial text NOT NULL,
            school_id bigint NOT NULL,
            room_name text,
            purchase_date date,
            price numeric(12, 2),
            warranty_until date,
            code text NOT NULL
        ) ON COMMIT DROP
        """
    )
    copy_sql = sql.SQL("COPY ledger_staging ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, _STAGING_COLUMNS))
    )
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for r in rows:
            # Every row gets a label code; only new devices keep theirs.
            copy.write_row(
                (
                    r.line,
                    r.asset_tag,
                    r.name,
                    r.category,
                    r.brand,
                    r.model,
                    r.serial,
                    r.school_id,
                    r.room_name,
                    r.purchase_date,
                    r.price,
                    r.warranty_until,
                    new_device_code(),
                )
            )
    conn.execute("ANALYZE ledger_staging")


def _moves_out_of_scope(
    conn: Conn, scope: frozenset[int], tag_header: str
) -> list[RowError]:
    found = conn.execute(
        """
        SELECT s.line, s.asset_tag, sc.code, sc.name
        FROM ledger_staging s
        JOIN devices d USING (asset_tag)
        JOIN schools sc ON sc.id = d.school_id
        WHERE d.school_id <> ALL(%s)
        ORDER BY s.line
        """,
        [list(scope)],
    ).fetchall()
    return [
        RowError(
            int(line),
            tag_header,
            str(tag),
            f"asset tag {tag!r} is registered to school {code} ({name}), outside "
            "your scope; only an admin who covers both schools can move it",
            "该设备登记在您管理范围以外的学校，不能调入",
        )
        for line, tag, code, name in found
    ]


def _count(conn: Conn, query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _updated_columns(present: set[str]) -> list[str]:
    """Device columns an import may change: those the file has, plus the school."""
    keep = {"school_id", "category"}
    for key in present:
        keep.add("room_id" if key == "room" else key)
    return [c for c in _DEVICE_COLUMNS if c in keep]


def _changed(columns: list[str], old: str, new: str) -> sql.Composable:
    """``(old.a, old.b) IS DISTINCT FROM (new.a, new.b)`` over ``columns``."""

    def tuple_of(alias: str) -> sql.Composable:
        return sql.SQL("({})").format(
            sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns)
        )

    return sql.SQL("{} IS DISTINCT FROM {}").format(tuple_of(old), tuple_of(new))


def _new_rows(*, rooms_exist: bool) -> sql.Composable:
    """The staged rows as device columns, with the room resolved to its id.

    Before the rooms are created (a dry run), a room still to be created gets
    the id -1, so that a device moving into it counts as changed.
    """
    room = (
        "r.id"
        if rooms_exist
        else ("CASE WHEN s.room_name IS NOT NULL THEN coalesce(r.id, -1) END")
    )
    return sql.SQL(
        """
        SELECT s.asset_tag, s.name, s.category, s.brand, s.model, s.serial,
               s.school_id, {room} AS room_id, s.purchase_date, s.price,
               s.warranty_until
        FROM ledger_staging s
        LEFT JOIN rooms r ON r.school_id = s.school_id AND r.name = s.room_name
        """
    ).format(room=sql.SQL(room))


def _upsert(conn: Conn, present: set[str], counts: WriteCounts) -> None:
    counts.rooms_created = conn.execute(
        """
        INSERT INTO rooms (school_id, name)
        SELECT DISTINCT school_id, room_name FROM ledger_staging
        WHERE room_name IS NOT NULL
        ON CONFLICT (school_id, name) DO NOTHING
        """
    ).rowcount

    columns = _updated_columns(present)
    assignments: list[sql.Composable] = [
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in columns
    ]
    if "room_id" not in columns:
        # A device moved to another school cannot stay in the old school's room.
        assignments.append(
            sql.SQL(
                "room_id = CASE WHEN devices.school_id = EXCLUDED.school_id "
                "THEN devices.room_id END"
            )
        )
    assignments.append(sql.SQL("updated_at = now()"))
    # Rows equal to their device are left out before the upsert, so that an
    # unchanged re-import neither locks nor rewrites them; the rest go in in
    # asset-tag order, which keeps the unique index's inserts close together.
    statement = sql.SQL(
        """
        WITH upserted AS (
            INSERT INTO devices (asset_tag, {insert_columns})
            SELECT {new_columns}
            FROM ({new_rows}) new
            LEFT JOIN devices old USING (asset_tag)
            WHERE old.id IS NULL OR {differs}
            ORDER BY new.asset_tag
            ON CONFLICT (asset_tag) DO UPDATE SET {assignments}
            WHERE {changed}
            RETURNING id, asset_tag, xmax = 0 AS created
        ),
        labelled AS (
            INSERT INTO device_codes (code, device_id)
            SELECT s.code, u.id
            FROM upserted u JOIN ledger_staging s USING (asset_tag)
            WHERE u.created
        )
        SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created)
        FROM upserted
        """
    ).format(
        insert_columns=sql.SQL(", ").join(map(sql.Identifier, _DEVICE_COLUMNS)),
        new_columns=sql.SQL(", ").join(
            sql.Identifier("new", c) for c in ("asset_tag", *_DEVICE_COLUMNS)
        ),
        new_rows=_new_rows(rooms_exist=True),
        differs=_changed(columns, "old", "new"),
        assignments=sql.SQL(", ").join(assignments),
        changed=_changed(columns, "devices", "excluded"),
    )
    row = conn.execute(statement).fetchone()
    counts.created, counts.updated = (int(row[0]), int(row[1])) if row else (0, 0)


def _count_changes(conn: Conn, present: set[str], counts: WriteCounts) -> None:
    """What an import would do, computed without writing (for a dry run)."""
    counts.rooms_created = _count(
        conn,
        """
        SELECT count(*) FROM (
            SELECT DISTINCT school_id, room_name FROM ledger_staging
            WHERE room_name IS NOT NULL
        ) n
        WHERE NOT EXISTS (
            SELECT 1 FROM rooms r
            WHERE r.school_id = n.school_id AND r.name = n.room_name
        )
        """,
    )
    statement = sql.SQL(
        """
        SELECT count(*) FILTER (WHERE old.id IS NULL),
               count(*) FILTER (WHERE old.id IS NOT NULL AND {changed})
        FROM ({new_rows}) new
        LEFT JOIN devices old USING (asset_tag)
        """
    ).format(
        new_rows=_new_rows(rooms_exist=False),
        changed=_changed(_updated_columns(present), "old", "new"),
    )
    row = conn.execute(statement).fetchone()
    counts.created, counts.updated = (int(row[0]), int(row[1])) if row else (0, 0)
