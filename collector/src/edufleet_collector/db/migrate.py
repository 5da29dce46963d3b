"""Versioned SQL migrations, on plain PostgreSQL or on TimescaleDB.

Migrations are the files ``migrations/NNNN_name.sql``. A migration may have a
variant per storage mode, ``NNNN_name.timescale.sql`` or ``NNNN_name.native.sql``,
which runs right after the common file, in the same transaction.

The storage mode is chosen once, when the first migration runs, and recorded in
``schema_info``:

- ``timescale`` when the TimescaleDB extension is *usable*: available, and
  ``CREATE EXTENSION`` succeeds (it fails when the library is installed but not
  in ``shared_preload_libraries``);
- ``native`` otherwise: telemetry is range-partitioned by PostgreSQL itself and
  the collector keeps the partitions (see ``partitions.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg
from psycopg import sql

from ..errors import MigrationError
from . import Conn

log = logging.getLogger("edufleet.collector.migrate")

StorageMode = Literal["timescale", "native"]
MIGRATION_LOCK_ID = 0x0EDF1EE7
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|native))?\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    common: str
    variants: dict[str, str]

    def script(self, mode: StorageMode) -> str:
        return self.common + "\n" + self.variants.get(mode, "")

    @property
    def checksum(self) -> str:
        parts = [self.common] + [self.variants[k] for k in sorted(self.variants)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class MigrationReport:
    storage_mode: StorageMode
    applied: list[int]
    current_version: int
    reason: str


def load_migrations() -> list[Migration]:
    """Read the migration files shipped with the package, in version order."""
    folder = resources.files("edufleet_collector.db") / "migrations"
    found: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in folder.iterdir():
        match = _FILE_RE.match(entry.name)
        if not match:
            continue
        version, name, variant = int(match[1]), match[2], match[3] or "common"
        if names.setdefault(version, name) != name:
            raise MigrationError(
                f"two migrations share version {version:04d}: {names[version]!r} and "
                f"{name!r}; renumber one of them"
            )
        found.setdefault(version, {})[variant] = entry.read_text(encoding="utf-8")
    migrations = []
    for version in sorted(found):
        files = found[version]
        if "common" not in files:
            raise MigrationError(
                f"migration {version:04d} has a variant but no common file"
            )
        common = files.pop("common")
        migrations.append(Migration(version, names[version], common, files))
    return migrations


def _has_table(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()
    return bool(row and row[0])


def choose_storage_mode(conn: Conn, wanted: str = "auto") -> tuple[StorageMode, str]:
    """Decide between TimescaleDB and native partitioning, with the reason why."""
    if wanted == "native":
        return "native", "native partitioning requested by EDUFLEET_STORAGE_MODE"

    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        reason = "the timescaledb extension is not installed on this server"
    else:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            reason = f"CREATE EXTENSION timescaledb failed: {str(exc).strip()}"
        else:
            return "timescale", f"TimescaleDB {row[0]} is usable"

    if wanted == "timescale":
        raise MigrationError(
            f"EDUFLEET_STORAGE_MODE=timescale but {reason}; add timescaledb to "
            "shared_preload_libraries and restart PostgreSQL, or use auto"
        )
    return "native", reason


def migrate(conn: Conn, *, storage_mode: str = "auto") -> MigrationReport:
    """Bring the database to the newest migration; safe to re-run and to race."""
    migrations = load_migrations()
    newest = migrations[-1].version if migrations else 0
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MigrationError("migrate() needs a connection outside any transaction")
    was_autocommit = conn.autocommit
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
    try:
        with conn.transaction():
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_info (
                    key text PRIMARY KEY,
                    value text NOT NULL
                );
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
        row = conn.execute(
            "SELECT value FROM schema_info WHERE key = 'storage_mode'"
        ).fetchone()
        if row is not None:
            mode: StorageMode = "timescale" if row[0] == "timescale" else "native"
            reason = "recorded when the database was created"
            if mode == "timescale":
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        else:
            mode, reason = choose_storage_mode(conn, storage_mode)
            conn.execute(
                "INSERT INTO schema_info (key, value) VALUES ('storage_mode', %s)",
                [mode],
            )
        log.info("storage mode %s: %s", mode, reason)

        applied = {
            int(v): str(c)
            for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")
        }
        if applied and max(applied) > newest:
            raise MigrationError(
                f"the database is at migration {max(applied):04d} but this code knows "
                f"only up to {newest:04d}; upgrade edufleet before running it here"
            )

        done = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    log.warning(
                        "migration %04d_%s changed after it was applied; not re-run",
                        migration.version,
                        migration.name,
                    )
                continue
            with conn.transaction():
                conn.execute(sql.SQL(migration.script(mode)))
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    [migration.version, migration.name, migration.checksum],
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            done.append(migration.version)
        current = max([*applied, *done], default=0)
        return MigrationReport(mode, done, current, reason)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
        conn.autocommit = was_autocommit


def storage_mode_of(conn: Conn) -> StorageMode:
    """The storage mode recorded in a migrated database."""
    if not _has_table(conn, "schema_info"):
        raise MigrationError(
            "the database has not been migrated; run `edufleet migrate`"
        )
    row = conn.execute(
        "SELECT value FROM schema_info WHERE key = 'storage_mode'"
    ).fetchone()
    return "timescale" if row and row[0] == "timescale" else "native"
