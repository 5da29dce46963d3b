"""Import a school's asset ledger (资产台账) into the registry, all or nothing.

``import_ledger`` reads a CSV or .xlsx ledger (``ledger_read``), checks every
row (``ledger_rows``), and only when no row is bad copies the rows into a
staging table and upserts them by asset tag in set-based SQL (``ledger_write``):
missing rooms are created, new devices get a QR label code, and devices whose
values did not change are left alone. The report lists every bad row, so a
clerk can fix the file in one go.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..db import Conn
from ..errors import NotFound
from .ledger_fields import CategoryMap
from .ledger_read import LedgerFileError, read_ledger
from .ledger_rows import RowError, School, SchoolIndex, is_header, parse_ledger
from .ledger_write import write_rows

__all__ = ["ImportReport", "ImportSummary", "RowError", "import_ledger"]

log = logging.getLogger("edufleet.collector.registry.ledger")


@dataclass
class ImportSummary:
    """Counts and timings of one import (what it would do, for a dry run)."""

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
        sheet = read_ledger(data, filename, is_header=is_header)
        summary.file_kind, summary.encoding = sheet.kind, sheet.encoding
        clock.lap("read")
        parsed = parse_ledger(
            sheet.rows,
            schools=schools,
            categories=categories,
            fixed_school=fixed_school,
            scope=scope,
        )
    except LedgerFileError as exc:
        report.errors.append(RowError(exc.line, None, None, str(exc), exc.zh))
        return report
    summary.rows_read = parsed.rows_read
    summary.columns = parsed.columns
    summary.ignored_columns = parsed.ignored_columns
    report.errors = parsed.errors
    clock.lap("parse")
    if not report.ok:
        log.info(
            "ledger %r rejected: %d errors in %d rows",
            filename,
            len(report.errors),
            summary.rows_read,
        )
        return report

    counts, report.errors = write_rows(
        conn,
        parsed.rows,
        present=set(parsed.columns),
        tag_header=parsed.columns["asset_tag"],
        scope=scope,
        dry_run=dry_run,
        lap=clock.lap,
    )
    if report.ok:
        summary.created, summary.updated = counts.created, counts.updated
        summary.unchanged = summary.rows_read - counts.created - counts.updated
        summary.rooms_created, summary.moved = counts.rooms_created, counts.moved
    if report.ok and not dry_run:
        log.info(
            "ledger %r imported: %d created, %d updated, %d unchanged",
            filename,
            summary.created,
            summary.updated,
            summary.unchanged,
        )
    return report


def _load_schools(conn: Conn) -> SchoolIndex:
    """Schools by code and by exact name (names need not be unique)."""
    found: SchoolIndex = {}
    for sid, code, name in conn.execute("SELECT id, code, name FROM schools"):
        school = School(int(sid), str(code), str(name))
        found.setdefault(school.code, []).append(school)
        key = " ".join(school.name.split())
        if key != school.code:
            found.setdefault(key, []).append(school)
    return found


def _fixed_school(
    schools: SchoolIndex,
    school_code: str | None,
    scope: frozenset[int] | None,
) -> School | None:
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
