"""What ledger columns and cells mean: header names, dates, amounts, categories.

Every parser takes a raw cell and returns a value or raises ``CellError`` whose
message says what is wrong and how to write it instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from .ledger_read import Cell


class CellError(ValueError):
    """One cell cannot be used: the reason in English and a short one in Chinese."""

    def __init__(self, message: str, *, zh: str) -> None:
        super().__init__(message)
        self.zh = zh


@dataclass(frozen=True)
class Field:
    """A device attribute a ledger column can fill."""

    key: str
    label_zh: str
    label_en: str
    aliases: tuple[str, ...]
    max_length: int | None = None

    @property
    def label(self) -> str:
        return f"{self.label_zh} ({self.label_en})"


# Aliases are listed best first: when a file has two columns for one field,
# the one whose name comes earlier here is used and the other is ignored.
FIELDS: tuple[Field, ...] = (
    Field(
        "asset_tag",
        "资产编号",
        "asset tag",
        (
            "资产编号",
            "资产编码",
            "资产代码",
            "资产号",
            "资产标签",
            "固定资产编号",
            "固定资产编码",
            "设备编号",
            "设备编码",
            "asset tag",
            "asset no",
            "asset number",
            "asset id",
            "tag",
        ),
        64,
    ),
    Field(
        "name",
        "设备名称",
        "name",
        ("设备名称", "资产名称", "名称", "name", "device name", "asset name"),
        200,
    ),
    Field(
        "category",
        "设备类别",
        "category",
        (
            "设备类别",
            "类别",
            "设备类型",
            "资产类别",
            "资产分类",
            "类型",
            "分类",
            "category",
            "type",
            "device type",
        ),
    ),
    Field("brand", "品牌", "brand", ("品牌", "厂商", "生产厂家", "厂家", "brand"), 100),
    Field("model", "型号", "model", ("型号", "规格型号", "规格", "model"), 100),
    Field(
        "serial",
        "序列号",
        "serial",
        ("序列号", "出厂编号", "机身序列号", "sn", "serial", "serial number"),
        100,
    ),
    Field(
        "school",
        "所属学校",
        "school",
        (
            "所属学校",
            "学校",
            "学校名称",
            "学校代码",
            "学校编码",
            "使用单位",
            "school",
            "school code",
            "school name",
        ),
    ),
    Field(
        "room",
        "使用地点/教室",
        "room",
        (
            "使用地点/教室",
            "使用地点",
            "教室",
            "存放地点",
            "安装位置",
            "位置",
            "room",
            "location",
        ),
        100,
    ),
    Field(
        "purchase_date",
        "购置日期",
        "purchase date",
        (
            "购置日期",
            "购买日期",
            "采购日期",
            "购入日期",
            "取得日期",
            "purchase date",
            "purchased",
            "purchased on",
        ),
    ),
    Field(
        "price",
        "金额",
        "price",
        (
            "金额",
            "购置金额",
            "价格",
            "单价",
            "原值",
            "资产原值",
            "price",
            "amount",
            "cost",
        ),
    ),
    Field(
        "warranty_until",
        "保修截止",
        "warranty until",
        (
            "保修截止",
            "保修截止日期",
            "保修截至",
            "保修到期",
            "保修到期日",
            "保修期至",
            "质保截止",
            "质保到期",
            "warranty until",
            "warranty end",
            "warranty",
        ),
    ),
)
FIELDS_BY_KEY = {f.key: f for f in FIELDS}

_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|【[^】]*】")
_HEADER_NOISE = re.compile(r"[\s_\-.*:/]+")


def normalize_header(text: str) -> str:
    """Fold width, case, spacing, units in brackets and required-marks away."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _BRACKETS.sub("", folded)
    return _HEADER_NOISE.sub("", folded)


_ALIAS_RANK: dict[str, tuple[str, int]] = {}
for _field in FIELDS:
    for _rank, _alias in enumerate(_field.aliases):
        _ALIAS_RANK.setdefault(normalize_header(_alias), (_field.key, _rank))


def field_of_header(text: str) -> tuple[str, int] | None:
    """The field a header names and the alias's rank, or None if it is unknown."""
    return _ALIAS_RANK.get(normalize_header(text))


def accepted_names(key: str) -> str:
    return ", ".join(FIELDS_BY_KEY[key].aliases)


# Words schools use for device kinds, mapped to device_categories.code.
CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "desktop": (
        "台式机",
        "台式电脑",
        "台式计算机",
        "电脑",
        "计算机",
        "微机",
        "学生机",
        "教师机",
        "电脑一体机",
        "pc",
        "desktop pc",
    ),
    "laptop": ("笔记本", "笔记本电脑", "手提电脑", "notebook"),
    "projector": ("投影机", "投影仪", "投影", "激光投影机"),
    "panel": (
        "交互平板",
        "交互式平板",
        "智能平板",
        "一体机",
        "教学一体机",
        "触控一体机",
        "触摸一体机",
        "智慧黑板",
        "纳米黑板",
        "电子白板",
        "白板",
        "interactive panel",
        "smart board",
    ),
    "controller": ("中控", "多媒体中控", "中控系统", "中控主机", "中央控制器"),
    "doc_camera": ("展台", "实物展台", "视频展台", "document camera"),
    "audio": (
        "音箱",
        "音响",
        "功放",
        "话筒",
        "麦克风",
        "无线话筒",
        "扩音器",
        "speaker",
        "amplifier",
        "microphone",
    ),
    "printer": ("打印机", "复印机", "多功能一体机", "打印复印一体机"),
    "network": (
        "交换机",
        "无线ap",
        "ap",
        "无线接入点",
        "路由器",
        "无线路由器",
        "switch",
        "access point",
    ),
    "camera": (
        "摄像头",
        "监控",
        "监控摄像头",
        "摄像机",
        "网络摄像机",
        "录播",
        "录播系统",
        "录播主机",
    ),
    "class_sign": ("班牌", "电子班牌"),
}


def normalize_word(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


class CategoryMap:
    """Resolves the words in a ledger's category column to category codes."""

    def __init__(self, categories: Iterable[tuple[str, str, str]]) -> None:
        self.codes: list[str] = []
        self._words: dict[str, str] = {}
        for code, name_zh, name_en in categories:
            self.codes.append(code)
            for word in (code, name_zh, name_en, *name_zh.split("/")):
                self._words.setdefault(normalize_word(word), code)
        for code, words in CATEGORY_SYNONYMS.items():
            if code in self.codes:
                for word in words:
                    self._words.setdefault(normalize_word(word), code)

    def resolve(self, text: str) -> str:
        code = self._words.get(normalize_word(text))
        if code is None:
            raise CellError(
                f"unknown category {text!r}; use one of {', '.join(self.codes)} "
                "or a Chinese name such as 台式机, 投影机, 交互平板, 中控, 展台, "
                "音箱, 打印机, 交换机, 摄像头, 班牌",
                zh="设备类别无法识别，请填写允许的类别",
            )
        return code


def cell_text(value: Cell) -> str:
    """A cell as trimmed text; whole numbers from xlsx lose their '.0'."""
    if value.__class__ is str:
        return " ".join(value.split())
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if _is_midnight(value) else value.isoformat()
    return " ".join(str(value).split())


def _is_midnight(value: datetime) -> bool:
    return (value.hour, value.minute, value.second) == (0, 0, 0)


def fold(value: Cell) -> str:
    """Cell text with full-width characters folded to their ASCII forms."""
    text = cell_text(value)
    return text if text.isascii() else unicodedata.normalize("NFKC", text).strip()


EARLIEST_YEAR = 1950
LATEST_YEAR = 2100
EXCEL_EPOCH = date(1899, 12, 30)
_EXCEL_SERIAL_MAX = (date(LATEST_YEAR, 12, 31) - EXCEL_EPOCH).days
_DATE_YMD = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_SERIAL = re.compile(r"\d{1,5}(?:\.0*)?")
_TIME_SUFFIX = re.compile(r"[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")
DATE_HINT = (
    "write it as 2021-06-30, 2021/6/30, 2021.6.30, 2021年6月30日 or an Excel date"
)


def parse_date(value: Cell) -> date:
    """A date from a datetime cell, an Excel serial number or common written forms."""
    if isinstance(value, datetime):
        return _check_year(value.date(), str(value))
    if isinstance(value, date):
        return _check_year(value, str(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_serial(float(value), str(value))
    return _parse_date_text(fold(value))


@lru_cache(maxsize=4096)
def _parse_date_text(text: str) -> date:
    # Ledgers repeat dates (one purchase, many devices); errors are not cached.
    text = _TIME_SUFFIX.sub("", text).strip()
    match = _DATE_YMD.fullmatch(text) or _DATE_COMPACT.fullmatch(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        try:
            return _check_year(date(year, month, day), text)
        except ValueError as exc:
            if isinstance(exc, CellError):
                raise
            raise CellError(
                f"{text!r} is not a real date ({exc}); {DATE_HINT}",
                zh="日期不存在，请检查年月日",
            ) from exc
    if _SERIAL.fullmatch(text):
        return _from_serial(float(text), text)
    raise CellError(
        f"cannot read {text!r} as a date; {DATE_HINT}",
        zh="日期无法识别，请写成 2021-06-30 或 2021年6月30日",
    )


def _from_serial(serial: float, shown: str) -> date:
    if not 1 <= serial <= _EXCEL_SERIAL_MAX:
        raise CellError(
            f"{shown!r} is not a date: as an Excel date number it must lie between "
            f"1 and {_EXCEL_SERIAL_MAX}; {DATE_HINT}",
            zh="日期无法识别，请写成 2021-06-30 或 2021年6月30日",
        )
    return _check_year(EXCEL_EPOCH + timedelta(days=int(serial)), shown)


def _check_year(day: date, shown: str) -> date:
    if not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise CellError(
            f"{shown!r} reads as {day.isoformat()}, outside the years "
            f"{EARLIEST_YEAR}–{LATEST_YEAR}; check the date",
            zh=f"日期年份超出 {EARLIEST_YEAR}–{LATEST_YEAR}，请检查",
        )
    return day


PRICE_MAX = Decimal("9999999999.99")
_CENT = Decimal("0.01")
_CURRENCY = re.compile(r"^(?:¥|rmb|cny)|(?:元|rmb|cny)$")
_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")


def parse_amount(value: Cell) -> Decimal:
    """A price in yuan from a number cell or text such as '￥4,299.00' or '4299元'."""
    if isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))
        rounded = amount.quantize(_CENT)
        # A spreadsheet float such as 4298.999999999999 means 4299.00.
        if abs(rounded - amount) < Decimal("0.000001"):
            amount = rounded
    else:
        return _parse_amount_text(cell_text(value))
    return _check_amount(amount)


@lru_cache(maxsize=4096)
def _parse_amount_text(shown: str) -> Decimal:
    text = fold(shown).casefold().replace(",", "").replace(" ", "")
    text = _CURRENCY.sub("", text).strip()
    if not _AMOUNT.fullmatch(text):
        raise CellError(
            f"cannot read {shown!r} as an amount; write a number of "
            "yuan such as 4299.00, 4,299.00 or ￥4,299.00",
            zh="金额无法识别，请填写数字，如 4299.00",
        )
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise CellError(
            f"cannot read {shown!r} as an amount",
            zh="金额无法识别，请填写数字，如 4299.00",
        ) from exc
    return _check_amount(amount)


def _check_amount(amount: Decimal) -> Decimal:
    if amount < 0:
        raise CellError(
            f"price {amount:.2f} is negative; amounts must be ≥ 0 (write 0 if unknown)",
            zh="金额不能为负数",
        )
    if amount != amount.quantize(_CENT):
        raise CellError(
            f"price {amount} has more than 2 decimal places; round it to fen (0.01)",
            zh="金额最多保留两位小数",
        )
    if amount > PRICE_MAX:
        raise CellError(
            f"price {amount:,.2f} exceeds the limit of {PRICE_MAX:,}; check the amount",
            zh="金额超出上限，请检查",
        )
    return amount.quantize(_CENT)


def check_length(text: str, key: str) -> str:
    limit = FIELDS_BY_KEY[key].max_length
    if limit is not None and len(text) > limit:
        raise CellError(
            f"{FIELDS_BY_KEY[key].label_en} has {len(text)} characters; the limit is "
            f"{limit}, shorten it",
            zh=f"{FIELDS_BY_KEY[key].label_zh}过长，最多 {limit} 个字符",
        )
    return text


def header_columns(cells: Sequence[Cell]) -> Mapping[int, str]:
    """Column index → header text as written, for the non-empty header cells."""
    return {i: cell_text(c) for i, c in enumerate(cells) if cell_text(c)}
