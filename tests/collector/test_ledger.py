"""Asset ledger import against a real PostgreSQL: files in, devices out, or nothing."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

import httpx
import psycopg
import pytest
from openpyxl import Workbook

from edufleet_collector.accounts import create_token, create_user
from edufleet_collector.cli import main
from edufleet_collector.errors import NotFound
from edufleet_collector.registry.ledger import import_ledger
from webseed import running_server

HEADER_ZH = [
    "资产编号",
    "设备名称",
    "设备类别",
    "品牌",
    "型号",
    "序列号",
    "所属学校",
    "使用地点/教室",
    "购置日期",
    "金额",
    "保修截止",
]
HEADER_EN = [
    "Asset Tag",
    "Name",
    "Category",
    "Brand",
    "Model",
    "Serial",
    "School",
    "Room",
    "Purchase Date",
    "Price",
    "Warranty Until",
]
ROWS = [
    [
        *("HK-0001", "教师机", "台式机", "联想", "启天M430", "SN001", "HK001"),
        *("301教室", "2021-06-30", "4,299.00", "2024-06-30"),
    ],
    [
        *("HK-0002", "投影机", "投影机", "爱普生", "CB-X06", "SN002", "HK001"),
        *("301教室", "2021/6/30", "￥3,150.50", "2023/6/30"),
    ],
    [
        *("HK-0003", "交互平板", "智慧黑板", "希沃", "BG86", "SN003", "海口市第一中学"),
        *("302教室", "2021年6月30日", "12,800元", ""),
    ],
    ["SY-0001", "中控", "中控", "", "", "", "SY001", "", "", "", ""],
]

HK0001_STORED = (
    *("教师机", "desktop", "联想", "启天M430", "SN001", "HK001", "301教室"),
    *(date(2021, 6, 30), Decimal("4299.00"), date(2024, 6, 30)),
)
"""The first row of ROWS as the registry holds it."""


def seed_registry(conn: psycopg.Connection) -> dict[str, int]:
    """Hainan > Haikou > Longhua with two schools, Hainan > Sanya with one."""
    conn.execute(
        """
        INSERT INTO regions (code, parent_code, name_zh, name_en, level) VALUES
            ('460000', NULL, '海南省', 'Hainan', 'province'),
            ('460100', '460000', '海口市', 'Haikou', 'city'),
            ('460106', '460100', '龙华区', 'Longhua', 'district'),
            ('460200', '460000', '三亚市', 'Sanya', 'city')
        """
    )
    ids = {}
    for code, name, region in (
        ("HK001", "海口市第一中学", "460106"),
        ("HK002", "海口市滨海小学", "460106"),
        ("SY001", "三亚市第二中学", "460200"),
    ):
        row = conn.execute(
            "INSERT INTO schools (code, name, region_code) VALUES (%s, %s, %s) "
            "RETURNING id",
            [code, name, region],
        ).fetchone()
        assert row is not None
        ids[code] = int(row[0])
    conn.commit()
    return ids


@pytest.fixture
def registry(conn: psycopg.Connection) -> dict[str, int]:
    return seed_registry(conn)


def csv_bytes(rows: Sequence[Sequence[object]], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(encoding)


def xlsx_bytes(rows: Sequence[Sequence[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def devices(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """Every device with its school and room names, ordered by asset tag."""
    return conn.execute(
        """
        SELECT d.asset_tag, d.name, d.category, d.brand, d.model, d.serial,
               s.code, r.name, d.purchase_date, d.price, d.warranty_until,
               d.updated_at
        FROM devices d
        JOIN schools s ON s.id = d.school_id
        LEFT JOIN rooms r ON r.id = d.room_id
        ORDER BY d.asset_tag
        """
    ).fetchall()


def registry_state(conn: psycopg.Connection) -> tuple[object, ...]:
    """Devices, rooms and label codes: what a rejected import must leave alone."""
    rooms = conn.execute("SELECT school_id, name FROM rooms ORDER BY 1, 2").fetchall()
    codes = conn.execute("SELECT code FROM device_codes ORDER BY 1").fetchall()
    return devices(conn), rooms, codes


def errors_of(report) -> list[tuple[int | None, str | None]]:
    return [(e.line, e.column) for e in report.errors]


# Valid files


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_import_csv_in_each_encoding_creates_devices_rooms_and_codes(
    conn, registry, encoding
):
    report = import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS], encoding), "台账.csv")
    conn.commit()

    assert report.ok, report.errors
    assert report.summary.encoding == encoding
    s = report.summary
    assert (s.rows_read, s.created, s.updated, s.unchanged) == (4, 4, 0, 0)
    assert s.rooms_created == 2
    found = {row[0]: row for row in devices(conn)}
    assert found["HK-0001"][1:11] == HK0001_STORED
    assert found["HK-0002"][9] == Decimal("3150.50")
    assert found["HK-0003"][2:3] == ("panel",)
    assert found["HK-0003"][6:10] == (
        "HK001",
        "302教室",
        date(2021, 6, 30),
        Decimal(12800),
    )
    assert found["SY-0001"][6:11] == ("SY001", None, None, None, None)
    codes = conn.execute(
        "SELECT d.asset_tag, c.code FROM device_codes c "
        "JOIN devices d ON d.id = c.device_id WHERE c.retired_at IS NULL"
    ).fetchall()
    assert len(codes) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}", code) for _, code in codes)
    assert len({code for _, code in codes}) == 4


def test_import_reads_english_headers(conn, registry):
    report = import_ledger(conn, csv_bytes([HEADER_EN, *ROWS]), "ledger.csv")

    assert report.ok, report.errors
    assert report.summary.created == 4
    assert report.summary.columns["asset_tag"] == "Asset Tag"


def test_import_xlsx_with_datetime_serial_and_number_cells(conn, registry):
    rows = [
        ["XX学校固定资产台账"],
        ["导出时间：2024-09-01"],
        [
            " 资产编号* ",
            "设备类别",
            "金额（元）",
            "购置日期",
            "保修截止",
            "所属学校",
            "备注",
        ],
        [20210001, "投影机", 4299, datetime(2021, 6, 30), 45473, "HK001", "新购"],
        ["HK-X2", "班牌", 1999.5, "2021.6.30", "2024年6月30日", "HK001", None],
        [None, None, None, None, None, None, None],
        ["合计", None, 6298.5, None, None, None, None],
    ]
    report = import_ledger(conn, xlsx_bytes(rows), "台账.xlsx")
    conn.commit()

    assert report.ok, report.errors
    assert report.summary.file_kind == "xlsx"
    assert report.summary.rows_read == 2
    assert report.summary.ignored_columns == ["备注"]
    found = {row[0]: row for row in devices(conn)}
    assert found["20210001"][2] == "projector"
    assert found["20210001"][8:11] == (
        date(2021, 6, 30),
        Decimal("4299.00"),
        date(2024, 6, 30),
    )
    assert found["HK-X2"][8:11] == (
        date(2021, 6, 30),
        Decimal("1999.50"),
        date(2024, 6, 30),
    )


def test_import_xlsx_reads_the_sheet_with_the_ledger_after_an_instructions_sheet(
    conn, registry
):
    book = Workbook()
    notes = book.active
    assert notes is not None
    notes.title = "填表说明"
    notes.append(["请按以下格式填写：日期写成 2021-06-30"])
    ledger = book.create_sheet("台账")
    ledger.append(["资产编号", "设备类别", "所属学校"])
    ledger.append(["N-1", "展台", "HK002"])
    out = io.BytesIO()
    book.save(out)

    report = import_ledger(conn, out.getvalue(), "台账.xlsx")

    assert report.ok, report.errors
    assert [(r[0], r[2], r[6]) for r in devices(conn)] == [
        ("N-1", "doc_camera", "HK002")
    ]


def test_import_reads_every_date_format(conn, registry):
    forms = [
        "2021-06-30",
        "2021/6/30",
        "2021年6月30日",
        "2021.6.30",
        "44377",
        "2021-06-30 00:00:00",
    ]
    rows = [["资产编号", "设备类别", "所属学校", "购置日期"]] + [
        [f"D{i}", "台式机", "HK001", form] for i, form in enumerate(forms)
    ]
    report = import_ledger(conn, csv_bytes(rows), "dates.csv")

    assert report.ok, report.errors
    dates = {row[8] for row in devices(conn)}
    assert dates == {date(2021, 6, 30)}


def test_import_reads_amounts_with_commas_currency_and_full_width_digits(
    conn, registry
):
    amounts = ["4,299.00", "￥4,299.00", "4299元", "４２９９", "1,234,567.80"]
    rows = [["资产编号", "设备类别", "所属学校", "金额"]] + [
        [f"P{i}", "打印机", "HK001", amount] for i, amount in enumerate(amounts)
    ]
    report = import_ledger(conn, csv_bytes(rows), "prices.csv")

    assert report.ok, report.errors
    prices = [row[9] for row in devices(conn)]
    assert prices == [Decimal("4299.00")] * 4 + [Decimal("1234567.80")]


def test_reimport_counts_unchanged_and_an_edited_row_as_updated(conn, registry):
    data = csv_bytes([HEADER_ZH, *ROWS])
    import_ledger(conn, data, "a.csv")
    conn.commit()
    before = {row[0]: row for row in devices(conn)}

    again = import_ledger(conn, data, "a.csv")
    conn.commit()
    assert (again.summary.created, again.summary.updated) == (0, 0)
    assert again.summary.unchanged == 4
    assert again.summary.rooms_created == 0
    assert {row[0]: row for row in devices(conn)} == before

    edited = [list(r) for r in ROWS]
    edited[1][9] = "2,999.00"
    edited[1][7] = "303教室"
    report = import_ledger(conn, csv_bytes([HEADER_ZH, *edited]), "a.csv")
    conn.commit()

    s = report.summary
    assert (s.created, s.updated, s.unchanged, s.rooms_created) == (0, 1, 3, 1)
    after = {row[0]: row for row in devices(conn)}
    assert after["HK-0002"][7] == "303教室"
    assert after["HK-0002"][9] == Decimal("2999.00")
    assert after["HK-0002"][11] > before["HK-0002"][11]
    assert after["HK-0001"] == before["HK-0001"]
    codes = conn.execute("SELECT count(*) FROM device_codes").fetchone()
    assert codes == (4,)


def test_import_leaves_columns_missing_from_the_file_untouched(conn, registry):
    import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS]), "full.csv")
    conn.commit()

    partial = [
        ["资产编号", "设备类别", "所属学校", "金额"],
        ["HK-0001", "台式机", "HK001", "100"],
    ]
    report = import_ledger(conn, csv_bytes(partial), "prices.csv")
    conn.commit()

    assert report.summary.updated == 1
    row = next(r for r in devices(conn) if r[0] == "HK-0001")
    assert row[1:11] == (*HK0001_STORED[:8], Decimal("100.00"), HK0001_STORED[9])


def test_import_with_school_code_puts_every_row_in_that_school(conn, registry):
    rows = [
        ["资产编号", "设备类别", "教室"],
        ["B1", "音箱", "礼堂"],
        ["B2", "话筒", "礼堂"],
    ]
    report = import_ledger(conn, csv_bytes(rows), "b.csv", school_code="HK002")
    conn.commit()

    assert report.ok, report.errors
    assert report.summary.rooms_created == 1
    assert {(r[6], r[7]) for r in devices(conn)} == {("HK002", "礼堂")}


def test_import_with_school_code_ignores_the_school_column(conn, registry):
    rows = [["资产编号", "设备类别", "所属学校"], ["B1", "功放", "SY001"]]
    report = import_ledger(conn, csv_bytes(rows), "b.csv", school_code="HK002")

    assert report.ok, report.errors
    assert report.summary.ignored_columns == ["所属学校"]
    assert [r[6] for r in devices(conn)] == ["HK002"]


def test_import_without_school_column_or_code_names_both_remedies(conn, registry):
    rows = [["资产编号", "设备类别"], ["B1", "功放"]]
    report = assert_rejected_unchanged(conn, csv_bytes(rows))

    assert errors_of(report) == [(1, None)]
    assert "所属学校 (school) is missing" in report.errors[0].reason
    assert "--school CODE" in report.errors[0].reason


def test_import_moving_a_device_to_another_school_is_counted_and_drops_its_room(
    conn, registry
):
    import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS]), "a.csv")
    conn.commit()

    moved = [["资产编号", "设备类别", "所属学校"], ["HK-0001", "台式机", "SY001"]]
    report = import_ledger(conn, csv_bytes(moved), "move.csv")
    conn.commit()

    assert report.ok, report.errors
    assert (report.summary.moved, report.summary.updated) == (1, 1)
    row = next(r for r in devices(conn) if r[0] == "HK-0001")
    assert (row[6], row[7]) == ("SY001", None)


def test_dry_run_counts_changes_and_writes_nothing(conn, registry):
    import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS[:2]]), "a.csv")
    conn.commit()
    before = registry_state(conn)

    edited = [list(r) for r in ROWS]
    edited[0][1] = "教师机（新）"
    report = import_ledger(conn, csv_bytes([HEADER_ZH, *edited]), "a.csv", dry_run=True)
    conn.commit()

    s = report.summary
    assert report.ok
    assert (s.created, s.updated, s.unchanged, s.rooms_created) == (2, 1, 1, 1)
    assert registry_state(conn) == before


# Rejected files: every bad row reported, nothing written


def assert_rejected_unchanged(conn, data: bytes, filename: str = "bad.csv", **kwargs):
    import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS[:1]]), "seed.csv")
    conn.commit()
    before = registry_state(conn)

    report = import_ledger(conn, data, filename, **kwargs)
    conn.commit()

    assert not report.ok
    assert (report.summary.created, report.summary.updated) == (0, 0)
    assert registry_state(conn) == before
    return report


def test_import_rejects_a_file_missing_a_required_column(conn, registry):
    rows = [["资产编号", "设备名称", "所属学校"], ["HK-0009", "教师机", "HK001"]]
    report = assert_rejected_unchanged(conn, csv_bytes(rows))

    assert len(report.errors) == 1
    reason = report.errors[0].reason
    assert "设备类别 (category) is missing" in reason
    assert "columns found: 资产编号, 设备名称, 所属学校" in reason
    assert "accepted names: 设备类别, 类别" in reason


def test_import_rejects_a_file_without_an_asset_tag_column(conn, registry):
    rows = [["名称", "类别"], ["教师机", "台式机"]]
    report = assert_rejected_unchanged(conn, csv_bytes(rows))

    assert "资产编号 (asset tag) is missing; columns found: 名称, 类别" in (
        report.errors[0].reason
    )


def test_import_rejects_duplicate_asset_tags_naming_both_lines(conn, registry):
    rows = [HEADER_ZH, ROWS[1], ROWS[2], ROWS[3], [*ROWS[3][:1], *ROWS[1][1:]]]
    report = assert_rejected_unchanged(conn, csv_bytes(rows))

    assert errors_of(report) == [(4, "资产编号"), (5, "资产编号")]
    assert "appears again on line 5" in report.errors[0].reason
    assert "also appears on line 4" in report.errors[1].reason


@pytest.mark.parametrize(
    ("edit", "want"),
    [
        ((2, 6, "HK999"), (4, "所属学校", "unknown school 'HK999'; give the school")),
        ((1, 8, "2021-02-30"), (3, "购置日期", "'2021-02-30' is not a real date")),
        (
            (0, 9, "-12.00"),
            (2, "金额", "price -12.00 is negative; amounts must be ≥ 0"),
        ),
    ],
    ids=["unknown-school", "bad-date", "negative-price"],
)
def test_import_rejects_a_bad_cell_naming_its_line_and_column(
    conn, registry, edit, want
):
    (row, column, value), (line, header, reason) = edit, want
    bad = [list(r) for r in ROWS]
    bad[row][column] = value
    report = assert_rejected_unchanged(conn, csv_bytes([HEADER_ZH, *bad]))

    assert errors_of(report) == [(line, header)]
    assert report.errors[0].value == value
    assert report.errors[0].reason.startswith(reason)


def test_import_rejects_bytes_valid_in_neither_utf8_nor_gb18030(conn, registry):
    data = csv_bytes([HEADER_ZH, *ROWS]) + b"HK-0010,\x80\xff\r\n"
    report = assert_rejected_unchanged(conn, data)

    assert errors_of(report) == [(6, None)]
    assert "neither UTF-8 nor GB18030" in report.errors[0].reason


def test_import_reports_every_bad_row_of_many(conn, registry):
    header = [
        "资产编号",
        "设备名称",
        "设备类别",
        "所属学校",
        "购置日期",
        "金额",
        "保修截止",
    ]
    rows = [
        header,
        ["G1", "ok", "台式机", "HK001", "2021-06-30", "1", "2024-06-30"],
        ["G2", "x" * 201, "冰箱", "HK001", "", "", ""],
        ["", "no tag", "台式机", "HK001", "", "", ""],
        ["G4", "", "", "HK001", "", "abc", ""],
        ["G5", "", "台式机", "HK001", "2022-01-01", "", "2021-12-31"],
        ["G6", "ok", "台式机", "HK001", "2021-06-30", "1", "2024-06-30"],
    ]
    report = assert_rejected_unchanged(conn, csv_bytes(rows))

    assert errors_of(report) == [
        (3, "设备名称"),
        (3, "设备类别"),
        (4, "资产编号"),
        (5, "设备类别"),
        (5, "金额"),
        (6, "保修截止"),
    ]
    reasons = [e.reason for e in report.errors]
    assert "name has 201 characters; the limit is 200" in reasons[0]
    assert "unknown category '冰箱'; use one of audio" in reasons[1]
    assert "warranty ends 2021-12-31, before the purchase date 2022-01-01" in reasons[5]


def test_import_with_unknown_school_code_raises_not_found(conn, registry):
    with pytest.raises(NotFound, match="HK404"):
        import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS]), "a.csv", school_code="HK404")


def test_import_scope_rejects_rows_and_moves_outside_it(conn, registry):
    import_ledger(conn, csv_bytes([HEADER_ZH, *ROWS]), "a.csv")
    conn.commit()
    before = registry_state(conn)
    haikou = frozenset({registry["HK001"], registry["HK002"]})

    rows = [
        ["资产编号", "设备类别", "所属学校"],
        ["HK-0001", "台式机", "HK002"],
        ["SY-0001", "中控", "HK001"],
        ["N-1", "中控", "SY001"],
    ]
    report = import_ledger(conn, csv_bytes(rows), "a.csv", scope=haikou)
    conn.commit()

    assert errors_of(report) == [(4, "所属学校")]
    assert "outside your scope" in report.errors[0].reason

    report = import_ledger(conn, csv_bytes(rows[:3]), "a.csv", scope=haikou)
    conn.commit()
    assert errors_of(report) == [(3, "资产编号")]
    assert "registered to school SY001" in report.errors[0].reason
    assert registry_state(conn) == before


# The command line


def test_import_assets_command_prints_summary_and_exits_zero(
    settings, registry, tmp_path, capsys
):
    path = tmp_path / "台账.csv"
    path.write_bytes(csv_bytes([HEADER_ZH, *ROWS], "gb18030"))

    assert main(["import-assets", str(path)]) == 0
    out = capsys.readouterr().out
    assert "导入成功。Import succeeded." in out
    assert re.search(r"新增 created:\s+4", out)
    assert re.search(r"新建教室 rooms created:\s+2", out)

    assert main(["import-assets", str(path), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["created"], summary["unchanged"]) == (0, 4)


def test_import_assets_command_lists_bad_rows_and_exits_one(
    settings, registry, tmp_path, capsys, conn
):
    bad = [list(r) for r in ROWS]
    bad[0][9] = "-12.00"
    bad[3][8] = "明天"
    path = tmp_path / "bad.csv"
    path.write_bytes(csv_bytes([HEADER_ZH, *bad]))

    assert main(["import-assets", str(path), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "导入失败，未写入任何数据。Import failed; nothing was written." in out
    assert (
        "第 2 行 line 2 [金额] '-12.00': 金额不能为负数。price -12.00 is negative"
    ) in out
    assert "第 5 行 line 5 [购置日期] '明天': 日期无法识别" in out
    assert "cannot read '明天' as a date" in out
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_import_assets_command_names_an_unknown_school(
    settings, registry, tmp_path, capsys
):
    path = tmp_path / "a.csv"
    path.write_bytes(csv_bytes([HEADER_ZH, *ROWS]))

    assert main(["import-assets", str(path), "--school", "NOPE"]) == 1
    assert "school 'NOPE' does not exist" in capsys.readouterr().err


# The API


@pytest.fixture
def api(settings, registry) -> Iterator[str]:
    """The web app served by uvicorn on a loopback port."""
    with running_server(settings) as url:
        yield url


def _token(conn, name: str, role: str, **scope: str) -> dict[str, str]:
    create_user(conn, name=name, role=role, **scope)
    token = create_token(conn, user_name=name)
    conn.commit()
    return {"Authorization": f"Bearer {token}"}


def _upload(api: str, headers, data: bytes, name="台账.csv", **form: str):
    return httpx.post(
        f"{api}/api/v1/imports/assets",
        headers=headers,
        files={"file": (name, data, "text/csv")},
        data=form,
        timeout=30,
    )


def test_api_import_by_province_admin_creates_devices(api, conn):
    headers = _token(conn, "prov", "province_admin")

    response = _upload(api, headers, csv_bytes([HEADER_ZH, *ROWS]))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["errors"] == []
    assert body["summary"]["created"] == 4
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (4,)


def test_api_dry_run_writes_nothing(api, conn):
    headers = _token(conn, "prov", "province_admin")

    response = _upload(api, headers, csv_bytes([HEADER_ZH, *ROWS]), dry_run="true")

    assert response.status_code == 200, response.text
    assert response.json()["summary"]["created"] == 4
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_api_invalid_ledger_is_422_with_the_row_report(api, conn):
    headers = _token(conn, "prov", "province_admin")
    bad = [list(r) for r in ROWS]
    bad[2][9] = "-5"

    response = _upload(api, headers, csv_bytes([HEADER_ZH, *bad]))

    assert response.status_code == 422
    body = response.json()
    assert body["ok"] is False
    assert body["errors"] == [
        {
            "line": 4,
            "column": "金额",
            "value": "-5",
            "reason": "price -5.00 is negative; amounts must be ≥ 0 "
            "(write 0 if unknown)",
            "reason_zh": "金额不能为负数",
        }
    ]
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_api_school_admin_imports_only_into_their_school(api, conn):
    headers = _token(conn, "hk_clerk", "school_admin", school_code="HK001")
    rows = [["资产编号", "设备类别", "教室"], ["C1", "电脑", "机房"]]

    own = _upload(api, headers, csv_bytes(rows))
    other = _upload(api, headers, csv_bytes(rows), school="SY001")

    assert own.status_code == 200, own.text
    school = conn.execute(
        "SELECT s.code FROM devices d JOIN schools s ON s.id = d.school_id"
    ).fetchall()
    assert school == [("HK001",)]
    assert other.status_code == 404
    assert "outside your scope" in other.json()["detail"]


def test_api_district_bureau_gets_row_errors_for_schools_outside_its_region(api, conn):
    headers = _token(conn, "hk_bureau", "district_bureau", region_code="460100")

    response = _upload(api, headers, csv_bytes([HEADER_ZH, *ROWS]))

    assert response.status_code == 422
    assert [(e["line"], e["column"]) for e in response.json()["errors"]] == [
        (5, "所属学校")
    ]
    assert "SY001" in response.json()["errors"][0]["reason"]


def test_api_refuses_non_admins_and_oversized_files(api, conn):
    from edufleet_collector.web.api.imports import MAX_UPLOAD_BYTES

    engineer = conn.execute(
        "INSERT INTO engineers (name, region_code) "
        "VALUES ('王工', '460100') RETURNING id"
    ).fetchone()
    assert engineer is not None
    headers = _token(conn, "eng", "engineer", engineer_id=engineer[0])
    assert _upload(api, headers, csv_bytes([HEADER_ZH])).status_code == 403

    admin = _token(conn, "prov", "province_admin")
    response = _upload(api, admin, b"x" * (MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 413
    assert "larger than the 20 MB upload limit" in response.json()["detail"]
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)
