"""Time the asset ledger import on a generated 100,000-row CSV and a 20,000-row xlsx.

Creates a fresh database on the server named by EDUFLEET_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, seeds 30 schools
with plain INSERTs, then prints rows/s and the time of each phase for

- the first import (every row created),
- the same file again (every row unchanged),
- an .xlsx ledger,
- the peak Python memory of a dry run,

and, as the baseline measured in the same run, a bare ``COPY`` of the same CSV
file into an unindexed temporary table, with the import/COPY ratio.

    .venv/bin/python bench/bench_import.py [--rows 100000] [--xlsx-rows 20000]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from openpyxl import Workbook

from edufleet_collector.db.migrate import migrate
from edufleet_collector.registry.ledger import ImportReport, import_ledger
from edufleet_collector.registry.ledger_fields import FIELDS

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
HEADER = [field.label_zh for field in FIELDS]
"""The Chinese column names, one per field the import knows."""
KINDS = [
    ("台式机", "教师机", "联想", "启天M430"),
    ("投影机", "教室投影", "爱普生", "CB-X06"),
    ("交互平板", "智慧黑板", "希沃", "BG86"),
    ("中控", "多媒体中控", "快捷", "KJ-8000"),
    ("展台", "实物展台", "鸿合", "HZ-V300"),
    ("音箱", "教室音箱", "漫步者", "S880"),
    ("打印机", "办公打印机", "惠普", "M1136"),
    ("交换机", "楼层交换机", "华为", "S1730"),
    ("摄像头", "录播摄像头", "海康威视", "DS-2CD"),
    ("班牌", "电子班牌", "希沃", "CB21"),
]
SCHOOLS = 30


def _database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _seed(conn: psycopg.Connection) -> list[str]:
    conn.execute(
        "INSERT INTO regions (code, parent_code, name_zh, name_en, level) VALUES "
        "('460000', NULL, '海南省', 'Hainan', 'province'), "
        "('460100', '460000', '海口市', 'Haikou', 'city'), "
        "('460200', '460000', '三亚市', 'Sanya', 'city')"
    )
    codes = [f"S{n:03d}" for n in range(SCHOOLS)]
    for n, code in enumerate(codes):
        conn.execute(
            "INSERT INTO schools (code, name, region_code) VALUES (%s, %s, %s)",
            [code, f"第{n + 1}中学", "460100" if n % 2 else "460200"],
        )
    conn.commit()
    return codes


def _rows(count: int, schools: list[str], prefix: str) -> list[list[object]]:
    """Ledger rows in the mixed spellings schools use: dates, amounts, categories."""
    date_forms = (
        "{y}-{m:02d}-{d:02d}",
        "{y}/{m}/{d}",
        "{y}年{m}月{d}日",
        "{y}.{m}.{d}",
    )
    rows: list[list[object]] = []
    for i in range(count):
        category, name, brand, model = KINDS[i % len(KINDS)]
        y, m, d = 2015 + i % 9, 1 + i % 12, 1 + i % 28
        form = date_forms[i % len(date_forms)]
        rows.append(
            [
                f"{prefix}{i:07d}",
                f"{name}{i % 100:02d}",
                category,
                brand,
                model,
                f"SN{i:010d}",
                schools[i % len(schools)],
                f"{1 + i % 6}{i % 40:02d}教室",
                form.format(y=y, m=m, d=d),
                f"{1000 + (i * 37) % 9000:,}.00",
                form.format(y=y + 3, m=m, d=d),
            ]
        )
    return rows


def _write_csv(path: Path, rows: list[list[object]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(rows)


def _write_xlsx(path: Path, rows: list[list[object]]) -> None:
    # A normal (not write-only) workbook records the sheet size, as Excel and
    # WPS do. openpyxl stores text inline, which reads slower than the shared
    # strings Excel writes, so these figures are on the cautious side.
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    book.save(path)


def _timed_import(conn: psycopg.Connection, path: Path) -> tuple[float, ImportReport]:
    data = path.read_bytes()
    start = time.perf_counter()
    report = import_ledger(conn, data, path.name)
    conn.commit()
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"import of {path.name} failed: {report.errors[:5]}")
    return elapsed, report


def _print_run(label: str, elapsed: float, report: ImportReport) -> None:
    s = report.summary
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in s.seconds.items())
    print(
        f"{label}: {s.rows_read:,} rows in {elapsed:.2f} s = "
        f"{s.rows_read / elapsed:,.0f} rows/s; created {s.created:,}, updated "
        f"{s.updated:,}, unchanged {s.unchanged:,}, rooms created {s.rooms_created:,}"
    )
    print(f"    phases: {phases}")


def _baseline_copy(conn: psycopg.Connection, path: Path) -> float:
    """COPY the raw CSV file into a bare temp table: the floor for any import."""
    data = path.read_bytes()
    columns = ", ".join(f"c{i} text" for i in range(len(HEADER)))
    start = time.perf_counter()
    conn.execute(f"CREATE TEMP TABLE bare_copy ({columns}) ON COMMIT DROP")
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY bare_copy FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')"
        ) as copy,
    ):
        copy.write(data[3:])  # without the byte-order mark
    conn.commit()
    return time.perf_counter() - start


def _peak_memory(conn: psycopg.Connection, path: Path) -> float:
    """Peak Python allocations (MB) of a dry run: read, parse, check and COPY."""
    data = path.read_bytes()
    tracemalloc.start()
    try:
        import_ledger(conn, data, path.name, dry_run=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    conn.commit()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--xlsx-rows", type=int, default=20_000)
    args = parser.parse_args()

    server = os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_SERVER
    name = f"edufleet_bench_import_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            psycopg.connect(_database(server, name)) as conn,
        ):
            migrate(conn)
            conn.commit()
            schools = _seed(conn)
            csv_path = Path(tmp) / "ledger.csv"
            xlsx_path = Path(tmp) / "ledger.xlsx"
            _write_csv(csv_path, _rows(args.rows, schools, "A"))
            _write_xlsx(xlsx_path, _rows(args.xlsx_rows, schools, "X"))
            size = csv_path.stat().st_size / 1e6
            print(f"database {name}; CSV {args.rows:,} rows ({size:.1f} MB)")

            first, report = _timed_import(conn, csv_path)
            _print_run("csv first import", first, report)
            again, report = _timed_import(conn, csv_path)
            _print_run("csv re-import", again, report)
            baseline = _baseline_copy(conn, csv_path)
            print(
                f"baseline: bare COPY of the same CSV into a temp table took "
                f"{baseline:.2f} s = {args.rows / baseline:,.0f} rows/s; "
                f"first import / COPY = {first / baseline:.1f}x, "
                f"re-import / COPY = {again / baseline:.1f}x"
            )
            peak = _peak_memory(conn, csv_path)
            print(
                f"memory: a dry run of the CSV peaks at {peak:.0f} MB of Python "
                f"allocations, {peak / size:.1f}x the file size"
            )
            xlsx_time, report = _timed_import(conn, xlsx_path)
            _print_run(f"xlsx {args.xlsx_rows:,} rows, first import", xlsx_time, report)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
