"""A generated sample province: regions, calendars, schools, rooms, devices,
QR codes, engineers, assignments and demo users.

The generator is deterministic: the same arguments give the same province,
down to names, asset tags, serial numbers and device uids. Only the QR label
codes are drawn from ``secrets``, so that knowing the seed never lets anyone
guess a label.

It loads into an empty registry only; regions and the province calendar are
reused when they are already there. Bulk rows go in with COPY, with ids
reserved from the tables' identity sequences, and the devices' secondary
indexes are built after the load.

The calendar's terms, public holidays and make-up working days are sample
data for 2025-2027, written from the State Council's published pattern; the
2027 dates in particular are an estimate. Replace them with the official
notices (the State Council's 国务院办公厅关于部分节假日安排的通知 and the
province's school calendar) before relying on SLA figures.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from importlib import resources

from psycopg import sql

from ..accounts import create_user, hash_password
from ..db import Conn
from ..errors import Conflict, InvalidInput
from .codes import new_device_code

log = logging.getLogger("edufleet.collector.seed")

DEMO_PASSWORD = "edufleet-demo"
PROVINCE = "460000"
CALENDAR_CODE = "hainan-schools"

# Approximate share of the province's schools in each city or county.
DIVISION_WEIGHTS = {
    "460100": 22.0,
    "460200": 8.0,
    "460300": 0.2,
    "460400": 9.0,
    "469001": 1.5,
    "469002": 5.0,
    "469005": 5.0,
    "469006": 5.5,
    "469007": 4.5,
    "469021": 3.0,
    "469022": 2.5,
    "469023": 5.0,
    "469024": 4.5,
    "469025": 2.0,
    "469026": 2.0,
    "469027": 5.0,
    "469028": 3.5,
    "469029": 1.5,
    "469030": 2.0,
}
DISTRICT_WEIGHTS = {"460105": 20.0, "460106": 30.0, "460107": 25.0, "460108": 25.0}

# Terms, then holidays and make-up working days: (first, last, note).
TERMS = [
    ("2025 autumn term", date(2025, 9, 1), date(2026, 1, 23)),
    ("2026 spring term", date(2026, 3, 2), date(2026, 7, 10)),
    ("2026 autumn term", date(2026, 9, 1), date(2027, 1, 22)),
    ("2027 spring term", date(2027, 2, 22), date(2027, 7, 9)),
]
HOLIDAYS = [
    (date(2025, 10, 1), date(2025, 10, 8), "国庆节、中秋节 National Day, Mid-Autumn"),
    (date(2026, 1, 1), date(2026, 1, 3), "元旦 New Year"),
    (date(2026, 2, 15), date(2026, 2, 23), "春节 Spring Festival"),
    (date(2026, 4, 4), date(2026, 4, 6), "清明节 Qingming"),
    (date(2026, 5, 1), date(2026, 5, 5), "劳动节 Labour Day"),
    (date(2026, 6, 19), date(2026, 6, 21), "端午节 Dragon Boat"),
    (date(2026, 9, 25), date(2026, 9, 27), "中秋节 Mid-Autumn"),
    (date(2026, 10, 1), date(2026, 10, 7), "国庆节 National Day"),
    (date(2027, 1, 1), date(2027, 1, 3), "元旦 New Year"),
    (date(2027, 2, 5), date(2027, 2, 12), "春节 Spring Festival"),
    (date(2027, 4, 3), date(2027, 4, 5), "清明节 Qingming"),
    (date(2027, 5, 1), date(2027, 5, 5), "劳动节 Labour Day"),
    (date(2027, 6, 9), date(2027, 6, 9), "端午节 Dragon Boat"),
    (date(2027, 9, 15), date(2027, 9, 15), "中秋节 Mid-Autumn"),
    (date(2027, 10, 1), date(2027, 10, 7), "国庆节 National Day"),
]
MAKEUP_DAYS = [
    (date(2025, 9, 28), "国庆节调休上课 make-up day"),
    (date(2025, 10, 11), "国庆节调休上课 make-up day"),
    (date(2026, 1, 4), "元旦调休上课 make-up day"),
    (date(2026, 2, 14), "春节调休上课 make-up day"),
    (date(2026, 2, 28), "春节调休上课 make-up day"),
    (date(2026, 5, 9), "劳动节调休上课 make-up day"),
    (date(2026, 9, 20), "国庆节调休上课 make-up day"),
    (date(2026, 10, 10), "国庆节调休上课 make-up day"),
    (date(2027, 4, 25), "劳动节调休上课 make-up day"),
    (date(2027, 5, 8), "劳动节调休上课 make-up day"),
    (date(2027, 9, 26), "国庆节调休上课 make-up day"),
    (date(2027, 10, 9), "国庆节调休上课 make-up day"),
]
DAY_HOURS = [
    ("morning", time(7, 30), time(12, 0)),
    ("afternoon", time(14, 30), time(17, 30)),
]
SUMMER_HOURS = [
    ("morning", time(7, 30), time(12, 0)),
    ("afternoon", time(15, 0), time(18, 0)),
]
SUMMERS = [(date(y, 5, 1), date(y, 9, 30)) for y in (2025, 2026, 2027)]
EVENING = ("evening self-study", time(19, 0), time(21, 30))

REFERENCE_DAY = date(2026, 9, 1)
"""Purchase dates spread over the ten years before this day."""

# category: (name_zh, [(brand, [models])], price range in yuan, warranty years)
CATALOGUE: dict[str, tuple[str, list[tuple[str, list[str]]], tuple[int, int], int]] = {
    "desktop": (
        "电脑",
        [
            ("联想/Lenovo", ["启天M437", "启天M450", "扬天M4000s"]),
            ("华为/Huawei", ["擎云W515x", "擎云B730"]),
            ("同方/Tongfang", ["超越E500", "超翔TK630"]),
            ("戴尔/Dell", ["OptiPlex 3090", "OptiPlex 7010"]),
        ],
        (3200, 5600),
        3,
    ),
    "laptop": (
        "笔记本电脑",
        [
            ("联想/Lenovo", ["ThinkPad E14", "昭阳K4e"]),
            ("华为/Huawei", ["MateBook D14"]),
        ],
        (4200, 7200),
        2,
    ),
    "projector": (
        "投影仪",
        [
            ("爱普生/Epson", ["CB-X06", "CB-FH52", "CB-L200X"]),
            ("明基/BenQ", ["MX3291", "E580"]),
            ("索尼/Sony", ["VPL-EX435"]),
        ],
        (2800, 6500),
        3,
    ),
    "panel": (
        "交互式平板",
        [
            ("希沃/Seewo", ["F86EA", "MC86FEA", "E75EA"]),
            ("鸿合/Hitevision", ["HD-I8677E", "HD-I7590E"]),
            ("海信/Hisense", ["86MR6DE"]),
        ],
        (9000, 17000),
        5,
    ),
    "controller": (
        "多媒体中控",
        [
            ("希沃/Seewo", ["ZK-20", "ZK-30"]),
            ("鸿合/Hitevision", ["HZK-200", "HZK-300"]),
            ("锐取/Reach", ["RZK-8"]),
        ],
        (1500, 3200),
        3,
    ),
    "doc_camera": (
        "实物展台",
        [("希沃/Seewo", ["SE-A5", "SE-B7"]), ("鸿合/Hitevision", ["HZ-V600"])],
        (700, 2100),
        2,
    ),
    "audio": (
        "功放音箱",
        [("惠威/Hivi", ["X3", "VA-200"]), ("得胜/Takstar", ["E180M", "EBS-30"])],
        (400, 2600),
        2,
    ),
    "printer": (
        "打印机",
        [
            ("惠普/HP", ["LaserJet Pro M404dn", "LaserJet MFP M233"]),
            ("兄弟/Brother", ["HL-5595DN"]),
            ("联想/Lenovo", ["LJ2405D"]),
        ],
        (1200, 3600),
        1,
    ),
    "network": (
        "交换机",
        [
            ("华为/Huawei", ["S5735-L24T4S-A", "S1730S-L24T-A"]),
            ("华三/H3C", ["S5130S-28S-EI"]),
            ("锐捷/Ruijie", ["RG-S2910-24GT4XS-E"]),
        ],
        (1500, 12000),
        3,
    ),
    "camera": (
        "摄像头",
        [
            ("海康威视/Hikvision", ["DS-2CD3T46WDV3-I3", "DS-2CD2346FWD-IS"]),
            ("大华/Dahua", ["DH-IPC-HFW2433M"]),
        ],
        (500, 1600),
        2,
    ),
    "class_sign": (
        "电子班牌",
        [("希沃/Seewo", ["CB21A"]), ("鸿合/Hitevision", ["HB-215"])],
        (2000, 3600),
        2,
    ),
}
PERIPHERALS = {"projector", "panel", "audio", "doc_camera"}

SURNAMES = "王李张刘陈杨黄吴林符周郑何邢羊梁吉云冯麦"
GIVEN = "海明华丽伟芳强娟涛静军燕斌琳勇婷春雨志国晓文"
ROADS = ["人民大道", "海府路", "龙昆南路", "滨海大道", "解放西路", "椰海大道"]
ROADS += ["学院路", "文明东路", "新华路", "建设路", "中山路", "和平路", "育才路"]
NUMERALS = "零一二三四五六七八九"
PRIMARY_GRADES = ["一年级", "二年级", "三年级", "四年级", "五年级", "六年级"]
JUNIOR_GRADES = ["初一", "初二", "初三"]
SECONDARY_GRADES = [*JUNIOR_GRADES, "高一", "高二", "高三"]
SKILL_SETS = [
    ["pc", "av", "network"],
    ["pc", "av"],
    ["av", "network"],
    ["pc", "network"],
]


@dataclass
class SeedSummary:
    """What a seed loaded, and the demo logins it created."""

    regions: int = 0
    calendars: int = 0
    schools: int = 0
    rooms: int = 0
    devices: int = 0
    device_codes: int = 0
    engineers: int = 0
    assignments: int = 0
    users: list[tuple[str, str]] = field(default_factory=list)
    password: str = DEMO_PASSWORD


@dataclass(frozen=True)
class _Region:
    code: str
    parent_code: str | None
    name_zh: str
    name_en: str
    level: str
    lat: float
    lon: float


@dataclass
class _School:
    id: int
    code: str
    name: str
    region: _Region
    kind: str
    boarding: bool


def chinese_number(n: int) -> str:
    """1..999 in Chinese numerals as school names use them: 一, 十二, 一百零五."""
    if not 1 <= n <= 999:
        raise InvalidInput(f"{n} is outside 1..999", field="n")
    hundreds, rest = divmod(n, 100)
    tens, ones = divmod(rest, 10)
    text = NUMERALS[hundreds] + "百" if hundreds else ""
    if tens:
        text += ("" if tens == 1 and not hundreds else NUMERALS[tens]) + "十"
    elif hundreds and ones:
        text += "零"
    if ones:
        text += NUMERALS[ones]
    return text


def read_regions() -> list[_Region]:
    """The regions of the sample province, parents before children."""
    text = (
        resources.files("edufleet_collector.registry")
        .joinpath("data/hainan-regions.csv")
        .read_text(encoding="utf-8")
    )
    return [
        _Region(
            code=row["code"],
            parent_code=row["parent_code"] or None,
            name_zh=row["name_zh"],
            name_en=row["name_en"],
            level=row["level"],
            lat=float(row["lat"]),
            lon=float(row["lon"]),
        )
        for row in csv.DictReader(io.StringIO(text))
    ]


def _reserve_ids(conn: Conn, table: str, count: int) -> int:
    """Take ``count`` consecutive ids from a table's identity sequence; the first."""
    if count == 0:
        return 0
    row = conn.execute(
        "SELECT setval(s, nextval(s) + %s - 1) - %s + 1 "
        "FROM pg_get_serial_sequence(%s, 'id') AS s",
        [count, count, table],
    ).fetchone()
    assert row is not None
    return int(row[0])


def _copy(
    conn: Conn, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> int:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


@contextmanager
def _indexes_built_after(conn: Conn, tables: Sequence[str]) -> Iterator[None]:
    """Drop the tables' plain indexes and build them again after the block.

    A bulk load into an empty table is faster when indexes are built once,
    sorted, than when every row updates each of them (the trigram index of
    100,000 devices: 16 s to build, 22 s to maintain row by row). Indexes that
    back a constraint (primary keys, UNIQUE) stay. The definitions are read
    from the catalog, so they are whatever the migrations made; inside the
    seed's transaction a failure restores them all.
    """
    rows = conn.execute(
        """
        SELECT i.relname, pg_get_indexdef(x.indexrelid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = ANY(%s::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        """,
        [list(tables)],
    ).fetchall()
    for name, _ in rows:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _, definition in rows:
        conn.execute(definition)


def _allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by weight with the largest-remainder rule, each at least 1."""
    if total < len(weights):
        ranked = sorted(weights, key=lambda k: -weights[k])
        return {k: int(k in ranked[:total]) for k in weights}
    scale = sum(weights.values())
    shares = {k: max(1.0, total * w / scale) for k, w in weights.items()}
    counts = {k: int(s) for k, s in shares.items()}
    by_remainder = sorted(weights, key=lambda k: (counts[k] - shares[k], k))
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    return counts


def registry_counts(conn: Conn) -> tuple[int, int]:
    """How many schools and devices the registry holds."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM schools), (SELECT count(*) FROM devices)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _ensure_empty(conn: Conn) -> None:
    schools, devices = registry_counts(conn)
    if schools or devices:
        raise Conflict(
            f"the registry already holds {schools} schools and {devices} devices; "
            "the sample province loads into an empty registry only: migrate a "
            "fresh database and seed that"
        )


def _load_regions(conn: Conn, regions: list[_Region]) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO regions "
            "(code, parent_code, name_zh, name_en, level, lat, lon) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (code) DO NOTHING",
            [
                (r.code, r.parent_code, r.name_zh, r.name_en, r.level, r.lat, r.lon)
                for r in regions
            ],
        )
    return len(regions)


def _days(first: date, last: date) -> Iterator[date]:
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


def _hours_rows(calendar_id: int, evening: bool) -> list[tuple[object, ...]]:
    extra = [EVENING] if evening else []
    rows: list[tuple[object, ...]] = [
        (calendar_id, None, None, opens, closes, label)
        for label, opens, closes in [*DAY_HOURS, *extra]
    ]
    for valid_from, valid_to in SUMMERS:
        rows += [
            (calendar_id, valid_from, valid_to, opens, closes, "summer " + label)
            for label, opens, closes in [*SUMMER_HOURS, *extra]
        ]
    return rows


_HOURS_COLUMNS = ("calendar_id", "valid_from", "valid_to", "opens", "closes", "label")


def _province_calendar(conn: Conn) -> tuple[int, int]:
    """The province's calendar id (created when missing) and calendars created."""
    row = conn.execute(
        "SELECT id FROM calendars WHERE code = %s", [CALENDAR_CODE]
    ).fetchone()
    if row is not None:
        return int(row[0]), 0
    row = conn.execute(
        "INSERT INTO calendars (code, name, region_code) "
        "VALUES (%s, %s, %s) RETURNING id",
        [CALENDAR_CODE, "海南省中小学校历 Hainan school calendar (sample)", PROVINCE],
    ).fetchone()
    assert row is not None
    calendar_id = int(row[0])
    _copy(
        conn,
        "calendar_terms",
        ("calendar_id", "name", "starts_on", "ends_on"),
        [(calendar_id, name, first, last) for name, first, last in TERMS],
    )

    def in_term(day: date) -> bool:
        return any(first <= day <= last for _, first, last in TERMS)

    days = [
        (calendar_id, day, False, note)
        for first, last, note in HOLIDAYS
        for day in _days(first, last)
    ]
    # A make-up working day in a school holiday is no school day: leave it out.
    days += [
        (calendar_id, day, True, note) for day, note in MAKEUP_DAYS if in_term(day)
    ]
    _copy(conn, "calendar_days", ("calendar_id", "day", "is_school_day", "note"), days)
    _copy(conn, "calendar_hours", _HOURS_COLUMNS, _hours_rows(calendar_id, False))
    return calendar_id, 1


def _person(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(SURNAMES) + given


def _divisions(
    regions: list[_Region], cities: int | None
) -> list[tuple[_Region, list[_Region]]]:
    """The cities and counties that get schools, each with the regions holding them."""
    children: dict[str, list[_Region]] = {}
    for region in regions:
        if region.parent_code:
            children.setdefault(region.parent_code, []).append(region)
    top = sorted(
        children.get(PROVINCE, []),
        key=lambda r: (-DIVISION_WEIGHTS.get(r.code, 1.0), r.code),
    )
    if cities is not None:
        if not 1 <= cities <= len(top):
            raise InvalidInput(
                f"--cities {cities} is outside 1..{len(top)}, the province's "
                "cities and counties",
                field="cities",
            )
        top = top[:cities]
    return [(city, children.get(city.code, []) or [city]) for city in top]


def _plan_schools(
    rng: random.Random,
    divisions: list[tuple[_Region, list[_Region]]],
    total: int,
    first_id: int,
) -> list[_School]:
    per_city = _allocate(
        total, {c.code: DIVISION_WEIGHTS.get(c.code, 1.0) for c, _ in divisions}
    )
    schools: list[_School] = []
    for city, leaves in divisions:
        weights = {r.code: DISTRICT_WEIGHTS.get(r.code, 1.0) for r in leaves}
        per_leaf = _allocate(per_city[city.code], weights)
        counters = {"primary": 0, "junior": 0, "secondary": 0}
        rural = city.level != "city"
        for leaf in leaves:
            for n in range(1, per_leaf[leaf.code] + 1):
                kind = rng.choices(["primary", "junior", "secondary"], [60, 25, 15])[0]
                counters[kind] += 1
                boarding = kind != "primary" and rng.random() < (0.7 if rural else 0.3)
                schools.append(
                    _School(
                        id=first_id + len(schools),
                        code=f"{leaf.code}{n:04d}",
                        name=_school_name(city.name_zh, kind, counters[kind]),
                        region=leaf,
                        kind=kind,
                        boarding=boarding,
                    )
                )
    return schools


def _school_name(prefix: str, kind: str, n: int) -> str:
    if kind == "primary":
        return (
            f"{prefix}实验小学" if n == 1 else f"{prefix}第{chinese_number(n - 1)}小学"
        )
    if kind == "junior":
        return f"{prefix}第{chinese_number(n)}初级中学"
    if n == 2:
        return f"{prefix}实验中学"
    return f"{prefix}第{chinese_number(n - 1 if n > 2 else n)}中学"


def _school_row(
    rng: random.Random, school: _School, calendar_id: int | None
) -> tuple[object, ...]:
    region = school.region
    spread = 0.05 if region.level == "district" else 0.12
    if region.code == "460300":
        spread = 0.01
    place = ("海口市" if region.level == "district" else "") + region.name_zh
    address = f"{place}{rng.choice(ROADS)}{rng.randint(1, 299)}号"
    return (
        school.id,
        school.code,
        school.name,
        region.code,
        address,
        round(region.lat + rng.uniform(-spread, spread), 5),
        round(region.lon + rng.uniform(-spread, spread), 5),
        _person(rng),
        f"0898-6{rng.randint(0, 9_999_999):07d}",
        calendar_id,
        school.boarding,
    )


_SCHOOL_COLUMNS = (
    "id",
    "code",
    "name",
    "region_code",
    "address",
    "lat",
    "lon",
    "contact_name",
    "contact_phone",
    "calendar_id",
    "boarding",
)


@dataclass
class _Room:
    name: str
    building: str
    floor: str
    kind: str
    devices: list[tuple[str, str]] = field(default_factory=list)
    """(category, name) in order; peripherals hang off the room's controller."""


def _plan_rooms(rng: random.Random, school: _School, budget: int) -> list[_Room]:
    """The school's rooms and their devices, exactly ``budget`` devices in all."""
    closet = _Room("网络机房", "综合楼", "1", "network", [("network", "核心交换机")])
    office = _Room("教务处", "综合楼", "2", "office", [("printer", "教务处打印机")])
    exam = _Room("标准化考场1", "综合楼", "3", "exam")
    exam.devices = [(c, f"考场{CATALOGUE[c][0]}") for c in ("controller", "desktop")]
    exam.devices += [(c, f"考场{CATALOGUE[c][0]}") for c in ("projector", "audio")]
    exam.devices.append(("camera", "考场监控摄像头"))
    rooms = [closet, office, exam]
    if budget >= 40:
        lab = _Room(
            "计算机教室1", "综合楼", "4", "lab", [("network", "机房接入交换机")]
        )
        lab.devices += [
            ("desktop", f"学生机{n:02d}") for n in range(1, budget // 5 + 1)
        ]
        rooms.append(lab)
    if budget >= 60:
        office.devices.append(("laptop", "教务处笔记本电脑"))

    grades = {"primary": PRIMARY_GRADES, "junior": JUNIOR_GRADES}.get(
        school.kind, SECONDARY_GRADES
    )
    floors_with_switch: set[int] = set()
    planned = sum(len(r.devices) for r in rooms)
    index = 0
    while planned < budget:
        grade = index % len(grades)
        name = f"{grades[grade]}({index // len(grades) + 1})班"
        floor = grade // 2 + 1
        room = _Room(name, "教学楼", str(floor), "classroom")
        room.devices = [("controller", f"{name}中控"), ("desktop", f"{name}电脑")]
        display = "panel" if rng.random() < 0.6 else "projector"
        room.devices += [(display, name + CATALOGUE[display][0])]
        room.devices += [("audio", f"{name}功放音箱")]
        if rng.random() < 0.5:
            room.devices.append(("doc_camera", f"{name}实物展台"))
        if rng.random() < 0.4:
            room.devices.append(("class_sign", f"{name}电子班牌"))
        if floor not in floors_with_switch:
            floors_with_switch.add(floor)
            closet.devices.append(("network", f"教学楼{floor}层接入交换机"))
            planned += 1
        rooms.append(room)
        planned += len(room.devices)
        index += 1

    excess = planned - budget
    while excess > 0:
        room = rooms[-1]
        cut = min(excess, len(room.devices))
        del room.devices[len(room.devices) - cut :]
        excess -= cut
        if not room.devices and len(rooms) > 1:
            rooms.pop()
    return rooms


def _device_rows(
    rng: random.Random,
    plans: list[tuple[_School, list[_Room]]],
    first_room_id: int,
    first_device_id: int,
    service_life: dict[str, int],
) -> Iterator[tuple[object, ...]]:
    """The device rows of the planned rooms, ids counted from the given firsts."""
    room_id = first_room_id
    device_id = first_device_id
    for school, rooms in plans:
        sequence = 0
        for room in rooms:
            controller: int | None = None
            for category, name in room.devices:
                sequence += 1
                row = _device(
                    rng,
                    school,
                    sequence=sequence,
                    category=category,
                    name=name,
                    service_life=service_life,
                )
                parent = controller if category in PERIPHERALS else None
                yield (device_id, *row, room_id, parent)
                if category == "controller":
                    controller = device_id
                device_id += 1
            room_id += 1


def _device(
    rng: random.Random,
    school: _School,
    *,
    sequence: int,
    category: str,
    name: str,
    service_life: dict[str, int],
) -> tuple[object, ...]:
    _, brands, (low, high), warranty_years = CATALOGUE[category]
    brand, models = rng.choice(brands)
    purchased = REFERENCE_DAY - timedelta(days=rng.randrange(1, 3650))
    age_years = (REFERENCE_DAY - purchased).days / 365.25
    roll = rng.random()
    if age_years > service_life.get(category, 8) and roll < 0.25:
        status = "retired"
    elif roll > 0.985:
        status = "spare"
    elif roll > 0.98:
        status = "under_repair"
    else:
        status = "in_service"
    serial = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=12))
    return (
        f"d{rng.getrandbits(60):015x}",
        f"{school.code}-{purchased.year}-{sequence:04d}",
        name,
        category,
        brand,
        rng.choice(models),
        serial,
        school.id,
        purchased,
        f"{rng.randrange(low, high) // 10 * 10}.00",
        purchased.replace(year=purchased.year + warranty_years)
        if not (purchased.month == 2 and purchased.day == 29)
        else purchased + timedelta(days=365 * warranty_years),
        status,
    )


_DEVICE_COLUMNS = (
    "id",
    "uid",
    "asset_tag",
    "name",
    "category",
    "brand",
    "model",
    "serial",
    "school_id",
    "purchase_date",
    "price",
    "warranty_until",
    "status",
    "room_id",
    "parent_id",
)


def _engineers(
    conn: Conn,
    rng: random.Random,
    schools: list[_School],
    per_district: int,
) -> tuple[int, int, int | None]:
    """Engineers per district that has schools, and a primary and backup per school.

    Answers the engineers and assignments made and the first engineer's id.
    """
    by_region: dict[str, list[_School]] = {}
    for school in schools:
        by_region.setdefault(school.region.code, []).append(school)
    count = per_district * len(by_region)
    first_id = _reserve_ids(conn, "engineers", count)
    rows: list[tuple[object, ...]] = []
    links: list[tuple[object, ...]] = []
    for region_code, members in by_region.items():
        ids = []
        for _ in range(per_district):
            n = len(rows) + 1
            ids.append(first_id + len(rows))
            status = "on_leave" if n == 2 else "active"
            rows.append(
                (
                    first_id + len(rows),
                    _person(rng),
                    f"13{rng.randint(0, 999_999_999):09d}",
                    f"eng{n:04d}@edufleet.example",
                    f"eng{n:04d}",
                    region_code,
                    SKILL_SETS[(n - 1) % len(SKILL_SETS)],
                    status,
                )
            )
        for index, school in enumerate(members):
            if not ids:
                break
            links.append((school.id, ids[index % len(ids)], "primary", 0))
            if len(ids) > 1:
                links.append((school.id, ids[(index + 1) % len(ids)], "backup", 1))
    columns = ("id", "name", "phone", "email", "wecom_userid", "region_code")
    _copy(conn, "engineers", (*columns, "skills", "status"), rows)
    _copy(conn, "school_engineers", ("school_id", "engineer_id", "role", "rank"), links)
    return len(rows), len(links), first_id if rows else None


def _users(
    conn: Conn,
    divisions: list[tuple[_Region, list[_Region]]],
    schools: list[_School],
    engineer_id: int | None,
    password: str,
) -> list[tuple[str, str]]:
    users: list[tuple[str, str, dict[str, object]]] = [
        ("province-admin", "province_admin", {})
    ]
    for city, leaves in divisions:
        users.append(
            (f"bureau-{city.code}", "district_bureau", {"region_code": city.code})
        )
        users += [
            (f"bureau-{leaf.code}", "district_bureau", {"region_code": leaf.code})
            for leaf in leaves
            if leaf.code != city.code
        ]
    if schools:
        first = schools[0].code
        users.append((f"school-{first}", "school_admin", {"school_code": first}))
    if engineer_id is not None:
        users.append(("engineer-0001", "engineer", {"engineer_id": engineer_id}))
    for name, role, scope in users:
        create_user(conn, name=name, role=role, **scope)  # type: ignore[arg-type]
    conn.execute(
        "UPDATE users SET password_hash = %s WHERE name = ANY(%s)",
        [hash_password(password), [name for name, _, _ in users]],
    )
    return [(name, role) for name, role, _ in users]


def vacuum_registry(conn: Conn) -> None:
    """VACUUM (ANALYZE) the bulk-loaded tables, so index-only scans need no heap.

    VACUUM cannot run in a transaction: call this outside one, after the seed.
    """
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        for table in ("devices", "device_codes", "rooms", "schools"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    finally:
        conn.autocommit = autocommit


def seed_province(
    conn: Conn,
    *,
    schools: int,
    devices_per_school: int,
    cities: int | None = None,
    seed: int = 0,
    engineers_per_district: int = 2,
    password: str = DEMO_PASSWORD,
) -> SeedSummary:
    """Load a generated province into an empty registry, in one transaction."""
    if schools < 1 or devices_per_school < 0 or engineers_per_district < 0:
        raise InvalidInput(
            "--schools must be at least 1, --devices-per-school and "
            "--engineers-per-district at least 0",
            field="schools",
        )
    rng = random.Random(seed)
    summary = SeedSummary(password=password)
    with conn.transaction():
        conn.execute("LOCK TABLE schools, rooms, devices IN SHARE ROW EXCLUSIVE MODE")
        _ensure_empty(conn)
        regions = read_regions()
        summary.regions = _load_regions(conn, regions)
        province_calendar, summary.calendars = _province_calendar(conn)
        divisions = _divisions(regions, cities)

        planned = _plan_schools(
            rng, divisions, schools, _reserve_ids(conn, "schools", schools)
        )
        boarding = [s for s in planned if s.boarding and s.kind == "secondary"]
        first_calendar = _reserve_ids(conn, "calendars", len(boarding))
        own_calendar = {s.id: first_calendar + i for i, s in enumerate(boarding)}
        _copy(
            conn,
            "calendars",
            ("id", "code", "name", "region_code", "parent_id"),
            [
                (
                    own_calendar[s.id],
                    f"school-{s.code}",
                    f"{s.name}作息（含晚自习）",
                    s.region.code,
                    province_calendar,
                )
                for s in boarding
            ],
        )
        _copy(
            conn,
            "calendar_hours",
            _HOURS_COLUMNS,
            [row for s in boarding for row in _hours_rows(own_calendar[s.id], True)],
        )
        summary.calendars += len(boarding)
        summary.schools = _copy(
            conn,
            "schools",
            _SCHOOL_COLUMNS,
            [_school_row(rng, s, own_calendar.get(s.id)) for s in planned],
        )

        service_life: dict[str, int] = dict(
            conn.execute("SELECT code, service_life_years FROM device_categories")
        )
        plans = [(s, _plan_rooms(rng, s, devices_per_school)) for s in planned]
        first_room = _reserve_ids(conn, "rooms", sum(len(r) for _, r in plans))
        room_rows = [
            (room_id, school.id, room.name, room.building, room.floor, room.kind)
            for room_id, (school, room) in enumerate(
                ((s, r) for s, rooms in plans for r in rooms), start=first_room
            )
        ]
        summary.rooms = _copy(
            conn,
            "rooms",
            ("id", "school_id", "name", "building", "floor", "kind"),
            room_rows,
        )
        first_device = _reserve_ids(conn, "devices", schools * devices_per_school)
        device_rows = list(
            _device_rows(rng, plans, first_room, first_device, service_life)
        )
        with _indexes_built_after(conn, ["devices", "device_codes"]):
            summary.devices = _copy(conn, "devices", _DEVICE_COLUMNS, device_rows)
            summary.device_codes = _copy(
                conn,
                "device_codes",
                ("code", "device_id"),
                ((new_device_code(), row[0]) for row in device_rows),
            )
        summary.engineers, summary.assignments, first_engineer = _engineers(
            conn, rng, planned, engineers_per_district
        )
        summary.users = _users(conn, divisions, planned, first_engineer, password)
        # Give the planner statistics of the new rows.
        for table in ("schools", "rooms", "devices", "device_codes", "engineers"):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    log.info(
        "seeded %d schools, %d rooms, %d devices, %d engineers",
        summary.schools,
        summary.rooms,
        summary.devices,
        summary.engineers,
    )
    return summary
