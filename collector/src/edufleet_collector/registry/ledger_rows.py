"""Turn a ledger's raw rows into device rows, collecting every error on the way.

Nothing here touches the database: the schools and categories to check against
are passed in, so the checks run on literal rows in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import chain, islice

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
from .ledger_read import HEADER_SEARCH_ROWS, Cell

TOTAL_WORDS = frozenset({"合计", "总计", "小计", "total", "sum"})
_TEXT_KEYS = ("name", "brand", "model", "serial")


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


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One valid ledger row, ready to be staged."""

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
class School:
    id: int
    code: str
    name: str


SchoolIndex = dict[str, list[School]]
"""Schools by code and by exact name; a name may belong to several schools."""


@dataclass
class ParsedLedger:
    """The valid rows, or the errors; and what was learnt about the columns."""

    rows: list[LedgerRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    rows_read: int = 0


class Columns:
    """Where each field sits in the file, and the header as the file writes it."""

    def __init__(self, index: dict[str, int], header: dict[str, str]) -> None:
        self.index = index
        self.header = header

    def get(self, cells: Sequence[Cell], key: str) -> Cell:
        i = self.index.get(key)
        if i is None or i >= len(cells):
            return None
        return cells[i]


def is_header(cells: Sequence[Cell]) -> bool:
    """Whether a row names the asset-tag column, the one column every ledger has."""
    return any(
        (found := field_of_header(cell_text(c))) and found[0] == "asset_tag"
        for c in cells
    )


def parse_ledger(
    raw_rows: Iterable[tuple[int, Sequence[Cell]]],
    *,
    schools: SchoolIndex,
    categories: CategoryMap,
    fixed_school: School | None = None,
    scope: frozenset[int] | None = None,
) -> ParsedLedger:
    """Check every row; ``fixed_school`` puts all rows in one school.

    ``raw_rows`` is consumed once, so a large file is never held as cells.
    """
    parsed = ParsedLedger()
    rows = iter(raw_rows)
    top = list(islice(rows, HEADER_SEARCH_ROWS))
    located = _find_header(top, parsed, need_school=fixed_school is None)
    if located is None or parsed.errors:
        return parsed
    position, columns = located

    parser = _RowParser(
        columns,
        parsed=parsed,
        schools=schools,
        categories=categories,
        fixed_school=fixed_school,
        scope=scope,
    )
    for line, cells in chain(top[position + 1 :], rows):
        parser.parse(line, cells)
    parsed.errors.sort(key=lambda e: e.line or 0)
    return parsed


def _find_header(
    top: list[tuple[int, Sequence[Cell]]], parsed: ParsedLedger, need_school: bool
) -> tuple[int, Columns] | None:
    """Locate the header row; report missing required columns for the whole file."""
    first_found: list[str] = []
    for position, (line, cells) in enumerate(top):
        headers = header_columns(cells)
        first_found = first_found or list(headers.values())
        if not is_header(cells):
            continue
        columns = _map_columns(line, headers, parsed)
        if not need_school and "school" in columns.index:
            # The school chosen for the whole import wins over the column.
            parsed.ignored_columns.append(columns.header.pop("school"))
            del columns.index["school"]
        required = ["category"] + (["school"] if need_school else [])
        for key in required:
            if key not in columns.index:
                parsed.errors.append(
                    RowError(
                        line,
                        None,
                        None,
                        _missing_column(key, list(headers.values())),
                        f"缺少必填列：{FIELDS_BY_KEY[key].label_zh}",
                    )
                )
        parsed.columns = dict(columns.header)
        return position, columns
    parsed.errors.append(
        RowError(
            None,
            None,
            None,
            _missing_column("asset_tag", first_found),
            "缺少必填列：资产编号",
        )
    )
    return None


def _map_columns(
    line: int, headers: Mapping[int, str], parsed: ParsedLedger
) -> Columns:
    """Pick a column for each field; of two aliases the better-ranked one wins."""
    best: dict[str, tuple[int, int]] = {}
    for i, text in headers.items():
        found = field_of_header(text)
        if found is None:
            parsed.ignored_columns.append(text)
            continue
        key, rank = found
        held = best.get(key)
        if held is not None and held[1] == rank:
            parsed.errors.append(
                RowError(
                    line,
                    text,
                    None,
                    f"columns {held[0] + 1} ({headers[held[0]]!r}) and {i + 1} "
                    f"({text!r}) both mean {FIELDS_BY_KEY[key].label}; delete or "
                    "rename one",
                    "列名重复，请删除或改名其中一列",
                )
            )
        elif held is None or rank < held[1]:
            if held is not None:
                parsed.ignored_columns.append(headers[held[0]])
            best[key] = (i, rank)
        else:
            parsed.ignored_columns.append(text)
    return Columns(
        {k: i for k, (i, _) in best.items()},
        {k: headers[i] for k, (i, _) in best.items()},
    )


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


class _RowParser:
    """Checks rows one by one, remembering asset tags to catch duplicates."""

    def __init__(
        self,
        columns: Columns,
        *,
        parsed: ParsedLedger,
        schools: SchoolIndex,
        categories: CategoryMap,
        fixed_school: School | None,
        scope: frozenset[int] | None,
    ) -> None:
        self.columns = columns
        self.parsed = parsed
        self.schools = schools
        self.categories = categories
        self.fixed_school = fixed_school
        self.scope = scope
        self.first_line: dict[str, int] = {}
        self.repeated: set[str] = set()

    def bad(self, line: int, key: str, value: Cell, reason: str, zh: str) -> None:
        self.parsed.errors.append(
            RowError(line, self.columns.header.get(key), cell_text(value), reason, zh)
        )

    def bad_cell(self, line: int, key: str, value: Cell, exc: CellError) -> None:
        self.bad(line, key, value, str(exc), exc.zh)

    def parse(self, line: int, cells: Sequence[Cell]) -> None:
        columns = self.columns
        tag_cell = columns.get(cells, "asset_tag")
        tag = fold(tag_cell)
        if (not tag or tag.casefold() in TOTAL_WORDS) and _is_blank_or_total(
            cells, columns
        ):
            return
        self.parsed.rows_read += 1
        before = len(self.parsed.errors)

        self._check_tag(line, tag, tag_cell)
        texts = {key: self._text(line, cells, key) for key in _TEXT_KEYS}
        category = self._category(line, columns.get(cells, "category"))
        school_id = self._school(line, columns.get(cells, "school"))
        room = self._room(line, columns.get(cells, "room"))
        purchased = self._date(line, cells, "purchase_date")
        warranty = self._date(line, cells, "warranty_until")
        if purchased and warranty and warranty < purchased:
            self.bad(
                line,
                "warranty_until",
                columns.get(cells, "warranty_until"),
                f"warranty ends {warranty.isoformat()}, before the purchase date "
                f"{purchased.isoformat()}; check both dates",
                "保修截止日期早于购置日期",
            )
        price = self._price(line, columns.get(cells, "price"))

        if len(self.parsed.errors) == before:
            self.parsed.rows.append(
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

    def _check_tag(self, line: int, tag: str, cell: Cell) -> None:
        if not tag:
            self.bad(
                line,
                "asset_tag",
                cell,
                "asset tag is empty; every row needs one",
                "资产编号为空",
            )
            return
        first = self.first_line.get(tag)
        if first is None:
            self.first_line[tag] = line
            try:
                check_length(tag, "asset_tag")
            except CellError as exc:
                self.bad_cell(line, "asset_tag", cell, exc)
            return
        self.bad(
            line,
            "asset_tag",
            cell,
            f"asset tag {tag!r} also appears on line {first}; "
            "each asset tag must appear once in the file",
            f"资产编号重复（另见第 {first} 行）",
        )
        if tag not in self.repeated:
            self.repeated.add(tag)
            self.bad(
                first,
                "asset_tag",
                cell,
                f"asset tag {tag!r} appears again on line {line}; "
                "each asset tag must appear once in the file",
                f"资产编号重复（另见第 {line} 行）",
            )

    def _text(self, line: int, cells: Sequence[Cell], key: str) -> str:
        value = self.columns.get(cells, key)
        text = fold(value) if key == "serial" else cell_text(value)
        try:
            return check_length(text, key)
        except CellError as exc:
            self.bad_cell(line, key, value, exc)
            return ""

    def _category(self, line: int, value: Cell) -> str:
        text = cell_text(value)
        if not text:
            self.bad(
                line,
                "category",
                value,
                f"category is empty; use one of {', '.join(self.categories.codes)}",
                "设备类别为空",
            )
            return ""
        try:
            return self.categories.resolve(text)
        except CellError as exc:
            self.bad_cell(line, "category", value, exc)
            return ""

    def _school(self, line: int, value: Cell) -> int:
        if self.fixed_school is not None:
            return self.fixed_school.id
        try:
            return resolve_school(self.schools, fold(value), self.scope)
        except CellError as exc:
            self.bad_cell(line, "school", value, exc)
            return 0

    def _room(self, line: int, value: Cell) -> str | None:
        if not cell_text(value):
            return None
        try:
            return check_length(fold(value), "room")
        except CellError as exc:
            self.bad_cell(line, "room", value, exc)
            return None

    def _date(self, line: int, cells: Sequence[Cell], key: str) -> date | None:
        value = self.columns.get(cells, key)
        if not cell_text(value):
            return None
        try:
            return parse_date(value)
        except CellError as exc:
            self.bad_cell(line, key, value, exc)
            return None

    def _price(self, line: int, value: Cell) -> Decimal | None:
        if not cell_text(value):
            return None
        try:
            return parse_amount(value)
        except CellError as exc:
            self.bad_cell(line, "price", value, exc)
            return None


def _is_blank_or_total(cells: Sequence[Cell], columns: Columns) -> bool:
    """A row with nothing in the known columns, or a totals row (合计) at the end."""
    mapped = [cell_text(columns.get(cells, f.key)) for f in FIELDS]
    if not any(mapped):
        return True
    return any(fold(c).casefold() in TOTAL_WORDS for c in cells if c is not None)


def resolve_school(
    schools: SchoolIndex, text: str, scope: frozenset[int] | None
) -> int:
    """The id of the school a cell names by code or exact name, within ``scope``."""
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
