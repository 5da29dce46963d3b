"""Ingest against a real broker and database: storage, validation, state, births."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from ingest_support import (
    SID,
    Fleet,
    birth,
    ingest_thread,
    now,
    publisher,
    scalar,
    seed_fleet,
    state,
    telemetry,
    wait_for,
)

from edufleet_protocol import topics


@pytest.fixture
def fleet(conn: psycopg.Connection[Any]) -> Fleet:
    return seed_fleet(conn, pcs=4, controllers=1)


@pytest.fixture
def ingest_settings(settings: Any, private_broker: Any) -> Any:
    return settings.model_copy(
        update={"mqtt_url": private_broker.url, "ingest_batch_ms": 50}
    )


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_ingest_stores_each_sample_exactly_once_despite_replays(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    from prometheus_client import REGISTRY

    def duplicates() -> float:
        found = REGISTRY.get_sample_value("edufleet_ingest_duplicate_samples_total")
        return found or 0.0

    before = duplicates()
    messages = [telemetry(u, seq) for u in fleet.uids for seq in range(1, 51)]
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send(messages)
        pub.send(messages[:60])  # an agent replaying what it was unsure of
        pub.send([telemetry(fleet.uids[0], 51)])
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") == 251,
            what="251 samples",
        )

    assert rows(
        database_url,
        "SELECT count(*), count(DISTINCT (device_id, sid, seq)) FROM telemetry",
    ) == [(251, 251)]
    states = rows(
        database_url,
        "SELECT state, count(*) FROM device_state WHERE last_seen IS NOT NULL "
        "GROUP BY state",
    )
    assert states == [("online", len(fleet.uids))]
    assert scalar(database_url, "SELECT count(*) FROM rejected_messages") == 0
    assert duplicates() - before == 60


def _raw_sample(metric_json: str, *, ts: str | None = None) -> bytes:
    stamp = ts or now().isoformat()
    return (
        f'{{"v":1,"samples":[{{"sid":"{SID}","seq":7,"ts":"{stamp}",'
        f'"metrics":{{"host.cpu_pct":{metric_json}}}}}]}}'
    ).encode()


def test_ingest_refuses_every_kind_of_bad_message_and_keeps_going(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    pc, retired = fleet.uids[0], fleet.uids[3]
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE devices SET status = 'retired' WHERE uid = %s", [retired])
    bad_topic = topics.telemetry_topic(pc)
    big = b'{"v":1,"samples":[],"pad":"' + b"x" * (300 * 1024) + b'"}'
    ahead = (now() + timedelta(hours=2)).isoformat()
    stale = (now() - timedelta(days=60)).isoformat()
    bad = {
        "bad_json": [(bad_topic, os.urandom(64) + b"\xff"), (bad_topic, b'{"v":1,')],
        "invalid": [
            (bad_topic, b'{"v":1,"samples":"nope"}'),
            (bad_topic, b"[1, 2, 3]"),
            (bad_topic, _raw_sample("1.0").replace(b'"seq":7', b'"seq":"seven"')),
        ],
        "nan": [(bad_topic, _raw_sample("NaN")), (bad_topic, _raw_sample("1e400"))],
        "clock_ahead": [(bad_topic, _raw_sample("1.0", ts=ahead))],
        "too_old": [(bad_topic, _raw_sample("1.0", ts=stale))],
        "unknown_device": [telemetry("nobody-here", 1)],
        "device_not_in_service": [telemetry(retired, 1)],
        "bad_topic": [("edufleet/v1/NOT_A_DEVICE!/telemetry", b"{}")],
        "too_large": [(bad_topic, big), (bad_topic, os.urandom(10 * 1024 * 1024))],
    }
    good = [telemetry(u, seq) for u in fleet.uids[:3] for seq in range(1, 21)]
    refused = [m for ms in bad.values() for m in ms]
    mixed: list[tuple[str, bytes]] = []
    for index, message in enumerate(refused):
        mixed += [*good[index * 4 : index * 4 + 4], message]
    mixed += good[len(refused) * 4 :]

    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send(mixed, timeout=60)
        wait_for(
            lambda: (
                scalar(database_url, "SELECT count(*) FROM telemetry") == 60
                and scalar(database_url, "SELECT count(*) FROM rejected_messages")
                == len(refused)
            ),
            timeout=30,
            what="the valid samples and every rejection",
        )

    found = dict(
        rows(database_url, "SELECT reason, count(*) FROM rejected_messages GROUP BY 1")
    )
    assert found == {reason: len(ms) for reason, ms in bad.items()}
    samples = rows(
        database_url,
        "SELECT max(length(payload_sample)), max(payload_bytes) FROM rejected_messages",
    )
    assert samples == [(2048, 10 * 1024 * 1024)]
    detail = scalar(
        database_url,
        "SELECT detail FROM rejected_messages WHERE reason = 'clock_ahead'",
    )
    assert "ahead of the collector's clock" in detail and "NTP" in detail
    assert rows(
        database_url,
        "SELECT s.clock_suspect, abs(s.clock_skew_seconds) > 7000 FROM device_state s "
        f"WHERE s.device_id = {fleet.ids[pc]}",
    ) == [(True, True)]


def test_birth_updates_inventory_and_records_a_hardware_change_once(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    pc = fleet.uids[0]
    changed = birth(pc, ram_gib=4, serial="SN-OTHER")
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send([birth(pc, ram_gib=8, serial="SN-1")])
        wait_for(
            lambda: scalar(
                database_url,
                "SELECT inventory IS NOT NULL FROM devices WHERE uid = %s",
                [pc],
            ),
            what="the first birth",
        )
        pub.send([changed, changed])  # a redelivery of the same birth
        wait_for(
            lambda: (
                scalar(
                    database_url,
                    "SELECT inventory->>'serial' FROM devices WHERE uid = %s",
                    [pc],
                )
                == "SN-OTHER"
            ),
            what="the second birth",
        )

    events = rows(
        database_url,
        "SELECT device_id, kind, details FROM device_events ORDER BY id",
    )
    assert events == [
        (
            fleet.ids[pc],
            "inventory_changed",
            {
                "changes": {
                    "ram_mib": {"before": 8192, "after": 4096},
                    "serial": {"before": "SN-1", "after": "SN-OTHER"},
                }
            },
        )
    ]
    assert rows(
        database_url,
        "SELECT agent_version, report_interval_seconds FROM device_state "
        f"WHERE device_id = {fleet.ids[pc]}",
    ) == [("1.0.0", 60)]
    assert rows(
        database_url, "SELECT device_id, fault_code, priority FROM tickets"
    ) == [(fleet.ids[pc], "inventory_change", "low")]


def test_state_messages_set_state_and_flag_a_clock_running_ahead(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    fast, slow = fleet.uids[0], fleet.uids[1]
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send([state(fast, "online", ts=now() + timedelta(hours=1))])
        pub.send([state(slow, "online"), state(slow, "sleeping")])
        wait_for(
            lambda: (
                scalar(
                    database_url,
                    "SELECT count(*) FROM device_state WHERE state = 'sleeping'",
                )
                == 1
            ),
            what="the sleeping state",
        )
        wait_for(
            lambda: (
                scalar(
                    database_url,
                    "SELECT count(*) FROM device_state WHERE clock_suspect",
                )
                == 1
            ),
            what="the clock flag",
        )

    result = dict(
        (uid, (st, suspect, round(skew / 600)))
        for uid, st, suspect, skew in rows(
            database_url,
            "SELECT d.uid, s.state, s.clock_suspect, s.clock_skew_seconds "
            "FROM device_state s JOIN devices d ON d.id = s.device_id",
        )
    )
    assert result == {fast: ("online", True, 6), slow: ("sleeping", False, 0)}


def test_metrics_count_messages_by_kind_and_rejections_by_reason(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        value("edufleet_ingest_messages_total", kind="telemetry"),
        value("edufleet_ingest_rejected_total", reason="bad_json"),
        value("edufleet_ingest_samples_total"),
    )
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send([telemetry(fleet.uids[0], s) for s in range(1, 6)])
        pub.send([(topics.telemetry_topic(fleet.uids[0]), b"not json")])
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM rejected_messages") == 1,
            what="the rejection",
        )
    after = (
        value("edufleet_ingest_messages_total", kind="telemetry"),
        value("edufleet_ingest_rejected_total", reason="bad_json"),
        value("edufleet_ingest_samples_total"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [6, 1, 5]


def test_metrics_are_served_by_ingest_and_by_the_web_app(settings: Any) -> None:
    import importlib
    import urllib.request

    from fastapi.testclient import TestClient
    from prometheus_client import start_http_server

    from edufleet_collector.web.app import create_app
    from procs import free_port

    importlib.import_module("edufleet_collector.ingest.metrics")  # as ingest does
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            served = response.read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    with TestClient(create_app(settings)) as client:
        web = client.get("/metrics/")

    assert web.status_code == 200
    for text in (served, web.text):
        assert "edufleet_ingest_commit_seconds_bucket" in text
        assert "edufleet_ingest_rejected_total" in text


def test_committed_messages_are_acknowledged_so_a_restart_receives_none_again(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    import time

    messages = [telemetry(u, seq) for u in fleet.uids for seq in range(1, 201)]
    with (
        ingest_thread(ingest_settings, client_id="acked") as first,
        publisher(ingest_settings.mqtt_url) as pub,
    ):
        pub.send(messages)
        wait_for(
            lambda: (
                scalar(database_url, "SELECT count(*) FROM telemetry") == len(messages)
            ),
            what="every sample",
        )
    with ingest_thread(ingest_settings, client_id="acked") as second:
        time.sleep(1.5)

    assert first.committed == len(messages)
    assert [lane.generation for lane in first.lanes] == [1, 1]
    assert second.committed == 0


def test_a_broker_size_limit_drops_a_huge_payload_and_valid_traffic_continues(
    settings: Any, database_url: str, fleet: Fleet, tmp_path: Any
) -> None:
    from procs import MosquittoProcess

    broker = MosquittoProcess(
        tmp_path / "limited", extra_config="message_size_limit 1048576"
    )
    broker.start()
    try:
        limited = settings.model_copy(
            update={"mqtt_url": broker.url, "ingest_batch_ms": 50}
        )
        with (
            ingest_thread(limited),
            publisher(broker.url) as huge,
            publisher(broker.url) as pub,
        ):
            sent = huge.client.publish(
                topics.telemetry_topic(fleet.uids[0]),
                os.urandom(10 * 1024 * 1024),
                qos=1,
            )
            sent.wait_for_publish(2)  # the broker drops it without a PUBACK
            pub.send([telemetry(u, seq) for u in fleet.uids for seq in range(1, 11)])
            wait_for(
                lambda: scalar(database_url, "SELECT count(*) FROM telemetry") == 50,
                what="the valid samples",
            )
    finally:
        broker.stop()

    assert scalar(database_url, "SELECT count(*) FROM rejected_messages") == 0


def test_retiring_an_ingest_stores_its_queue_and_stops_its_share(
    ingest_settings: Any, database_url: str, fleet: Fleet
) -> None:
    """A retired client id leaves nothing behind that nobody would read."""
    import time

    from edufleet_collector.ingest.consumer import Ingest, IngestOptions

    def stored() -> int:
        return int(scalar(database_url, "SELECT count(*) FROM telemetry"))

    for client_id in ("staying", "leaving"):
        with ingest_thread(ingest_settings, client_id=client_id):
            pass  # both sessions exist and share the subscription
    first = [telemetry(u, seq) for u in fleet.uids for seq in range(1, 401)]
    with publisher(ingest_settings.mqtt_url) as pub:
        pub.send(first)  # split between the two stopped sessions

    retiring = Ingest(
        ingest_settings,
        IngestOptions.from_settings(
            ingest_settings, client_id="leaving", batch_ms=50, retire=True
        ),
    )
    started = time.monotonic()
    retiring.run()  # returns by itself once the session is empty
    assert time.monotonic() - started < 60
    assert 0 < retiring.committed < len(first)
    assert stored() == retiring.committed

    later = [telemetry(u, seq) for u in fleet.uids for seq in range(401, 501)]
    with publisher(ingest_settings.mqtt_url) as pub:
        pub.send(later)  # all for the remaining session now
    with ingest_thread(ingest_settings, client_id="staying"):
        wait_for(
            lambda: stored() == len(first) + len(later),
            30,
            "the rest of the first messages and all of the later ones",
        )
