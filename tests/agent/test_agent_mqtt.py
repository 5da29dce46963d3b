"""The agent against a real Mosquitto: birth, state, telemetry, events, commands,
wills, and a broker outage with faults opening and clearing meanwhile."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agent_support import (
    AgentProcess,
    Peripheral,
    Recorder,
    new_device_id,
    states,
    validate,
    write_config,
)

from edufleet_protocol import topics
from edufleet_protocol.models import parse_payload
from procs import MosquittoProcess


@pytest.fixture
def running() -> Iterator[list[object]]:
    """Things to close after the test, whatever happens."""
    opened: list[object] = []
    yield opened
    for thing in reversed(opened):
        thing.close()  # type: ignore[attr-defined]


def start_agent(config: Path, running: list[object]) -> AgentProcess:
    agent = AgentProcess(config)
    running.append(agent)
    return agent


def queued_events(state_dir: Path) -> int:
    with sqlite3.connect(state_dir / "queue.sqlite3") as db:
        return int(
            db.execute("SELECT count(*) FROM outbox WHERE priority = 0").fetchone()[0]
        )


def test_agent_flow_matches_the_schemas_and_answers_commands(
    tmp_path: Path, mqtt_url: str, running: list[object]
) -> None:
    device = new_device_id()
    peripheral = Peripheral()
    peripheral.off()  # the projector is unplugged from the start
    recorder = Recorder(mqtt_url, f"{topics.PREFIX}/{device}/#")
    running.append(recorder)
    config = write_config(
        tmp_path, device_id=device, mqtt_url=mqtt_url, peripheral_port=peripheral.port
    )
    agent = start_agent(config, running)

    def ready(messages: list) -> bool:  # type: ignore[type-arg]
        kinds = {m.kind for m in messages}
        return {"state", "birth", "telemetry", "event"} <= kinds

    messages = recorder.wait_for(ready, timeout=20)
    for message in messages:
        validate(message.kind, message.payload)
        parse_payload(message.kind, json.dumps(message.payload).encode())

    state = recorder.of("state")[0]
    assert state.payload["state"] == "online"
    birth = recorder.of("birth")[0].payload
    assert birth["sid"] == state.payload["sid"]
    assert birth["inventory"]["hostname"]
    assert {p["name"] for p in birth["probes"]} == {"host", "reachability"}
    assert birth["peripherals"][0]["device_id"] == f"{device}-proj"

    sample = recorder.of("telemetry")[0].payload["samples"][0]
    assert sample["metrics"]["agent.rss_bytes"] > 0
    assert "agent.cpu_pct" in sample["metrics"]
    assert "host.cpu_pct" in sample["metrics"]

    event = recorder.of("event")[0].payload
    assert (event["code"], event["action"], event["subject"]) == (
        "PERIPHERAL_UNREACHABLE",
        "opened",
        f"{device}-proj",
    )

    now = datetime.now(UTC).isoformat()
    for name in ("collect-now", "identify", "rebirth", "reboot"):
        recorder.publish(
            topics.command_topic(device, name), {"v": 1, "id": f"req-{name}", "ts": now}
        )
    results = recorder.wait_for(
        lambda m: len([x for x in m if x.kind == "cmd-result"]) >= 4
    )
    answered = {m.payload["name"]: m.payload for m in results if m.kind == "cmd-result"}
    for payload in answered.values():
        validate("cmd-result", payload)
    assert answered["collect-now"]["status"] == "ok"
    assert answered["collect-now"]["data"]["sample_seq"] > 1
    assert answered["identify"]["id"] == "req-identify"
    assert answered["reboot"]["status"] == "unknown_command"
    assert len(recorder.of("birth")) >= 2  # rebirth published the birth again

    assert agent.terminate() == 0
    final = recorder.wait_for(lambda m: states(m)[-1:] == ["sleeping"])
    assert states(final) == ["online", "sleeping"]


def test_kill_9_gives_lost_after_the_will_delay(
    tmp_path: Path, mqtt_url: str, running: list[object]
) -> None:
    device = new_device_id()
    recorder = Recorder(mqtt_url, topics.state_topic(device))
    running.append(recorder)
    agent = start_agent(
        write_config(tmp_path, device_id=device, mqtt_url=mqtt_url, will_delay_s=2),
        running,
    )
    recorder.wait_for(lambda m: states(m) == ["online"], timeout=20)

    killed_at = time.monotonic()
    agent.kill()
    time.sleep(1.0)
    assert states(recorder.messages) == ["online"]  # nothing during the delay
    final = recorder.wait_for(lambda m: states(m) == ["online", "lost"], timeout=10)
    assert final[-1].at - killed_at >= 1.8
    assert final[-1].payload["sid"] == final[0].payload["sid"]


def test_broker_outage_delivers_every_event_once_and_in_order(
    tmp_path: Path, running: list[object]
) -> None:
    broker = MosquittoProcess(tmp_path / "broker")
    broker.start()
    running.append(type("Stop", (), {"close": lambda self: broker.stop()})())
    device = new_device_id()
    peripheral = Peripheral()
    running.append(type("Off", (), {"close": lambda self: peripheral.off()})())
    events = Recorder(broker.url, topics.event_topic(device), session=f"rec-{device}")
    running.append(events)
    state_dir = tmp_path / "agent"
    state_dir.mkdir()
    config = write_config(
        state_dir,
        device_id=device,
        mqtt_url=broker.url,
        interval_s=0.2,
        peripheral_port=peripheral.port,
        extra="[probes.host]\nenabled = false\n",
    )
    start_agent(config, running)
    telemetry = Recorder(broker.url, topics.telemetry_topic(device))
    telemetry.wait_for(lambda m: len(m) >= 1, timeout=20)
    telemetry.close()

    broker.stop()
    for cycle in range(2):
        peripheral.off()
        wait_until(lambda c=cycle: queued_events(state_dir) >= 2 * c + 1)
        peripheral.on()
        wait_until(lambda c=cycle: queued_events(state_dir) >= 2 * c + 2)
    time.sleep(1.0)  # the broker stays away a while longer
    assert events.of("event") == []
    broker.start()

    received = events.wait_for(lambda m: len(m) >= 4, timeout=30)
    wait_until(lambda: queued_events(state_dir) == 0)
    time.sleep(1.0)
    received = list(events.messages)
    actions = [(m.payload["action"], m.payload["code"]) for m in received]
    assert (
        actions
        == [("opened", "PERIPHERAL_UNREACHABLE"), ("cleared", "PERIPHERAL_UNREACHABLE")]
        * 2
    )
    seqs = [m.payload["seq"] for m in received]
    assert seqs == sorted(set(seqs))


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")
