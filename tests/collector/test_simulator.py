"""The fleet simulator against a real broker and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import psycopg
import pytest

from edufleet_collector.simulator import (
    SimulationConfig,
    Simulator,
    VirtualDevice,
    lesson_load,
    load_fleet,
    register_fleet,
)
from edufleet_protocol import topics
from edufleet_protocol.models import parse_payload
from procs import DynsecBroker, MqttProbe

Conn = psycopg.Connection[tuple[object, ...]]


def fleet(count: int, *, controllers: int = 0) -> list[VirtualDevice]:
    tag = uuid.uuid4().hex[:8]
    devices = [
        VirtualDevice(
            f"t{tag}-{n:03d}", kind="controller", peripheral=f"t{tag}-{n:03d}-pj"
        )
        for n in range(controllers)
    ]
    devices += [VirtualDevice(f"t{tag}-{n:03d}") for n in range(controllers, count)]
    return devices


def subscribe_all(url: str, creds: tuple[str | None, str | None]) -> MqttProbe:
    probe = MqttProbe(url, *creds)
    probe.connect()
    assert not probe.subscribe("edufleet/v1/+/#").is_failure
    return probe


def received_by_kind(probe: MqttProbe, prefix: str, wait: float) -> dict[str, list]:
    found: dict[str, list] = defaultdict(list)
    for message in probe.received(wait):
        device_id, kind, _ = topics.parse_topic(message.topic)
        if device_id.startswith(prefix):
            found[kind].append((device_id, parse_payload(kind, message.payload)))
    return found


def test_simulated_fleet_speaks_the_protocol(mqtt_url: str) -> None:
    devices = fleet(12, controllers=2)
    prefix = devices[0].device_id.split("-")[0]
    probe = subscribe_all(mqtt_url, (None, None))
    simulator = Simulator(
        devices,
        SimulationConfig(
            mqtt_url=mqtt_url,
            interval_s=0.5,
            fault_rate=3600.0,  # every report opens a fault where none is open
            duration_s=2.5,
            devices_per_connection=5,
        ),
    )
    try:
        report = simulator.run()
        got = received_by_kind(probe, prefix, 1.0)
    finally:
        probe.close()

    assert report.connections == 3
    assert report.refused == 0 and report.dropped == 0
    assert len(got["telemetry"]) == report.telemetry >= 3 * len(devices)
    assert len(got["event"]) == report.events > 0
    assert len(got["birth"]) == len(devices)
    states = defaultdict(list)
    for device_id, payload in got["state"]:
        states[device_id].append(payload.state)
    assert {d: s for d, s in states.items()} == {
        d.device_id: ["online", "sleeping"] for d in devices
    }
    # Per device, sequence numbers only grow, across telemetry and events.
    seqs = defaultdict(list)
    for kind in ("telemetry", "event"):
        for device_id, payload in got[kind]:
            items = payload.samples if kind == "telemetry" else [payload]
            seqs[device_id] += [item.seq for item in items]
    assert all(sorted(s) == sorted(set(s)) for s in seqs.values())
    # Controllers report their projector, and raise faults naming it.
    controller = devices[0]
    metrics = next(p for d, p in got["telemetry"] if d == controller.device_id)
    assert f"pjlink.lamp_hours[{controller.peripheral}]" in metrics.samples[0].metrics
    subjects = {p.subject for d, p in got["event"] if d == controller.device_id}
    assert subjects <= {controller.peripheral}


def test_faults_open_and_clear_in_pairs() -> None:
    device = VirtualDevice("tfault-001")
    now = datetime.now(UTC)
    actions = []
    for second in range(0, 40_000, 60):
        for raw in device.step_faults(float(second), now, open_probability=0.05):
            event = parse_payload("event", raw)
            actions.append((event.code, event.action))

    opened = sum(1 for _, a in actions if a == "opened")
    cleared = sum(1 for _, a in actions if a == "cleared")
    assert opened > 5
    assert opened - cleared == len(device.faults)
    # A fault never opens twice without a clear in between.
    state: dict[str, str] = {}
    for code, action in actions:
        assert state.get(code) != action
        state[code] = action


def test_readings_follow_the_school_day() -> None:
    lesson = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Hainan
    night = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)  # Thursday 00:00
    sunday = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)

    assert lesson_load(lesson) > 0.9
    assert lesson_load(night) < 0.1
    assert lesson_load(sunday) < 0.1
    busy = [
        VirtualDevice("tday-001").readings(lesson)["host.cpu_pct"] for _ in range(5)
    ]
    idle = [VirtualDevice("tday-001").readings(night)["host.cpu_pct"] for _ in range(5)]
    assert min(busy) > max(idle)


def test_registered_fleet_is_known_to_the_registry(conn: Conn) -> None:
    devices = register_fleet(conn, schools=2, devices_per_school=12)
    again = register_fleet(conn, schools=2, devices_per_school=12)
    conn.commit()

    assert [d.device_id for d in devices] == [d.device_id for d in again]
    assert len(devices) == 24
    counts = conn.execute(
        "SELECT category, count(*), count(parent_id) FROM devices "
        "GROUP BY category ORDER BY category"
    ).fetchall()
    # Two rooms a school, each with a controller that has a projector.
    assert counts == [("controller", 4, 0), ("desktop", 20, 0), ("projector", 4, 4)]
    rooms = conn.execute("SELECT count(*) FROM rooms").fetchone()
    assert rooms == (4,)
    controller = next(d for d in devices if d.kind == "controller")
    parent = conn.execute(
        "SELECT p.uid FROM devices c JOIN devices p ON c.parent_id = p.id "
        "WHERE c.uid = %s",
        [controller.peripheral],
    ).fetchone()
    assert parent == (controller.device_id,)
    loaded = load_fleet(conn, limit=100)
    assert {d.device_id for d in loaded} == {d.device_id for d in devices}
    assert {d.peripheral for d in loaded if d.kind == "controller"} == {
        d.peripheral for d in devices if d.kind == "controller"
    }


def test_simulator_role_may_publish_for_every_device(
    dynsec_broker: DynsecBroker,
) -> None:
    devices = fleet(6)
    prefix = devices[0].device_id.split("-")[0]
    probe = subscribe_all(dynsec_broker.url, dynsec_broker.ingest)
    username, password = dynsec_broker.simulator
    simulator = Simulator(
        devices,
        SimulationConfig(
            mqtt_url=dynsec_broker.url,
            username=username,
            password=password,
            interval_s=0.5,
            duration_s=1.2,
            devices_per_connection=3,
        ),
    )
    try:
        report = simulator.run()
        got = received_by_kind(probe, prefix, 1.0)
    finally:
        probe.close()

    assert report.refused == 0
    assert len(got["telemetry"]) == report.telemetry >= len(devices)


def test_simulator_stops_when_asked(mqtt_url: str) -> None:
    simulator = Simulator(
        fleet(3), SimulationConfig(mqtt_url=mqtt_url, interval_s=0.2, duration_s=None)
    )
    timer = threading.Timer(0.8, simulator.stop)
    timer.start()

    report = simulator.run()

    assert 0.7 < report.elapsed_s < 5
    assert report.telemetry >= 3


def test_simulator_runs_in_the_background(mqtt_url: str) -> None:
    probe = subscribe_all(mqtt_url, (None, None))
    simulator = Simulator(fleet(4), SimulationConfig(mqtt_url=mqtt_url, interval_s=0.2))
    simulator.start()
    time.sleep(0.8)

    try:
        report = simulator.join()
    finally:
        probe.close()

    assert report.telemetry >= 4
    assert report.refused == 0 and report.acked > report.telemetry
    # Everything generated was acknowledged by the broker before the end.
    assert all(len(group.outbox) == 0 for group in simulator.groups)


def test_cli_registers_and_runs_a_small_fleet(
    settings,  # type: ignore[no-untyped-def]
    conn: Conn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edufleet_collector.cli import main

    code = main(
        [
            "simulate",
            "--schools",
            "1",
            "--devices-per-school",
            "3",
            "--interval",
            "1",
            "--duration",
            "1.5",
        ]
    )

    assert code == 0
    assert "3 devices on 1 connections" in capsys.readouterr().out
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (4,)
    assert main(["simulate", "--schools", "0"]) == 2
    assert "--schools must be 1-10000" in capsys.readouterr().err
