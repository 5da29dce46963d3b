"""Read an asset ledger file (CSV or .xlsx) into rows of raw cells.

Schools export ledgers from Excel or from an asset system: CSV in UTF-8 (with
or without a byte-order mark) or GB18030, or an .xlsx workbook. This module only
turns bytes into ``(line, cells)`` pairs, numbered as the user sees them in a
spreadsheet; what the cells mean is decided in ``ledger_fields``.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

Cell = object
"""A raw cell: text from CSV; text, a number, a datetime or None from xlsx."""

XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
DELIMITERS = ",\t;"
HEADER_SEARCH_ROWS = 20
"""How far down a sheet the header row may sit, below titles and notes."""


class LedgerFileError(ValueError):
    """The file as a whole cannot be read; the message says why and how to fix it."""

    def __init__(self, message: str, *, zh: str, line: int | None = None) -> None:
        super().__init__(message)
        self.zh = zh
        self.line = line


@dataclass(frozen=True)
class RawSheet:
    """The rows of one ledger, with how the file was read.

    ``rows`` is lazy: iterating it may raise ``LedgerFileError`` for a file
    that is damaged further in.
    """

    kind: str
    encoding: str | None
    rows: Iterator[tuple[int, Sequence[Cell]]]


def read_ledger(
    data: bytes,
    filename: str,
    *,
    is_header: Callable[[Sequence[Cell]], bool] | None = None,
) -> RawSheet:
    """Open ``data`` as an xlsx workbook or a CSV file, by content first, then name.

    In a workbook, the first sheet with a row near its top that ``is_header``
    accepts is read (a ledger often follows a sheet of instructions); without
    such a sheet, the first sheet.
    """
    lower = filename.lower()
    if data.startswith(XLS_MAGIC) or lower.endswith(".xls"):
        raise LedgerFileError(
            f"{filename!r} is an old Excel 97-2003 (.xls) workbook, which is not "
            "supported; open it in Excel or WPS and save it as .xlsx or as CSV",
            zh="不支持旧版 .xls 文件，请另存为 .xlsx 或 CSV",
        )
    if data.startswith(XLSX_MAGIC) or lower.endswith((".xlsx", ".xlsm")):
        return RawSheet("xlsx", None, _xlsx_rows(data, filename, is_header))
    text, encoding = decode_csv(data)
    return RawSheet("csv", encoding, _csv_rows(text))


def decode_csv(data: bytes) -> tuple[str, str]:
    """Decode CSV bytes: a BOM decides; else strict UTF-8; else GB18030."""
    if data.startswith(codecs.BOM_UTF8):
        return _decode(data, "utf-8-sig"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode(data, "utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError as gb_error:
            raise _neither_error(data, utf8_error, gb_error) from gb_error


def _neither_error(
    data: bytes, utf8_error: UnicodeDecodeError, gb_error: UnicodeDecodeError
) -> LedgerFileError:
    """Point at the line where the more plausible of the two encodings breaks."""
    utf8_line = _line_of(data, utf8_error.start)
    gb_line = _line_of(data, gb_error.start)
    # Non-ASCII text decoded fine before the first bad byte: a UTF-8 file
    # with a damaged line, not a GB18030 file.
    if not data[: utf8_error.start].isascii():
        line, byte, encoding = utf8_line, data[utf8_error.start], "UTF-8"
        other = f"GB18030 fails on line {gb_line}"
    else:
        line, byte, encoding = gb_line, data[gb_error.start], "GB18030"
        other = f"UTF-8 fails on line {utf8_line}"
    return LedgerFileError(
        f"the file is neither UTF-8 nor GB18030 text: it reads as {encoding} up to "
        f"line {line}, where byte 0x{byte:02X} is not valid {encoding} ({other}); "
        "correct that line, or save the ledger from Excel as 'CSV UTF-8' or as .xlsx",
        zh="文件编码无法识别（既不是 UTF-8 也不是 GB18030），"
        "请修改该行，或另存为“CSV UTF-8”或 .xlsx",
        line=line,
    )


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise LedgerFileError(
            f"the file starts with a {encoding} byte-order mark but byte "
            f"0x{data[exc.start]:02X} on line {line} is not valid {encoding}; "
            "save the ledger again as 'CSV UTF-8' or as .xlsx",
            zh="文件编码错误，请另存为“CSV UTF-8”或 .xlsx",
            line=line,
        ) from exc


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _sniff_delimiter(text: str) -> str:
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(text: str) -> Iterator[tuple[int, Sequence[Cell]]]:
    delimiter = _sniff_delimiter(text)
    buffer = io.StringIO(text, newline="")
    del text  # the buffer holds its own copy
    reader = csv.reader(buffer, delimiter=delimiter)
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise LedgerFileError(
            f"CSV syntax error on line {reader.line_num}: {exc}; check for a stray "
            "quote character in that line",
            zh="CSV 格式错误，请检查该行的引号",
            line=reader.line_num,
        ) from exc


_BROKEN_XLSX = (InvalidFileException, zipfile.BadZipFile, ParseError, KeyError, OSError)


def _xlsx_rows(
    data: bytes, filename: str, is_header: Callable[[Sequence[Cell]], bool] | None
) -> Iterator[tuple[int, Sequence[Cell]]]:
    try:
        yield from _workbook_rows(data, is_header)
    except _BROKEN_XLSX as exc:
        raise LedgerFileError(
            f"{filename!r} cannot be read as an .xlsx workbook ({exc}); "
            "save it again from Excel or WPS as .xlsx, or export it as CSV",
            zh="无法读取该 .xlsx 文件，请重新保存或导出为 CSV",
        ) from exc


def _workbook_rows(
    data: bytes, is_header: Callable[[Sequence[Cell]], bool] | None
) -> Iterator[tuple[int, Sequence[Cell]]]:
    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheets = list(book.worksheets)
        if not sheets:
            return
        for sheet in sheets:
            # Some exporters write a wrong sheet size; measure the real one.
            sheet.reset_dimensions()
        chosen = sheets[0]
        if is_header is not None:
            wanted = is_header  # bound here so the generator sees a callable
            chosen = next((s for s in sheets if _has_header(s, wanted)), chosen)
        yield from enumerate(chosen.iter_rows(values_only=True), start=1)
    finally:
        book.close()


def _has_header(sheet: Any, is_header: Callable[[Sequence[Cell]], bool]) -> bool:
    top = sheet.iter_rows(max_row=HEADER_SEARCH_ROWS, values_only=True)
    return any(is_header(values) for values in top)
