"""``edufleet import-assets``: load a school's asset ledger (资产台账)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import NotFound
from ..registry.ledger import ImportReport, import_ledger
from .common import connect, start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "import-assets",
        help="import an asset ledger (CSV or .xlsx); all rows or none",
        description="Import an asset ledger (资产台账) from CSV (UTF-8 or GB18030) "
        "or .xlsx. Every row is checked first; if any is bad nothing is written "
        "and every bad row is listed. Rows are matched to devices by asset tag.",
    )
    parser.add_argument("file", type=Path, help="the ledger file, .csv or .xlsx")
    parser.add_argument(
        "--school",
        metavar="CODE",
        help="put every row in this school (the file's school column is ignored)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file and count what would change, without writing",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run_import_assets)


def run_import_assets(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {str(args.file)!r}: {exc.strerror}", file=sys.stderr)
        return 1
    with connect(settings) as conn:
        try:
            report = import_ledger(
                conn,
                data,
                args.file.name,
                school_code=args.school,
                dry_run=args.dry_run,
            )
        except NotFound as exc:
            print(f"edufleet import-assets: {exc}", file=sys.stderr)
            return 1
    if args.format == "json":
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report, args.file.name))
    return 0 if report.ok else 1


def format_report(report: ImportReport, filename: str) -> str:
    """The report as a school clerk reads it, in Chinese and English."""
    s = report.summary
    lines: list[str] = []
    if not report.ok:
        bad_rows = len({e.line for e in report.errors if e.line is not None})
        lines.append(
            f"导入失败，未写入任何数据。Import failed; nothing was written. "
            f"{filename}: {len(report.errors)} 个错误 errors in {bad_rows} 行 rows "
            f"(已读 {s.rows_read} 行 rows read)"
        )
        for error in report.errors:
            where = (
                f"第 {error.line} 行 line {error.line}" if error.line else "文件 file"
            )
            column = f" [{error.column}]" if error.column else ""
            value = f" {error.value!r}" if error.value else ""
            lines.append(f"  {where}{column}{value}: {error.reason_zh}。{error.reason}")
        return "\n".join(lines)

    if s.dry_run:
        lines.append(
            "试运行，未写入数据。Dry run; nothing was written. "
            "The import would do the following:"
        )
    else:
        lines.append("导入成功。Import succeeded.")
    encoding = f", {s.encoding}" if s.encoding else ""
    lines.append(f"  文件 file:               {filename} ({s.file_kind}{encoding})")
    lines.append(f"  读取行数 rows read:      {s.rows_read}")
    lines.append(f"  新增 created:            {s.created}")
    lines.append(f"  更新 updated:            {s.updated}")
    lines.append(f"  未变 unchanged:          {s.unchanged}")
    lines.append(f"  新建教室 rooms created:  {s.rooms_created}")
    if s.moved:
        lines.append(f"  调往其他学校 moved to another school: {s.moved}")
    if s.ignored_columns:
        lines.append(f"  未使用的列 ignored columns: {', '.join(s.ignored_columns)}")
    phases = ", ".join(f"{k} {v:.2f}" for k, v in s.seconds.items())
    lines.append(f"  用时 elapsed:            {s.elapsed:.2f} s ({phases})")
    return "\n".join(lines)
