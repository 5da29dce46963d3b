"""``edufleet backup`` and ``edufleet restore``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..ops.backup import backup, restore
from .common import start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("backup", help="dump the database (and broker identities)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument(
        "--dynsec-file", type=Path, help="Mosquitto's dynamic-security.json"
    )
    parser.set_defaults(handler=run_backup)

    parser = sub.add_parser(
        "restore", help="restore a backup folder into an empty database"
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--dynsec-target", type=Path, help="where to put dynamic-security.json"
    )
    parser.set_defaults(handler=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    settings = start()
    result = backup(settings.database_url, args.out, dynsec_file=args.dynsec_file)
    print(f"backup in {result.folder} ({result.dump_bytes:,} bytes of database dump)")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    settings = start()
    restore(args.folder, settings.database_url, dynsec_target=args.dynsec_target)
    print(
        f"restored {args.folder}; run `edufleet migrate` to bring the schema up to date"
    )
    return 0
