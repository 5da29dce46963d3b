"""Import a school's asset ledger (资产台账) into the registry, all or nothing.

``import_ledger`` reads a CSV or .xlsx ledger, checks every row, and only when
no row is bad copies the rows into a staging table and upserts them by asset
tag in set-based SQL: missing rooms are created, new devices get a QR label
code, and devices whose values did not change are left alone. The report lists
every bad row, so a clerk can fix the file in one go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import psycopg
from psycopg import sql

from ..db import Conn
from ..errors import NotFound
from .codes import new_device_code
from .ledger_fields import (
    FIELDS,
    FIELDS_BY_KEY,
    CategoryMap,
    CellError,
    accepted_names,
    cell_text,
    check_length,
    field_of_header,
    fold,
    header_columns,
    parse_amount,
    parse_date,
)
from .ledger_read import HEADER_SEARCH_ROWS, Cell, LedgerFileError, read_ledger

log = logging.getLogger("edufleet.collector.registry.ledger")

TOTAL_WORDS = frozenset({"合计", "总计", "小计", "total", "sum"})

_TEXT_KEYS = ("name", "brand", "model", "serial")
_DATE_KEYS = ("purchase_date", "warranty_until")
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
    "name",
    "category",
    "brand",
    "model",
    "serial",
    "school_id",
    "room_name",
    "purchase_date",
    "price",
    "warranty_until",
    "code",
)


@dataclass(frozen=True)
class RowError:
    """One problem: the spreadsheet line, the column as headed in the file, why."""

    line: int | None
    column: str | None
    value: str | None
    reason: str
    reason_zh: str

    def as_dict(self) -> dict[str, object]:
        return {
            "line": self.line,
            "column": self.column,
            "value": self.value,
            "reason": self.reason,
            "reason_zh": self.reason_zh,
        }


@dataclass
class ImportSummary:
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rooms_created: int = 0
    moved: int = 0
    dry_run: bool = False
    file_kind: str = ""
    encoding: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return sum(self.seconds.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rooms_created": self.rooms_created,
            "moved": self.moved,
            "dry_run": self.dry_run,
            "file_kind": self.file_kind,
            "encoding": self.encoding,
            "columns": self.columns,
            "ignored_columns": self.ignored_columns,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "elapsed_seconds": round(self.elapsed, 4),
        }


@dataclass
class ImportReport:
    """What an import did, or every reason it did nothing."""

    summary: ImportSummary
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "summary": self.summary.as_dict(),
            "errors": [e.as_dict() for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class LedgerRow:
    line: int
    asset_tag: str
    name: str
    category: str
    brand: str
    model: str
    serial: str
    school_id: int
    room_name: str | None
    purchase_date: date | None
    price: Decimal | None
    warranty_until: date | None


@dataclass(frozen=True)
class _School:
    id: int
    code: str
    name: str


class _Clock:
    """Adds up the seconds spent in each phase of an import."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self._mark = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._mark
        self._mark = now


def import_ledger(
    conn: Conn,
    data: bytes,
    filename: str,
    *,
    school_code: str | None = None,
    dry_run: bool = False,
    scope: frozenset[int] | None = None,
) -> ImportReport:
    """Validate a ledger file and, if every row is good, upsert it in one transaction.

    ``school_code`` puts every row in that school, ignoring any school column.
    ``scope`` limits the schools rows may name and the schools devices may be
    moved out of (None: every school). Raises ``NotFound`` when ``school_code``
    names no school in scope; every other problem is reported, not raised.
    """
    summary = ImportSummary(dry_run=dry_run)
    report = ImportReport(summary)
    clock = _Clock(summary.seconds)

    schools = _load_schools(conn)
    fixed_school = _fixed_school(schools, school_code, scope)
    categories = CategoryMap(
        conn.execute(
            "SELECT code, name_zh, name_en FROM device_categories ORDER BY code"
        ).fetchall()
    )
    try:
        sheet = read_ledger(data, filename, is_header=_is_header)
        summary.file_kind, summary.encoding = sheet.kind, sheet.encoding
        raw_rows = list(sheet.rows)
    except LedgerFileError as exc:
        report.errors.append(RowError(exc.line, None, None, str(exc), exc.zh))
        return report
    clock.lap("read")

    rows = _parse_rows(
        raw_rows,
        report,
        schools=schools,
        fixed_school=fixed_school,
        categories=categories,
        scope=scope,
    )
    clock.lap("parse")
    if not report.ok:
        log.info(
            "ledger %r rejected: %d errors in %d rows",
            filename,
            len(report.errors),
            summary.rows_read,
        )
        return report

    _write(conn, rows, report, scope, clock)
    if report.ok and not dry_run:
        log.info(
            "ledger %r imported: %d created, %d updated, %d unchanged",
            filename,
            summary.created,
            summary.updated,
            summary.unchanged,
        )
    return report


def _load_schools(conn: Conn) -> dict[str, list[_School]]:
    """Schools by code and by exact name (names need not be unique)."""
    found: dict[str, list[_School]] = {}
    for sid, code, name in conn.execute("SELECT id, code, name FROM schools"):
        school = _School(int(sid), str(code), str(name))
        found.setdefault(school.code, []).append(school)
        key = " ".join(school.name.split())
        if key != school.code:
            found.setdefault(key, []).append(school)
    return found


def _fixed_school(
    schools: dict[str, list[_School]],
    school_code: str | None,
    scope: frozenset[int] | None,
) -> _School | None:
    if school_code is None:
        return None
    code = school_code.strip()
    matches = [s for s in schools.get(code, []) if s.code == code]
    if not matches or (scope is not None and matches[0].id not in scope):
        raise NotFound(
            f"school {school_code!r} does not exist or is outside your scope; "
            "give the school code as registered (GET /api/v1/schools lists them)"
        )
    return matches[0]


class _Columns:
    """Where each field sits in the file, and the header as the file writes it."""

    def __init__(self, index: dict[str, int], header: dict[str, str]) -> None:
        self.index = index
        self.header = header

    def get(self, cells: list[Cell], key: str) -> Cell:
        i = self.index.get(key)
        if i is None or i >= len(cells):
            return None
        return cells[i]


def _is_header(cells: list[Cell]) -> bool:
    return any(
        (found := field_of_header(cell_text(c))) and found[0] == "asset_tag"
        for c in cells
    )


def _find_header(
    raw_rows: list[tuple[int, list[Cell]]], report: ImportReport, need_school: bool
) -> tuple[int, _Columns] | None:
    """Locate the header row; report missing required columns file-wide."""
    first_found: dict[int, str] = {}
    for position, (line, cells) in enumerate(raw_rows[:HEADER_SEARCH_ROWS]):
        headers = header_columns(cells)
        if headers and not first_found:
            first_found = dict(headers)
        fields = {i: field_of_header(h) for i, h in headers.items()}
        if not any(f and f[0] == "asset_tag" for f in fields.values()):
            continue
        best: dict[str, tuple[int, int]] = {}
        for i, found in fields.items():
            if found is None:
                report.summary.ignored_columns.append(headers[i])
                continue
            key, rank = found
            held = best.get(key)
            if held is not None and held[1] == rank:
                report.errors.append(
                    RowError(
                        line,
                        headers[i],
                        None,
                        f"two columns are headed {headers[i]!r} (columns "
                        f"{held[0] + 1} and {i + 1}); delete or rename one",
                        "列名重复，请删除或改名其中一列",
                    )
                )
            elif held is None or rank < held[1]:
                if held is not None:
                    report.summary.ignored_columns.append(headers[held[0]])
                best[key] = (i, rank)
            else:
                report.summary.ignored_columns.append(headers[i])
        columns = _Columns(
            {k: i for k, (i, _) in best.items()},
            {k: headers[i] for k, (i, _) in best.items()},
        )
        if not need_school and "school" in columns.index:
            # The school chosen for the whole import wins over the column.
            report.summary.ignored_columns.append(columns.header.pop("school"))
            del columns.index["school"]
        required = ["category"] + (["school"] if need_school else [])
        missing = [k for k in required if k not in columns.index]
        for key in missing:
            report.errors.append(
                RowError(
                    line,
                    None,
                    None,
                    _missing_column(key, list(headers.values())),
                    f"缺少必填列：{FIELDS_BY_KEY[key].label_zh}",
                )
            )
        report.summary.columns = dict(columns.header)
        return position, columns
    report.errors.append(
        RowError(
            None,
            None,
            None,
            _missing_column("asset_tag", list(first_found.values())),
            "缺少必填列：资产编号",
        )
    )
    return None


def _missing_column(key: str, found: list[str]) -> str:
    label = FIELDS_BY_KEY[key].label
    shown = ", ".join(found) if found else "none"
    hint = (
        "; or choose one school for every row (--school CODE on the command "
        "line, the school field of an upload)"
        if key == "school"
        else ""
    )
    return (
        f"required column {label} is missing; columns found: {shown}; "
        f"accepted names: {accepted_names(key)}{hint}"
    )


def _parse_rows(
    raw_rows: list[tuple[int, list[Cell]]],
    report: ImportReport,
    *,
    schools: dict[str, list[_School]],
    fixed_school: _School | None,
    categories: CategoryMap,
    scope: frozenset[int] | None,
) -> list[LedgerRow]:
    located = _find_header(raw_rows, report, need_school=fixed_school is None)
    if located is None or not report.ok:
        return []
    position, columns = located
    errors = report.errors
    header = columns.header
    first_line: dict[str, int] = {}
    repeated: set[str] = set()
    rows: list[LedgerRow] = []

    for line, cells in raw_rows[position + 1 :]:
        tag_cell = columns.get(cells, "asset_tag")
        tag = fold(tag_cell)
        if (not tag or tag.casefold() in TOTAL_WORDS) and _is_blank_or_total(
            cells, columns
        ):
            continue
        report.summary.rows_read += 1
        before = len(errors)

        def bad(key: str, value: Cell, reason: str, zh: str, line: int = line) -> None:
            errors.append(RowError(line, header.get(key), cell_text(value), reason, zh))

        def bad_cell(key: str, value: Cell, exc: CellError) -> None:
            bad(key, value, str(exc), exc.zh)

        if not tag:
            bad(
                "asset_tag",
                tag_cell,
                "asset tag is empty; every row needs one",
                "资产编号为空",
            )
        elif tag in first_line:
            first = first_line[tag]
            bad(
                "asset_tag",
                tag_cell,
                f"asset tag {tag!r} also appears on line {first}; "
                "each asset tag must appear once in the file",
                f"资产编号重复（另见第 {first} 行）",
            )
            if tag not in repeated:
                repeated.add(tag)
                bad(
                    "asset_tag",
                    tag_cell,
                    f"asset tag {tag!r} appears again on line {line}; "
                    "each asset tag must appear once in the file",
                    f"资产编号重复（另见第 {line} 行）",
                    line=first,
                )
        else:
            first_line[tag] = line
            try:
                check_length(tag, "asset_tag")
            except CellError as exc:
                bad_cell("asset_tag", tag_cell, exc)

        texts: dict[str, str] = {}
        for key in _TEXT_KEYS:
            value = columns.get(cells, key)
            text = fold(value) if key == "serial" else cell_text(value)
            try:
                texts[key] = check_length(text, key)
            except CellError as exc:
                bad_cell(key, value, exc)

        category = ""
        value = columns.get(cells, "category")
        if not cell_text(value):
            bad(
                "category",
                value,
                f"category is empty; use one of {', '.join(categories.codes)}",
                "设备类别为空",
            )
        else:
            try:
                category = categories.resolve(cell_text(value))
            except CellError as exc:
                bad_cell("category", value, exc)

        school_id = 0
        if fixed_school is not None:
            school_id = fixed_school.id
        else:
            value = columns.get(cells, "school")
            try:
                school_id = _resolve_school(schools, fold(value), scope)
            except CellError as exc:
                bad_cell("school", value, exc)

        room: str | None = None
        value = columns.get(cells, "room")
        if cell_text(value):
            try:
                room = check_length(fold(value), "room")
            except CellError as exc:
                bad_cell("room", value, exc)

        dates: dict[str, date | None] = {}
        for key in _DATE_KEYS:
            value = columns.get(cells, key)
            dates[key] = None
            if cell_text(value):
                try:
                    dates[key] = parse_date(value)
                except CellError as exc:
                    bad_cell(key, value, exc)
        purchased, warranty = dates["purchase_date"], dates["warranty_until"]
        if purchased and warranty and warranty < purchased:
            bad(
                "warranty_until",
                columns.get(cells, "warranty_until"),
                f"warranty ends {warranty.isoformat()}, before the purchase date "
                f"{purchased.isoformat()}; check both dates",
                "保修截止日期早于购置日期",
            )

        price: Decimal | None = None
        value = columns.get(cells, "price")
        if cell_text(value):
            try:
                price = parse_amount(value)
            except CellError as exc:
                bad_cell("price", value, exc)

        if len(errors) == before:
            rows.append(
                LedgerRow(
                    line,
                    tag,
                    texts["name"],
                    category,
                    texts["brand"],
                    texts["model"],
                    texts["serial"],
                    school_id,
                    room,
                    purchased,
                    price,
                    warranty,
                )
            )
    errors.sort(key=lambda e: e.line or 0)
    return rows


def _is_blank_or_total(cells: list[Cell], columns: _Columns) -> bool:
    """A row with nothing in the known columns, or a totals row (合计) at the end."""
    mapped = [cell_text(columns.get(cells, f.key)) for f in FIELDS]
    if not any(mapped):
        return True
    return any(fold(c).casefold() in TOTAL_WORDS for c in cells if c is not None)


def _resolve_school(
    schools: dict[str, list[_School]], text: str, scope: frozenset[int] | None
) -> int:
    if not text:
        raise CellError(
            "school is empty; give the school code or its exact name",
            zh="所属学校为空",
        )
    matches = schools.get(" ".join(text.split()), [])
    by_code = [s for s in matches if s.code == text]
    if by_code:
        matches = by_code
    if not matches:
        raise CellError(
            f"unknown school {text!r}; give the school code or its exact name as "
            "registered",
            zh="学校不存在，请填写学校代码或登记的完整校名",
        )
    if len(matches) > 1:
        codes = ", ".join(sorted(s.code for s in matches))
        raise CellError(
            f"school name {text!r} matches {len(matches)} schools ({codes}); "
            "give the school code instead",
            zh="校名对应多所学校，请改填学校代码",
        )
    school = matches[0]
    if scope is not None and school.id not in scope:
        raise CellError(
            f"school {school.code} ({school.name}) is outside your scope; "
            "you may only import into the schools you administer",
            zh="该学校不在您的管理范围内",
        )
    return school.id


def _write(
    conn: Conn,
    rows: list[LedgerRow],
    report: ImportReport,
    scope: frozenset[int] | None,
    clock: _Clock,
) -> None:
    """Stage the rows and upsert them; roll everything back on a late error."""
    summary = report.summary
    present = set(summary.columns)
    with conn.transaction():
        _stage(conn, rows)
        clock.lap("copy")

        if scope is not None:
            report.errors.extend(
                _moves_out_of_scope(conn, scope, summary.columns["asset_tag"])
            )
        summary.moved = _count(
            conn,
            "SELECT count(*) FROM ledger_staging s JOIN devices d USING (asset_tag) "
            "WHERE d.school_id <> s.school_id",
        )
        clock.lap("validate")
        if report.errors or summary.dry_run:
            if not report.errors:
                _count_changes(conn, present, summary)
                clock.lap("upsert")
            raise psycopg.Rollback()

        _upsert(conn, present, summary)
        clock.lap("upsert")


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
        for row in rows:
            copy.write_row((*_row_values(row), new_device_code()))
    conn.execute("ANALYZE ledger_staging")


def _row_values(row: LedgerRow) -> Iterator[object]:
    yield row.line
    yield row.asset_tag
    yield row.name
    yield row.category
    yield row.brand
    yield row.model
    yield row.serial
    yield row.school_id
    yield row.room_name
    yield row.purchase_date
    yield row.price
    yield row.warranty_until


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


def _upsert(conn: Conn, present: set[str], summary: ImportSummary) -> None:
    summary.rooms_created = conn.execute(
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
    statement = sql.SQL(
        """
        WITH upserted AS (
            INSERT INTO devices (asset_tag, {insert_columns})
            SELECT s.asset_tag, s.name, s.category, s.brand, s.model, s.serial,
                   s.school_id, r.id, s.purchase_date, s.price, s.warranty_until
            FROM ledger_staging s
            LEFT JOIN rooms r ON r.school_id = s.school_id AND r.name = s.room_name
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
        assignments=sql.SQL(", ").join(assignments),
        changed=_changed(columns, "devices", "excluded"),
    )
    row = conn.execute(statement).fetchone()
    created, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    summary.created, summary.updated = created, updated
    summary.unchanged = summary.rows_read - created - updated


def _count_changes(conn: Conn, present: set[str], summary: ImportSummary) -> None:
    """What an import would do, computed without writing (for --dry-run)."""
    summary.rooms_created = _count(
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
    columns = _updated_columns(present)
    statement = sql.SQL(
        """
        SELECT count(*) FILTER (WHERE old.id IS NULL),
               count(*) FILTER (WHERE old.id IS NOT NULL AND {changed})
        FROM (
            SELECT s.asset_tag, s.name, s.category, s.brand, s.model, s.serial,
                   s.school_id, s.purchase_date, s.price, s.warranty_until,
                   CASE WHEN s.room_name IS NOT NULL THEN coalesce(r.id, -1) END
                       AS room_id
            FROM ledger_staging s
            LEFT JOIN rooms r ON r.school_id = s.school_id AND r.name = s.room_name
        ) new
        LEFT JOIN devices old USING (asset_tag)
        """
    ).format(changed=_changed(columns, "old", "new"))
    row = conn.execute(statement).fetchone()
    created, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    summary.created, summary.updated = created, updated
    summary.unchanged = summary.rows_read - created - updated
