import logging

import psycopg
import pytest

from edufleet_collector.db.migrate import load_migrations, migrate, storage_mode_of
from edufleet_collector.db.partitions import maintain_telemetry
from edufleet_collector.errors import MigrationError


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    ).fetchall()
    return {r[0] for r in rows}


def test_migrate_from_empty_creates_registry_and_records_versions(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        report = migrate(conn)
        versions = [m.version for m in load_migrations()]
        assert report.applied == versions
        assert report.current_version == versions[-1]
        assert {
            "regions",
            "schools",
            "rooms",
            "devices",
            "engineers",
            "telemetry",
        } <= _tables(conn)
        recorded = [
            r[0]
            for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
        ]
        assert recorded == versions


def test_migrate_twice_applies_nothing_the_second_time(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        migrate(conn)
        again = migrate(conn)
        assert again.applied == []
        assert again.reason == "recorded when the database was created"


def test_migrate_refuses_database_newer_than_code(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO schema_migrations VALUES (9999, 'future', 'x', now())"
        )
        conn.commit()
        with pytest.raises(MigrationError, match=r"9999.*upgrade edufleet"):
            migrate(conn)


def test_migrate_falls_back_to_native_without_timescaledb(empty_database_url, caplog):
    with psycopg.connect(empty_database_url) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        conn.commit()
        if available:
            pytest.skip("TimescaleDB is installed here; the fallback is not exercised")
        with caplog.at_level(logging.INFO, logger="edufleet.collector.migrate"):
            report = migrate(conn)
        assert report.storage_mode == "native"
        assert "not installed" in report.reason
        assert "storage mode native" in caplog.text
        assert storage_mode_of(conn) == "native"
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'telemetry'"
        ).fetchone()
        assert kind == ("p",)


def test_migrate_refuses_forced_timescale_when_unusable(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        if conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone():
            pytest.skip("TimescaleDB is installed here")
        conn.commit()
        with pytest.raises(MigrationError, match="shared_preload_libraries"):
            migrate(conn, storage_mode="timescale")


def test_migrate_uses_hypertable_when_timescaledb_is_usable(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        report = migrate(conn)
        if report.storage_mode != "timescale":
            pytest.skip(f"TimescaleDB is not usable on this server: {report.reason}")
        row = conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'telemetry'"
        ).fetchone()
        assert row == (True,)
        jobs = {
            r[0]
            for r in conn.execute(
                "SELECT proc_name FROM timescaledb_information.jobs "
                "WHERE hypertable_name = 'telemetry'"
            )
        }
        assert {"policy_compression", "policy_retention"} <= jobs


def test_partition_upkeep_creates_ahead_and_drops_past_retention(conn):
    from datetime import UTC, datetime, timedelta

    if storage_mode_of(conn) != "native":
        pytest.skip("partition upkeep applies to native storage only")
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    first = maintain_telemetry(conn, retention_days=30, days_ahead=3, now=now)
    assert "telemetry_p20260313" in first.created
    assert "telemetry_p20260309" in first.created

    later = maintain_telemetry(
        conn, retention_days=30, days_ahead=3, now=now + timedelta(days=40)
    )
    assert "telemetry_p20260309" in later.dropped
    assert "telemetry_p20260313" in later.dropped
    assert "telemetry_p20260422" in later.created

    conn.execute(
        "INSERT INTO telemetry (ts, device_id, sid, seq, metrics) "
        "VALUES ('2026-04-20 08:00+00', 1, 's', 1, '{}')"
    )
    row = conn.execute("SELECT tableoid::regclass::text FROM telemetry").fetchone()
    assert row == ("telemetry_p20260420",)
