"""``edufleet migrate``: bring the schema to this code's version."""

from __future__ import annotations

import argparse
import logging

from ..db.migrate import migrate
from ..db.partitions import maintain_telemetry
from .common import connect, start

log = logging.getLogger("edufleet.collector.migrate")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("migrate", help="apply the database migrations")
    parser.set_defaults(handler=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    settings = start()
    with connect(settings) as conn:
        report = migrate(conn, storage_mode=settings.storage_mode)
        conn.autocommit = False
        maintain_telemetry(
            conn,
            retention_days=settings.telemetry_retention_days,
            days_ahead=settings.telemetry_partitions_ahead_days,
        )
        conn.commit()
    applied = ", ".join(f"{v:04d}" for v in report.applied) or "none"
    print(
        f"schema at version {report.current_version:04d}; applied: {applied}; "
        f"storage mode: {report.storage_mode} ({report.reason})"
    )
    return 0
