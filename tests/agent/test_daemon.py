"""The daemon's own logic, in process: rules state across restarts, inventory
changes, commands. Nothing here connects to a broker (publisher not started)."""

from __future__ import annotations

import json
from pathlib import Path

from agent_support import validate

from edufleet_agent.config import load_config
from edufleet_agent.daemon import Agent, Connection
from edufleet_agent.probes import builtin_specs
from edufleet_agent.queue import EVENT
from edufleet_agent.rules import KNOWN_CODES
from edufleet_protocol.models import Command, Disk, Inventory, OsInfo

INVENTORY = Inventory(
    hostname="pc-lab",
    ram_bytes=8 * 2**30,
    disks=[Disk(device="/dev/sda1", mount="/", total_bytes=500 * 10**9)],
    os=OsInfo(system="Linux"),
)


def make_agent(tmp_path: Path, inventory: list[Inventory] | None = None) -> Agent:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\n\n'
        "[rules.DISK_FULL]\nopen = 0\nclear = 0\nfor_s = 0\n\n"
        "[probes.reachability]\nenabled = false\n"
    )
    loaded = load_config(config, builtin_specs(), rule_codes=KNOWN_CODES)
    readings = list(inventory or [INVENTORY])

    def read() -> Inventory:
        return readings.pop(0) if len(readings) > 1 else readings[0]

    connection = Connection("pc-lab", "mqtt://127.0.0.1:1", None, None, None)
    return Agent(loaded, builtin_specs(), connection, inventory_reader=read)


def queued(agent: Agent) -> list[dict[str, object]]:
    items = agent.queue.take(1000)
    agent.queue.rewind()
    return [json.loads(i.payload) for i in items if i.priority == EVENT]


def test_open_fault_is_not_reopened_after_a_restart(tmp_path: Path) -> None:
    first = make_agent(tmp_path)
    first.collect()
    first.collect()
    opened = [e for e in queued(first) if e.get("code") == "DISK_FULL"]
    assert len(opened) >= 1
    assert {e["action"] for e in opened} == {"opened"}
    for event in opened:
        validate("event", event)
    count = len(opened)
    first.queue.close()

    second = make_agent(tmp_path)
    second.collect()
    again = [e for e in queued(second) if e.get("code") == "DISK_FULL"]
    assert len(again) == count  # the restart opened nothing new


def test_changed_hardware_queues_an_inventory_event_and_rebirth(tmp_path: Path) -> None:
    smaller = INVENTORY.model_copy(update={"ram_bytes": 4 * 2**30})
    agent = make_agent(tmp_path, [INVENTORY, smaller])
    assert agent.recheck_inventory() is True
    (event,) = [e for e in queued(agent) if e.get("kind") == "inventory"]
    validate("event", event)
    assert event["changes"] == [
        {"path": "ram_bytes", "before": 8 * 2**30, "after": 4 * 2**30}
    ]
    assert json.loads(agent._birth)["inventory"]["ram_bytes"] == 4 * 2**30


def test_inventory_change_while_stopped_is_reported_at_start(tmp_path: Path) -> None:
    make_agent(tmp_path).queue.close()
    fewer_disks = INVENTORY.model_copy(update={"disks": []})
    agent = make_agent(tmp_path, [fewer_disks])
    (event,) = [e for e in queued(agent) if e.get("kind") == "inventory"]
    assert event["changes"][0]["path"] == "disks"


def test_unknown_command_gets_an_unknown_command_result(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    command = Command.model_validate({"id": "r1", "ts": "2026-12-03T08:00:00Z"})
    result = agent.handle_command("format-disk", command, None)
    assert result.status == "unknown_command"
    (payload,) = [e for e in queued(agent) if e.get("name") == "format-disk"]
    validate("cmd-result", payload)
