"""Agent faults and lost devices become tickets: dedup, recovery, grouping, races."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from ticket_world import World, build_world, events_of, local

from edufleet_collector.tickets import service
from edufleet_collector.tickets.faults import (
    handle_connectivity,
    handle_fault_event,
    handle_inventory_change,
)
from edufleet_collector.tickets.model import TicketConfig

T0 = local(2026, 9, 14, 9, 0)


@pytest.fixture
def world(conn) -> World:  # type: ignore[no-untyped-def]
    return build_world(conn)


def _fault(conn, device: int, action: str, seq: int, now: datetime, **kw: Any):  # type: ignore[no-untyped-def]
    return handle_fault_event(
        conn,
        device_id=device,
        action=action,
        code=kw.pop("code", "lamp_hours"),
        severity="warning",
        message=f"{action} #{seq}",
        evidence={"lamp_hours": 4100},
        subject_device_id=kw.pop("subject", None),
        sid="sess-1",
        seq=seq,
        ts=now,
        now=now,
        **kw,
    )


def _tickets_of(conn, device: int) -> list[int]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        "SELECT id FROM tickets WHERE device_id = %s ORDER BY id", [device]
    ).fetchall()
    return [int(r[0]) for r in rows]


def test_open_fault_dedups_and_counts_recurrence(conn, world: World) -> None:
    device = world.devices["projector"]
    first = _fault(conn, device, "opened", 1, T0)
    second = _fault(conn, device, "opened", 2, T0 + timedelta(minutes=1))
    assert first.result == "created"
    assert second.result == "recurrence"
    assert second.ticket_id == first.ticket_id
    ticket = service.get_ticket(conn, first.ticket_id)  # type: ignore[arg-type]
    assert ticket.recurrence_count == 1
    assert ticket.source == "agent" and ticket.fault_code == "lamp_hours"
    assert ticket.status == "dispatched"


def test_redelivered_event_is_absorbed(conn, world: World) -> None:
    device = world.devices["projector"]
    first = _fault(conn, device, "opened", 7, T0)
    again = _fault(conn, device, "opened", 7, T0)
    assert again.result == "duplicate"
    assert again.ticket_id == first.ticket_id
    assert service.get_ticket(conn, first.ticket_id).recurrence_count == 0  # type: ignore[arg-type]


def test_fault_about_a_subject_device_tickets_the_subject(conn, world: World) -> None:
    outcome = _fault(
        conn,
        world.devices["desktop"],
        "opened",
        1,
        T0,
        subject=world.devices["projector"],
    )
    assert (
        service.get_ticket(conn, outcome.ticket_id).device_id
        == world.devices["projector"]
    )  # type: ignore[arg-type]


def test_cleared_fault_self_recovers_an_unaccepted_ticket(conn, world: World) -> None:
    device = world.devices["projector"]
    opened = _fault(conn, device, "opened", 1, T0)
    cleared = _fault(conn, device, "cleared", 2, T0 + timedelta(minutes=3))
    assert cleared.result == "self_recovered"
    ticket = service.get_ticket(conn, opened.ticket_id)  # type: ignore[arg-type]
    assert ticket.status == "closed" and ticket.self_recovered
    assert [k for k, _, _ in events_of(conn, ticket.id)][-2:] == [
        "recovered",
        "self_recovered",
    ]
    timers = conn.execute(
        "SELECT count(*) FROM ticket_timers WHERE ticket_id = %s AND fired_at IS NULL "
        "AND cancelled_at IS NULL",
        [ticket.id],
    ).fetchone()
    assert timers == (0,)


def test_cleared_fault_after_acceptance_only_records_recovery(
    conn, world: World
) -> None:
    device = world.devices["projector"]
    opened = _fault(conn, device, "opened", 1, T0)
    service.transition(conn, opened.ticket_id, "accept", "eng", "", T0)  # type: ignore[arg-type]
    cleared = _fault(conn, device, "cleared", 2, T0 + timedelta(minutes=3))
    assert cleared.result == "recovered"
    assert service.get_ticket(conn, opened.ticket_id).status == "accepted"  # type: ignore[arg-type]


def test_self_recovery_can_be_switched_off(conn, world: World) -> None:
    config = TicketConfig(self_recover=False)
    device = world.devices["projector"]
    opened = _fault(conn, device, "opened", 1, T0, config=config)
    cleared = _fault(conn, device, "cleared", 2, T0, config=config)
    assert cleared.result == "recovered"
    assert service.get_ticket(conn, opened.ticket_id).status == "dispatched"  # type: ignore[arg-type]


def test_fault_recurring_within_cooldown_reopens_the_fixed_ticket(
    conn, world: World
) -> None:
    device = world.devices["projector"]
    opened = _fault(conn, device, "opened", 1, T0)
    tid = opened.ticket_id
    assert tid is not None
    service.transition(conn, tid, "accept", "eng", "", T0)
    service.transition(conn, tid, "resolve", "eng", "", T0, resolution_code="lamp")
    again = _fault(conn, device, "opened", 2, T0 + timedelta(days=2))
    assert again.result == "reopened" and again.ticket_id == tid
    ticket = service.get_ticket(conn, tid)
    assert ticket.status == "dispatched"
    assert ticket.engineer_id == world.engineers["primary"]
    assert ticket.reopen_count == 1

    service.transition(conn, tid, "accept", "eng", "", T0 + timedelta(days=2))
    service.transition(
        conn, tid, "resolve", "eng", "", T0 + timedelta(days=2), resolution_code="x"
    )
    late = _fault(conn, device, "opened", 3, T0 + timedelta(days=10))
    assert late.result == "created" and late.ticket_id != tid


def test_flapping_fault_stays_one_ticket(conn, world: World) -> None:
    device = world.devices["projector"]
    now = T0
    results = []
    for seq in range(1, 9):
        now += timedelta(minutes=2)
        action = "opened" if seq % 2 else "cleared"
        results.append(_fault(conn, device, action, seq, now).result)
    assert _tickets_of(conn, device) and len(_tickets_of(conn, device)) == 1
    assert results[:3] == ["created", "self_recovered", "reopened"]
    ticket = service.get_ticket(conn, _tickets_of(conn, device)[0])
    assert ticket.reopen_count == 3
    assert ticket.status == "closed"


RACER = """
import sys, time
from datetime import datetime, timezone
import psycopg
from edufleet_collector.tickets.faults import handle_fault_event
url, device, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = float(sys.argv[4])
now = datetime(2026, 9, 14, 1, 0, tzinfo=timezone.utc)
with psycopg.connect(url) as conn:
    conn.execute("SELECT 1")
    conn.commit()
    time.sleep(max(0.0, start - time.time()))
    outcome = handle_fault_event(
        conn, device_id=device, action="opened", code="overheat", severity="critical",
        message="hot", evidence={}, subject_device_id=None, sid="race", seq=seq,
        ts=now, now=now,
    )
    conn.commit()
print(outcome.result)
"""


def test_three_processes_racing_on_one_fault_make_one_ticket(
    conn, world: World, database_url: str
) -> None:
    device = world.devices["projector"]
    start = time.time() + 1.5
    # Two distinct events of one fault, and one redelivered copy.
    seqs = [1, 2, 2]
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACER,
                database_url,
                str(device),
                str(s),
                str(start),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for s in seqs
    ]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in racers)
    assert all(p.returncode == 0 for p in racers)
    assert results == ["created", "duplicate", "recurrence"]
    assert len(_tickets_of(conn, device)) == 1
    ticket = service.get_ticket(conn, _tickets_of(conn, device)[0])
    assert ticket.recurrence_count == 1
    assert ticket.priority == "high"


def test_school_outage_behind_a_switch_is_one_incident(conn, world: World) -> None:
    labs = [world.devices[f"lab{i}"] for i in range(6)]
    outcome = handle_connectivity(conn, device_ids=labs, state="lost", now=T0)
    assert len(outcome.incidents) == 1
    incident = service.get_ticket(conn, outcome.incidents[0])
    assert incident.kind == "incident"
    assert incident.data["scope"] == "switch"
    assert incident.device_id == world.devices["switch"]
    assert incident.status == "dispatched"
    assert incident.engineer_id == world.engineers["primary"]
    children = conn.execute(
        "SELECT status, engineer_id FROM tickets WHERE parent_id = %s", [incident.id]
    ).fetchall()
    assert len(children) == 6
    assert all(c == ("reported", None) for c in children)
    notified = conn.execute(
        "SELECT count(DISTINCT ticket_id) FROM notifications WHERE event = 'dispatched'"
    ).fetchone()
    assert notified == (1,)

    back = handle_connectivity(
        conn, device_ids=labs, state="online", now=T0 + timedelta(minutes=20)
    )
    assert incident.id in back.recovered
    assert service.get_ticket(conn, incident.id).status == "closed"
    statuses = conn.execute(
        "SELECT DISTINCT status FROM tickets WHERE parent_id = %s", [incident.id]
    ).fetchall()
    assert statuses == [("closed",)]


def test_losses_arriving_one_by_one_are_grouped_once_the_threshold_is_met(
    conn, world: World
) -> None:
    first = handle_connectivity(
        conn, device_ids=[world.devices["lab0"]], state="lost", now=T0
    )
    second = handle_connectivity(
        conn,
        device_ids=[world.devices["projector"]],
        state="silent",
        now=T0 + timedelta(minutes=2),
    )
    assert len(first.created) == 1 and not first.incidents
    assert not second.incidents
    third = handle_connectivity(
        conn,
        device_ids=[world.devices["exam_projector"]],
        state="lost",
        now=T0 + timedelta(minutes=4),
    )
    assert len(third.incidents) == 1
    incident = service.get_ticket(conn, third.incidents[0])
    assert incident.data["scope"] == "school"
    assert sorted(third.grouped) == sorted(first.created + second.created)
    grouped = service.get_ticket(conn, first.created[0])
    assert grouped.parent_id == incident.id
    pending = conn.execute(
        "SELECT count(*) FROM ticket_timers WHERE ticket_id = %s AND fired_at IS NULL "
        "AND cancelled_at IS NULL",
        [grouped.id],
    ).fetchone()
    assert pending == (0,)


def test_losses_far_apart_are_separate_tickets(conn, world: World) -> None:
    for minutes, name in ((0, "lab0"), (30, "lab1"), (60, "lab2")):
        out = handle_connectivity(
            conn,
            device_ids=[world.devices[name]],
            state="lost",
            now=T0 + timedelta(minutes=minutes),
        )
        assert not out.incidents and len(out.created) == 1


def test_inventory_change_is_a_low_priority_ticket(conn, world: World) -> None:
    outcome = handle_inventory_change(
        conn,
        device_id=world.devices["desktop"],
        changes={"ram_mb": {"asset": 8192, "seen": 4096}},
        now=T0,
    )
    ticket = service.get_ticket(conn, outcome.ticket_id)  # type: ignore[arg-type]
    assert ticket.priority == "low"
    assert "ram_mb" in ticket.description
