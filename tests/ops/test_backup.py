import json
from datetime import UTC, datetime

import psycopg
import pytest

from edufleet_collector.db.migrate import migrate
from edufleet_collector.ops.backup import BackupError, backup, restore
from edufleet_collector.tickets.service import create_ticket


def _fill(conn):
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) VALUES ('R', '省', 'province')"
    )
    school = conn.execute(
        "INSERT INTO schools (code, name, region_code) "
        "VALUES ('S1', '一中', 'R') RETURNING id"
    ).fetchone()[0]
    for i in range(25):
        conn.execute(
            "INSERT INTO devices (asset_tag, category, school_id) "
            "VALUES (%s, 'desktop', %s)",
            [f"A{i}", school],
        )
    conn.execute(
        "INSERT INTO telemetry (ts, device_id, sid, seq, metrics) "
        "VALUES (now(), 1, 's', 1, '{\"cpu_pct\": 5}')"
    )
    device = conn.execute("SELECT min(id) FROM devices").fetchone()[0]
    # Tickets exercise the expression and partial indexes on restore.
    create_ticket(
        conn,
        source="hotline",
        device_id=device,
        actor="test",
        now=datetime.now(UTC),
        symptom="no_power",
        reporter_name="张老师",
    )
    conn.commit()


def _counts(url):
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "schools",
                "devices",
                "telemetry",
                "tickets",
                "schema_migrations",
            )
        }


def test_backup_and_restore_round_trip(database_url, empty_database_url, tmp_path):
    with psycopg.connect(database_url) as conn:
        _fill(conn)
    dynsec = tmp_path / "dynamic-security.json"
    dynsec.write_text(json.dumps({"clients": [{"username": "dev1"}]}))

    result = backup(database_url, tmp_path / "backups", dynsec_file=dynsec)
    assert result.dump_bytes > 0 and result.dynsec_copied
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["storage_mode"] in ("native", "timescale")

    target = tmp_path / "restored-dynsec.json"
    restore(result.folder, empty_database_url, dynsec_target=target)
    assert _counts(empty_database_url) == _counts(database_url)
    assert json.loads(target.read_text()) == {"clients": [{"username": "dev1"}]}

    with psycopg.connect(empty_database_url) as conn:
        assert migrate(conn).applied == []


def test_restore_refuses_a_database_that_is_not_empty(database_url, tmp_path):
    result = backup(database_url, tmp_path)
    with pytest.raises(BackupError, match="not empty"):
        restore(result.folder, database_url)


def test_backup_refuses_a_corrupt_dynsec_file(database_url, tmp_path):
    broken = tmp_path / "dynamic-security.json"
    broken.write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        backup(database_url, tmp_path / "out", dynsec_file=broken)
