"""Back up and restore the database and the broker's dynamic-security file.

A backup is a folder holding ``edufleet.dump`` (``pg_dump`` custom format)
and, when given, a copy of Mosquitto's ``dynamic-security.json`` with every
device's identity. Restoring into TimescaleDB brackets ``pg_restore`` with
``timescaledb_pre_restore()`` and ``timescaledb_post_restore()`` as its
documentation requires.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from ..errors import EdufleetError

log = logging.getLogger("edufleet.collector.backup")

DUMP_NAME = "edufleet.dump"
DYNSEC_NAME = "dynamic-security.json"
MANIFEST_NAME = "manifest.json"


class BackupError(EdufleetError):
    """pg_dump, pg_restore or a file copy failed; the message carries its output."""


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    dump_bytes: int
    dynsec_copied: bool


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed; install the Debian package postgresql-client"
        )
    return path


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(
            f"{Path(command[0]).name} failed: {result.stderr.strip()[-2000:]}"
        )


def backup(
    database_url: str, out: Path, *, dynsec_file: Path | None = None
) -> BackupResult:
    """Write a backup into a new folder under ``out``, named by the UTC time."""
    folder = out / datetime.now(UTC).strftime("edufleet-%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=False)
    dump = folder / DUMP_NAME
    _run(
        [
            _tool("pg_dump"),
            "--format=custom",
            "--no-owner",
            f"--file={dump}",
            database_url,
        ]
    )

    copied = False
    if dynsec_file is not None:
        if not dynsec_file.exists():
            raise BackupError(f"dynamic-security file {dynsec_file} does not exist")
        json.loads(dynsec_file.read_text())  # refuse to back up a corrupt file
        shutil.copy2(dynsec_file, folder / DYNSEC_NAME)
        copied = True

    with psycopg.connect(database_url) as conn:
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        mode = conn.execute(
            "SELECT value FROM schema_info WHERE key = 'storage_mode'"
        ).fetchone()
    manifest = {
        "created_at": datetime.now(UTC).isoformat(),
        "schema_version": version[0] if version else None,
        "storage_mode": mode[0] if mode else None,
        "dynamic_security": copied,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("backup written to %s (%d bytes)", folder, dump.stat().st_size)
    return BackupResult(folder, dump.stat().st_size, copied)


def restore(
    folder: Path, database_url: str, *, dynsec_target: Path | None = None
) -> None:
    """Restore a backup folder into an empty database (and the broker file)."""
    dump = folder / DUMP_NAME
    if not dump.exists():
        raise BackupError(f"{folder} holds no {DUMP_NAME}; is it a backup folder?")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    timescale = manifest.get("storage_mode") == "timescale"

    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        if tables and tables[0]:
            raise BackupError(
                "the target database is not empty; restore into a new database "
                "(createdb) so nothing is overwritten"
            )
        if timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
    try:
        _run(
            [
                _tool("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                f"--dbname={database_url}",
                str(dump),
            ]
        )
    finally:
        if timescale:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")

    if dynsec_target is not None:
        source = folder / DYNSEC_NAME
        if not source.exists():
            raise BackupError(f"{folder} holds no {DYNSEC_NAME} to restore")
        shutil.copy2(source, dynsec_target)
    log.info("restored %s into the database", folder)
