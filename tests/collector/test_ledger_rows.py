"""Ledger row checks on literal rows, without a database."""

from datetime import date
from decimal import Decimal

from edufleet_collector.registry.ledger_fields import CategoryMap
from edufleet_collector.registry.ledger_rows import School, parse_ledger

HK = School(1, "HK001", "海口市第一中学")
SY = School(2, "SY001", "三亚市第二中学")
TWIN_A = School(3, "WC001", "文昌中学")
TWIN_B = School(4, "WC002", "文昌中学")
SCHOOLS = {
    "HK001": [HK],
    "海口市第一中学": [HK],
    "SY001": [SY],
    "WC001": [TWIN_A],
    "WC002": [TWIN_B],
    "文昌中学": [TWIN_A, TWIN_B],
}
CATEGORIES = CategoryMap(
    [("desktop", "台式电脑", "Desktop PC"), ("projector", "投影仪", "Projector")]
)


def numbered(*rows: list[object]) -> list[tuple[int, list[object]]]:
    return list(enumerate((list(r) for r in rows), start=1))


def test_parse_ledger_finds_the_header_below_title_rows_and_keeps_line_numbers():
    parsed = parse_ledger(
        numbered(
            ["海口市第一中学 2024 年资产台账"],
            [],
            ["资产编号", "设备类别", "所属学校", "购置日期", "金额"],
            ["A1", "台式机", "HK001", "2021/6/30", "4,299.00"],
            ["A2", "投影机", "海口市第一中学", "", ""],
        ),
        schools=SCHOOLS,
        categories=CATEGORIES,
    )

    assert parsed.errors == []
    assert [(r.line, r.asset_tag, r.category, r.school_id) for r in parsed.rows] == [
        (4, "A1", "desktop", 1),
        (5, "A2", "projector", 1),
    ]
    assert parsed.rows[0].purchase_date == date(2021, 6, 30)
    assert parsed.rows[0].price == Decimal("4299.00")


def test_parse_ledger_prefers_the_better_alias_and_reports_the_other_as_ignored():
    parsed = parse_ledger(
        numbered(
            ["设备编号", "资产编号", "类别", "学校", "备注"],
            ["X-9", "A1", "电脑", "SY001", "旧机"],
        ),
        schools=SCHOOLS,
        categories=CATEGORIES,
    )

    assert parsed.errors == []
    assert parsed.rows[0].asset_tag == "A1"
    assert parsed.columns["asset_tag"] == "资产编号"
    assert sorted(parsed.ignored_columns) == ["备注", "设备编号"]


def test_parse_ledger_rejects_two_columns_for_the_same_field():
    parsed = parse_ledger(
        numbered(["资产编号", "设备类别", "所属学校", "金额", "金额（元）"], ["A1"]),
        schools=SCHOOLS,
        categories=CATEGORIES,
    )

    assert [(e.line, e.column) for e in parsed.errors] == [(1, "金额（元）")]
    assert parsed.errors[0].reason == (
        "columns 4 ('金额') and 5 ('金额（元）') both mean 金额 (price); "
        "delete or rename one"
    )
    assert parsed.rows == []


def test_parse_ledger_asks_for_the_code_when_a_school_name_is_shared():
    parsed = parse_ledger(
        numbered(["资产编号", "设备类别", "所属学校"], ["A1", "电脑", "文昌中学"]),
        schools=SCHOOLS,
        categories=CATEGORIES,
    )

    assert [(e.line, e.column, e.value) for e in parsed.errors] == [
        (2, "所属学校", "文昌中学")
    ]
    assert "matches 2 schools (WC001, WC002)" in parsed.errors[0].reason
    assert parsed.errors[0].reason_zh == "校名对应多所学校，请改填学校代码"


def test_parse_ledger_skips_blank_and_totals_rows_but_not_rows_without_a_tag():
    parsed = parse_ledger(
        numbered(
            ["序号", "资产编号", "设备类别", "所属学校", "金额"],
            ["1", "A1", "电脑", "HK001", "100"],
            ["", "", "", "", ""],
            ["2", "", "电脑", "HK001", "200"],
            ["", "合计", "", "", "300"],
        ),
        schools=SCHOOLS,
        categories=CATEGORIES,
    )

    assert parsed.rows_read == 2
    assert [(e.line, e.column) for e in parsed.errors] == [(4, "资产编号")]
    assert parsed.errors[0].reason == "asset tag is empty; every row needs one"


def test_parse_ledger_limits_rows_to_the_scope():
    parsed = parse_ledger(
        numbered(["资产编号", "设备类别", "所属学校"], ["A1", "电脑", "SY001"]),
        schools=SCHOOLS,
        categories=CATEGORIES,
        scope=frozenset({HK.id}),
    )

    assert [(e.line, e.column) for e in parsed.errors] == [(2, "所属学校")]
    assert "SY001 (三亚市第二中学) is outside your scope" in parsed.errors[0].reason


def test_parse_ledger_reports_an_asset_tag_over_the_database_limit():
    parsed = parse_ledger(
        numbered(["资产编号", "设备类别", "所属学校"], ["T" * 65, "电脑", "HK001"]),
        schools=SCHOOLS,
        categories=CATEGORIES,
    )

    assert [(e.line, e.column) for e in parsed.errors] == [(2, "资产编号")]
    assert parsed.errors[0].reason == (
        "asset tag has 65 characters; the limit is 64, shorten it"
    )
