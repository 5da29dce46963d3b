"""Ledger cell parsers and file decoding, tested on literal inputs."""

import io
import zipfile
from datetime import date, datetime
from decimal import Decimal

import pytest
from openpyxl import Workbook

from edufleet_collector.registry.ledger_fields import (
    CategoryMap,
    CellError,
    field_of_header,
    parse_amount,
    parse_date,
)
from edufleet_collector.registry.ledger_read import (
    LedgerFileError,
    decode_csv,
    read_ledger,
)

CATEGORIES = [
    ("desktop", "台式电脑", "Desktop PC"),
    ("projector", "投影仪", "Projector"),
    ("panel", "交互式平板", "Interactive panel"),
    ("controller", "多媒体中控", "Multimedia controller"),
    ("doc_camera", "实物展台", "Document camera"),
    ("audio", "音箱/功放/话筒", "Speaker / amplifier / microphone"),
    ("printer", "打印机", "Printer"),
    ("network", "交换机/无线AP", "Network switch / access point"),
    ("camera", "监控摄像头/录播系统", "Camera / lecture capture"),
    ("class_sign", "电子班牌", "E-class sign"),
]


@pytest.mark.parametrize(
    "text",
    [
        "2021-06-30",
        "2021/6/30",
        "2021/06/30",
        "2021年6月30日",
        "2021.6.30",
        "２０２１年６月３０日",
        "2021-06-30 00:00:00",
        "2021/6/30 0:00",
        "20210630",
        "44377",
        "44377.0",
    ],
)
def test_parse_date_reads_written_forms_and_excel_serials(text):
    assert parse_date(text) == date(2021, 6, 30)


def test_parse_date_reads_xlsx_number_and_datetime_cells():
    assert parse_date(44377) == date(2021, 6, 30)
    assert parse_date(44377.0) == date(2021, 6, 30)
    assert parse_date(datetime(2021, 6, 30, 8, 15)) == date(2021, 6, 30)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2021-13-01", "not a real date"),
        ("2021-02-30", "not a real date"),
        ("30/06/2021", "cannot read"),
        ("明年", "cannot read"),
        ("1850-01-01", "outside the years 1950–2100"),
        ("99999", "between 1 and"),
    ],
)
def test_parse_date_rejects_bad_dates_with_the_accepted_forms(text, reason):
    with pytest.raises(CellError, match=reason) as caught:
        parse_date(text)
    assert "2021年6月30日" in str(caught.value) or "check the date" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4,299.00", "4299.00"),
        ("￥4,299.00", "4299.00"),
        ("¥4299", "4299.00"),
        ("4299元", "4299.00"),
        ("４，２９９．００", "4299.00"),
        (" 4 299.5 ", "4299.50"),
        ("RMB 12.3", "12.30"),
        ("0", "0.00"),
        (4299, "4299.00"),
        (4298.999999999999, "4299.00"),
        (12.5, "12.50"),
    ],
)
def test_parse_amount_reads_yuan_in_common_spellings(value, expected):
    assert parse_amount(value) == Decimal(expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-12.00", r"price -12.00 is negative; amounts must be ≥ 0"),
        (-1, "negative"),
        ("12.345", "more than 2 decimal places"),
        ("4,299.00abc", "cannot read '4,299.00abc' as an amount"),
        ("约五千", "cannot read"),
        ("99999999999", "exceeds the limit of 9,999,999,999.99"),
    ],
)
def test_parse_amount_rejects_negative_and_garbled_prices(value, reason):
    with pytest.raises(CellError, match=reason):
        parse_amount(value)


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("资产编号", "asset_tag"),
        (" 资产编号* ", "asset_tag"),
        ("资产编号（必填）", "asset_tag"),
        ("Asset Tag", "asset_tag"),
        ("asset_tag", "asset_tag"),
        ("使用地点/教室", "room"),
        ("使用地点 / 教室", "room"),
        ("金额(元)", "price"),
        ("金额（元）", "price"),
        ("Purchase Date", "purchase_date"),
        ("保修截止日期", "warranty_until"),
        ("ＳＮ", "serial"),
        ("所属学校", "school"),
    ],
)
def test_field_of_header_tolerates_width_case_spacing_and_units(header, key):
    found = field_of_header(header)
    assert found is not None
    assert found[0] == key


def test_field_of_header_ignores_unknown_columns():
    assert field_of_header("备注") is None
    assert field_of_header("序号") is None


@pytest.mark.parametrize(
    ("word", "code"),
    [
        ("台式机", "desktop"),
        ("电脑", "desktop"),
        ("投影机", "projector"),
        ("一体机", "panel"),
        ("交互平板", "panel"),
        ("智慧黑板", "panel"),
        ("电子白板", "panel"),
        ("中控", "controller"),
        ("展台", "doc_camera"),
        ("音箱", "audio"),
        ("功放", "audio"),
        ("话筒", "audio"),
        ("打印机", "printer"),
        ("交换机", "network"),
        ("无线AP", "network"),
        ("无线ＡＰ", "network"),
        ("摄像头", "camera"),
        ("录播", "camera"),
        ("班牌", "class_sign"),
        ("Projector", "projector"),
        ("doc_camera", "doc_camera"),
        ("实物展台", "doc_camera"),
    ],
)
def test_category_map_resolves_chinese_names_and_synonyms(word, code):
    assert CategoryMap(CATEGORIES).resolve(word) == code


def test_category_map_lists_allowed_values_for_unknown_word():
    with pytest.raises(CellError, match=r"unknown category '冰箱'; use one of desktop"):
        CategoryMap(CATEGORIES).resolve("冰箱")


def test_category_map_skips_synonyms_of_categories_not_in_the_database():
    with pytest.raises(CellError):
        CategoryMap(CATEGORIES).resolve("笔记本")


def test_decode_csv_detects_bom_utf8_and_gb18030():
    text = "资产编号,设备名称\n"
    assert decode_csv(b"\xef\xbb\xbf" + text.encode()) == (text, "utf-8-sig")
    assert decode_csv(text.encode()) == (text, "utf-8")
    assert decode_csv(text.encode("gb18030")) == (text, "gb18030")


def test_decode_csv_names_the_line_of_bytes_valid_in_neither_encoding():
    data = "资产编号\nA1\n".encode() + b"A2\x80\xff\n"
    with pytest.raises(LedgerFileError, match="neither UTF-8 nor GB18030") as caught:
        decode_csv(data)
    assert caught.value.line == 3
    assert "line 3" in str(caught.value)


def test_read_ledger_sniffs_tab_separated_text_and_numbers_rows_from_one():
    sheet = read_ledger("资产编号\t金额\nA1\t1,200\n".encode(), "ledger.txt")
    assert list(sheet.rows) == [(1, ["资产编号", "金额"]), (2, ["A1", "1,200"])]


def test_read_ledger_refuses_old_xls_workbooks():
    with pytest.raises(LedgerFileError, match=r"\.xls.*save it as \.xlsx"):
        read_ledger(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "台账.xls")


def test_read_ledger_reports_a_damaged_xlsx():
    with pytest.raises(LedgerFileError, match=r"cannot be read as an \.xlsx"):
        list(read_ledger(b"PK\x03\x04garbage", "ledger.xlsx").rows)


def test_read_ledger_reports_a_workbook_whose_sheet_is_damaged():
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["资产编号", "设备类别"])
    sheet.append(["A1", "台式机"])
    good = io.BytesIO()
    book.save(good)
    damaged = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(good.getvalue())) as src,
        zipfile.ZipFile(damaged, "w") as out,
    ):
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = content[: len(content) // 2]
            out.writestr(item, content)

    with pytest.raises(LedgerFileError, match=r"cannot be read as an \.xlsx"):
        list(read_ledger(damaged.getvalue(), "ledger.xlsx").rows)
