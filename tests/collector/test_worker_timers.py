"""Escalation timers fired by workers, with an injectable clock."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from ticket_world import Clock, World, build_world, events_of, local

from edufleet_collector.tickets import service
from edufleet_collector.tickets.faults import handle_fault_event
from edufleet_collector.tickets.model import TicketConfig
from edufleet_collector.tickets.timers import fire_due_timers
from edufleet_collector.worker.runner import Worker, WorkerOptions


@pytest.fixture
def world(conn) -> World:  # type: ignore[no-untyped-def]
    return build_world(conn)


def _report(conn, world: World, clock: Clock, device: str = "projector"):  # type: ignore[no-untyped-def]
    ticket = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices[device],
        actor="reporter",
        now=clock(),
    )
    conn.commit()
    return ticket


def _fire(conn, clock: Clock) -> int:  # type: ignore[no-untyped-def]
    return fire_due_timers(conn, now=clock(), owner="test").fired


def _supervisor_notes(conn, ticket_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        "SELECT event FROM notifications WHERE ticket_id = %s AND recipient = "
        "'supervisors' ORDER BY id",
        [ticket_id],
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_accept_timeout_escalates_to_backup_then_pool(conn, world: World) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = _report(conn, world, clock)
    assert ticket.engineer_id == world.engineers["primary"]

    clock.advance(minutes=9)
    assert _fire(conn, clock) == 0
    assert service.get_ticket(conn, ticket.id).engineer_id == world.engineers["primary"]

    clock.advance(minutes=2)
    _fire(conn, clock)
    moved = service.get_ticket(conn, ticket.id)
    assert moved.engineer_id == world.engineers["backup1"]
    assert moved.status == "dispatched"
    assert "not accepted within 10 min" in moved.dispatch_reason
    assert "accept_timeout" in _supervisor_notes(conn, ticket.id)

    clock.advance(minutes=11)
    _fire(conn, clock)
    assert service.get_ticket(conn, ticket.id).engineer_id == world.engineers["backup2"]

    # backup2 has no av skill but is the school's own engineer; after him the
    # district pool engineer with the av skill.
    clock.advance(minutes=11)
    _fire(conn, clock)
    last = service.get_ticket(conn, ticket.id)
    assert last.engineer_id == world.engineers["pool_av"]
    assert last.dispatch_rule == "pool"
    kinds = [k for k, _, _ in events_of(conn, ticket.id)]
    assert kinds.count("accept_timeout") == 3
    assert kinds.count("escalated") == 3


def test_accepted_ticket_is_not_escalated(conn, world: World) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = _report(conn, world, clock)
    clock.advance(minutes=3)
    service.transition(conn, ticket.id, "accept", "engineer", "", clock())
    conn.commit()
    clock.advance(minutes=30)
    _fire(conn, clock)
    assert service.get_ticket(conn, ticket.id).engineer_id == world.engineers["primary"]
    assert "accept_timeout" not in [k for k, _, _ in events_of(conn, ticket.id)]


def test_response_sla_warning_and_breach_notify_the_bureau(conn, world: World) -> None:
    # normal priority: response 1 service hour; warning at 80 % = 48 min.
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = _report(conn, world, clock, "desktop")
    conn.execute("UPDATE engineers SET status = 'inactive'")
    conn.commit()
    clock.advance(minutes=47)
    _fire(conn, clock)
    assert "sla_warning" not in _supervisor_notes(conn, ticket.id)
    clock.advance(minutes=2)
    _fire(conn, clock)
    assert "sla_warning" in _supervisor_notes(conn, ticket.id)
    clock.advance(minutes=12)
    _fire(conn, clock)
    assert "sla_breached" in _supervisor_notes(conn, ticket.id)
    assert service.get_ticket(conn, ticket.id).response_breached


def test_resolution_breach_is_timed_in_service_hours(conn, world: World) -> None:
    # Reported Friday 16:30; 16 service hours for normal: the rest of Friday
    # (1.5 h), the weekend none, Monday 8 h, Tuesday 4 h + 2.5 h -> 16:30.
    clock = Clock(local(2026, 9, 18, 16, 30))
    ticket = _report(conn, world, clock, "desktop")
    clock.advance(minutes=30)
    service.transition(conn, ticket.id, "accept", "engineer", "", clock())
    conn.commit()
    due = service.get_ticket(conn, ticket.id).resolution_due_at
    assert due == local(2026, 9, 22, 16, 30)
    clock.now = local(2026, 9, 22, 16, 29)
    _fire(conn, clock)
    assert "sla_breached" not in _supervisor_notes(conn, ticket.id)
    clock.now = local(2026, 9, 22, 16, 31)
    _fire(conn, clock)
    assert "sla_breached" in _supervisor_notes(conn, ticket.id)


def test_unrated_ticket_closes_and_fix_is_verified(conn, world: World) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = _report(conn, world, clock)
    service.transition(conn, ticket.id, "accept", "engineer", "", clock())
    service.transition(
        conn, ticket.id, "resolve", "engineer", "", clock(), resolution_code="fixed"
    )
    conn.commit()
    clock.advance(days=2)
    _fire(conn, clock)
    assert service.get_ticket(conn, ticket.id).status == "resolved"
    clock.advance(days=1, minutes=1)
    _fire(conn, clock)
    closed = service.get_ticket(conn, ticket.id)
    assert closed.status == "closed"
    assert closed.verified is None
    clock.advance(days=5)
    _fire(conn, clock)
    assert service.get_ticket(conn, ticket.id).verified is True


def test_fault_seen_again_after_fix_fails_verification(conn, world: World) -> None:
    config = TicketConfig(fault_cooldown=timedelta(hours=1))
    clock = Clock(local(2026, 9, 14, 9, 0))
    device = world.devices["desktop"]
    outcome = handle_fault_event(
        conn,
        device_id=device,
        action="opened",
        code="disk_smart",
        severity="warning",
        message="SMART failing",
        evidence={},
        subject_device_id=None,
        sid="s1",
        seq=1,
        ts=clock(),
        now=clock(),
        config=config,
    )
    ticket_id = outcome.ticket_id
    assert ticket_id is not None
    service.transition(conn, ticket_id, "accept", "engineer", "", clock())
    service.transition(
        conn, ticket_id, "resolve", "engineer", "", clock(), resolution_code="disk"
    )
    conn.commit()
    # Past the cool-down the fault is a new ticket; verification of the old
    # fix sees the fault again and marks the fix as failed, pointing at it.
    clock.advance(days=2)
    again = handle_fault_event(
        conn,
        device_id=device,
        action="opened",
        code="disk_smart",
        severity="warning",
        message="SMART failing",
        evidence={},
        subject_device_id=None,
        sid="s1",
        seq=2,
        ts=clock(),
        now=clock(),
        config=config,
    )
    assert again.result == "created"
    conn.commit()
    clock.advance(days=6)
    fire_due_timers(conn, now=clock(), owner="test", config=config)
    old = service.get_ticket(conn, ticket_id)
    assert old.verified is False
    assert events_of(conn, ticket_id)[-1][0] == "verification_failed"
    assert again.ticket_id != ticket_id


def test_two_workers_racing_fire_each_timer_once(
    conn, world: World, database_url: str
) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    devices = [f"lab{i}" for i in range(6)] + ["projector", "desktop"]
    tickets = [_report(conn, world, clock, d).id for d in devices]
    clock.advance(minutes=11)
    barrier = threading.Barrier(2)
    fired: dict[str, int] = {}

    def work(name: str) -> None:
        with psycopg.connect(database_url) as own:
            barrier.wait()
            total = 0
            while True:
                count = fire_due_timers(own, now=clock(), owner=name, limit=1).fired
                if count == 0:
                    break
                total += count
            fired[name] = total

    threads = [threading.Thread(target=work, args=(n,)) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    timeouts = conn.execute(
        "SELECT count(*), count(DISTINCT ticket_id) FROM ticket_events "
        "WHERE kind = 'accept_timeout' AND ticket_id = ANY(%s)",
        [tickets],
    ).fetchone()
    assert timeouts == (len(tickets), len(tickets))
    by_owner = dict(
        conn.execute(
            "SELECT fired_by, count(*) FROM ticket_timers "
            "WHERE kind = 'accept_timeout' AND fired_at IS NOT NULL GROUP BY fired_by"
        ).fetchall()
    )
    assert sum(by_owner.values()) == len(tickets)
    assert fired["w1"] + fired["w2"] >= len(tickets)


def test_worker_pass_fires_timers_and_keeps_partitions(
    conn, world: World, database_url: str
) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = _report(conn, world, clock)
    clock.advance(minutes=11)
    with ConnectionPool(database_url, min_size=1, max_size=2, open=True) as pool:
        worker = Worker(pool, {}, options=WorkerOptions(), clock=clock, owner="w")
        report = worker.run_once()
        assert report.timers.kinds.get("accept_timeout") == 1
        assert report.upkeep is True
        assert worker.run_once().upkeep is False
    assert service.get_ticket(conn, ticket.id).engineer_id == world.engineers["backup1"]
    partitions = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry'::regclass"
    ).fetchone()
    assert partitions is not None and partitions[0] > 0


def test_undispatched_ticket_is_retried_when_an_engineer_frees_up(
    conn, world: World
) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    conn.execute("UPDATE engineers SET status = 'inactive'")
    ticket = _report(conn, world, clock)
    assert ticket.status == "reported"
    conn.execute(
        "UPDATE engineers SET status = 'active' WHERE id = %s",
        [world.engineers["backup2"]],
    )
    conn.commit()
    clock.advance(minutes=11)
    _fire(conn, clock)
    retried = service.get_ticket(conn, ticket.id)
    assert retried.status == "dispatched"
    assert retried.engineer_id == world.engineers["backup2"]


def test_worker_command_runs_one_pass(conn, world: World, database_url: str) -> None:
    import os
    import subprocess
    import sys

    ticket = _report(conn, world, Clock(local(2026, 9, 14, 9, 0)))
    env = dict(
        os.environ, EDUFLEET_DATABASE_URL=database_url, EDUFLEET_LOG_LEVEL="ERROR"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edufleet_collector.cli", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Every timer of a ticket reported in September is long due; the
    # notifications go to a closed port and wait for a retry.
    fired = int(done.stdout.split("timers fired: ")[1].split(";")[0])
    assert fired >= 2
    assert "retried: 0" not in done.stdout
    assert service.get_ticket(conn, ticket.id).engineer_id != world.engineers["primary"]


def test_ticket_everyone_ignored_is_offered_again_on_retry(conn, world: World) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = _report(conn, world, clock)
    for _ in range(4):  # primary, backup1, backup2, then the av pool engineer
        clock.advance(minutes=11)
        _fire(conn, clock)
    stranded = service.get_ticket(conn, ticket.id)
    assert stranded.status == "reported" and stranded.engineer_id is None
    assert _supervisor_notes(conn, ticket.id).count("dispatch_failed") == 1
    clock.advance(minutes=11)
    _fire(conn, clock)
    offered = service.get_ticket(conn, ticket.id)
    assert offered.status == "dispatched"
    assert offered.engineer_id == world.engineers["primary"]
