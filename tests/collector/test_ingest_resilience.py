"""Ingest under failure, as real processes: kill -9, a database restart, scale-out.

Every check counts what arrived in the database, not what was sent.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ingest_support import (
    Fleet,
    IngestProcess,
    birth,
    fault,
    now,
    publisher,
    scalar,
    seed_fleet,
    telemetry,
    wait_for,
)

from dbutil import create_database, drop_database
from edufleet_collector.db.migrate import migrate
from edufleet_protocol import topics
from procs import MosquittoProcess, free_port

pytestmark = pytest.mark.slow


def ingest_env(database_url: str, mqtt_url: str) -> dict[str, str]:
    return dict(
        os.environ,
        EDUFLEET_DATABASE_URL=database_url,
        EDUFLEET_MQTT_URL=mqtt_url,
        EDUFLEET_ENVIRONMENT="test",
        EDUFLEET_INGEST_BATCH_MS="50",
        EDUFLEET_INGEST_BATCH_SIZE="500",
        EDUFLEET_SILENCE_CHECK_SECONDS="3600",
    )


def count_samples(url: str) -> tuple[int, int]:
    with psycopg.connect(url, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, sid, seq)) FROM telemetry"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def samples_at_least(url: str, wanted: int) -> bool:
    try:
        return count_samples(url)[0] >= wanted
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def streaming(
    mqtt_url: str, messages: list[tuple[str, bytes]], rate: float = 1500
) -> Iterator[None]:
    """Publish in the background; on exit, wait until the broker took everything."""
    with publisher(mqtt_url) as pub:
        worker = threading.Thread(
            target=pub.send, args=(messages, 120, rate), daemon=True
        )
        worker.start()
        yield
        worker.join(120)


def stream_of(fleet: Fleet, per_device: int) -> list[tuple[str, bytes]]:
    return [telemetry(u, seq) for seq in range(1, per_device + 1) for u in fleet.uids]


def test_kill_9_mid_stream_loses_and_doubles_nothing(
    conn: psycopg.Connection[Any],
    database_url: str,
    private_broker: MosquittoProcess,
    tmp_path: Path,
) -> None:
    fleet = seed_fleet(conn, pcs=50)
    messages = stream_of(fleet, 100)
    ingest = IngestProcess(
        ingest_env(database_url, private_broker.url), "kill-me", tmp_path / "ingest.log"
    )
    ingest.start()
    try:
        with streaming(private_broker.url, messages):
            wait_for(
                lambda: samples_at_least(database_url, 1000),
                timeout=30,
                what="ingest to get going",
            )
            ingest.kill()
            killed_at = count_samples(database_url)[0]
            ingest.start()
        wait_for(
            lambda: samples_at_least(database_url, len(messages)),
            timeout=60,
            what=f"all {len(messages)} samples",
        )
    finally:
        ingest.stop()

    assert killed_at < len(messages), "the kill came after the stream ended"
    assert count_samples(database_url) == (len(messages), len(messages))
    assert "session resumed" in ingest.log_tail()


@pytest.fixture
def private_database(restartable_postgres: Any) -> Iterator[str]:
    server_url = restartable_postgres.url
    name = f"edufleet_r_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    with psycopg.connect(url) as conn:
        migrate(conn)
    try:
        yield url
    finally:
        drop_database(server_url, name)


def pending_messages(port: int) -> float:
    """The ingest process's own count of messages it holds, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("edufleet_ingest_pending_messages "):
                return float(line.split()[1])
    raise AssertionError("edufleet_ingest_pending_messages missing from /metrics")


def test_a_database_restart_mid_stream_holds_a_bounded_backlog_and_loses_nothing(
    private_database: str,
    restartable_postgres: Any,
    private_broker: MosquittoProcess,
    tmp_path: Path,
) -> None:
    with psycopg.connect(private_database) as conn:
        fleet = seed_fleet(conn, pcs=50)
    messages = stream_of(fleet, 80)
    env = ingest_env(private_database, private_broker.url)
    env.update(EDUFLEET_INGEST_MAX_PENDING="300", EDUFLEET_INGEST_BATCH_SIZE="100")
    port = free_port()
    ingest = IngestProcess(
        env, "survive-restart", tmp_path / "ingest.log", "--metrics-port", str(port)
    )
    ingest.start()
    try:
        with streaming(private_broker.url, messages):
            wait_for(
                lambda: samples_at_least(private_database, 1000),
                timeout=30,
                what="ingest to get going",
            )
            restartable_postgres.stop()
            stopped_at = count_samples_or_none(private_database)
            held = []
            for _ in range(4):
                threading.Event().wait(0.5)
                held.append(pending_messages(port))
            restartable_postgres.start()
        wait_for(
            lambda: samples_at_least(private_database, len(messages)),
            timeout=60,
            what=f"all {len(messages)} samples",
        )
    finally:
        ingest.stop()

    assert stopped_at is None
    assert 0 < max(held) <= 300, held
    assert count_samples(private_database) == (len(messages), len(messages))
    log = ingest.log_tail()
    assert "retrying in" in log and "succeeded after" in log


def count_samples_or_none(url: str) -> tuple[int, int] | None:
    try:
        return count_samples(url)
    except psycopg.OperationalError:
        return None


def mixed_traffic(fleet: Fleet) -> list[tuple[str, bytes]]:
    """Telemetry, births, faults and refusals, with fixed timestamps."""
    start = now() - timedelta(minutes=5)
    messages = [
        telemetry(u, seq, ts=start + timedelta(seconds=seq))
        for seq in range(1, 31)
        for u in fleet.uids
    ]
    messages += [birth(u, ram_gib=4, ts=start) for u in fleet.uids[:10]]
    messages += [fault(u, 1000 + n // 6) for n, u in enumerate(fleet.uids[:6] * 3)]
    messages += [(topics.telemetry_topic(u), b"{broken") for u in fleet.uids[:7]]
    return messages


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "telemetry": "SELECT d.uid, t.ts, t.sid, t.seq, t.metrics FROM telemetry t "
        "JOIN devices d ON d.id = t.device_id ORDER BY 1, 2, 3, 4",
        "inventory": "SELECT uid, inventory FROM devices ORDER BY uid",
        "events": "SELECT d.uid, e.kind, e.details FROM device_events e "
        "JOIN devices d ON d.id = e.device_id ORDER BY 1",
        "tickets": "SELECT d.uid, t.fault_code, t.status, t.recurrence_count "
        "FROM tickets t JOIN devices d ON d.id = t.device_id ORDER BY 1, 2",
        "rejected": "SELECT reason, topic FROM rejected_messages ORDER BY 1, 2",
        "seen": "SELECT d.uid FROM device_state s JOIN devices d ON d.id = s.device_id "
        "WHERE s.last_seen IS NOT NULL ORDER BY 1",
    }
    with psycopg.connect(url) as conn:
        return {k: conn.execute(q).fetchall() for k, q in queries.items()}


def whole_stream_in(url: str) -> bool:
    counts = {
        "telemetry": 30 * 30,
        "fault_events": 18,
        "rejected_messages": 7,
        "devices WHERE inventory IS NOT NULL": 10,
    }
    return all(
        scalar(url, f"SELECT count(*) FROM {table}") == wanted
        for table, wanted in counts.items()
    )


def test_three_processes_on_one_shared_subscription_write_what_one_writes(
    server_url: str, template_database: str, tmp_path: Path
) -> None:
    results = []
    messages: list[tuple[str, bytes]] = []
    for consumers in (1, 3):
        name = f"edufleet_s_{uuid.uuid4().hex[:10]}"
        url = create_database(server_url, name, template=template_database)
        broker = MosquittoProcess(tmp_path / f"broker-{consumers}")
        broker.start()
        processes = [
            IngestProcess(
                ingest_env(url, broker.url),
                f"scale-{consumers}-{n}",
                tmp_path / f"ingest-{consumers}-{n}.log",
            )
            for n in range(consumers)
        ]
        try:
            with psycopg.connect(url) as conn:
                fleet = seed_fleet(conn, pcs=30)
            messages = messages or mixed_traffic(fleet)
            for process in processes:
                process.start(wait=False)
            for process in processes:
                process.wait_subscribed()
            with publisher(broker.url) as pub:
                pub.send(messages)
            wait_for(
                lambda url=url: whole_stream_in(url),  # type: ignore[misc]
                timeout=30,
                what="the whole stream",
            )
            results.append(snapshot(url))
        finally:
            for process in processes:
                process.stop()
            broker.stop()
            drop_database(server_url, name)

    one, three = results
    assert one == three
    assert len(one["telemetry"]) == 30 * 30
    assert len(one["tickets"]) == 6
    assert {t[3] for t in one["tickets"]} == {2}  # each fault came three times
