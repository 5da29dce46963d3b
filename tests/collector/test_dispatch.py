"""Dispatch rules: primary, backups by rank, the district pool, and the reasons."""

from __future__ import annotations

import pytest
from ticket_world import World, build_world, local

from edufleet_collector.tickets import service


@pytest.fixture
def world(conn) -> World:  # type: ignore[no-untyped-def]
    return build_world(conn)


NOW = local(2026, 9, 14, 9, 0)


def _report(conn, world: World, device: str = "projector"):  # type: ignore[no-untyped-def]
    return service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices[device],
        symptom=None,
        actor="reporter",
        now=NOW,
    )


def test_dispatch_skips_engineer_on_leave(conn, world: World) -> None:
    conn.execute(
        "INSERT INTO engineer_leave (engineer_id, starts_at, ends_at) "
        "VALUES (%s, %s, %s)",
        [world.engineers["primary"], local(2026, 9, 13), local(2026, 9, 20)],
    )
    ticket = _report(conn, world)
    assert ticket.engineer_id == world.engineers["backup1"]
    assert ticket.dispatch_rule == "backup"
    assert "primary engineer primary" in ticket.dispatch_reason
    assert "is on leave" in ticket.dispatch_reason


def test_dispatch_skips_engineer_off_shift(conn, world: World) -> None:
    # 2026-09-14 is a Monday; the primary works only on Tuesdays.
    conn.execute(
        "INSERT INTO engineer_shifts (engineer_id, weekday, starts, ends) "
        "VALUES (%s, 1, '08:00', '18:00')",
        [world.engineers["primary"]],
    )
    ticket = _report(conn, world)
    assert ticket.engineer_id == world.engineers["backup1"]
    assert "is off shift" in ticket.dispatch_reason


def test_dispatch_skips_engineer_over_the_load_limit(conn, world: World) -> None:
    conn.execute(
        "UPDATE engineers SET max_open_tickets = 1 WHERE id = ANY(%s)",
        [[world.engineers["primary"], world.engineers["backup1"]]],
    )
    first = _report(conn, world, "projector")
    second = _report(conn, world, "desktop")
    third = _report(conn, world, "exam_projector")
    assert first.engineer_id == world.engineers["primary"]
    assert second.engineer_id == world.engineers["backup1"]
    assert "has 1 open tickets (limit 1)" in second.dispatch_reason
    assert third.engineer_id == world.engineers["backup2"]


def test_dispatch_falls_back_to_least_loaded_pool_engineer_with_the_skill(
    conn, world: World
) -> None:
    conn.execute(
        "UPDATE engineers SET status = 'on_leave' WHERE id = ANY(%s)",
        [[world.engineers[n] for n in ("primary", "backup1", "backup2")]],
    )
    projector = _report(conn, world, "projector")
    assert projector.engineer_id == world.engineers["pool_av"]
    assert projector.dispatch_rule == "pool"
    assert "skill av" in projector.dispatch_reason

    # A switch needs the network skill: the engineer of the other school of
    # the same district (whose own region is elsewhere) is in the pool.
    switch = _report(conn, world, "switch")
    assert switch.engineer_id == world.engineers["pool_net"]


def test_no_available_engineer_leaves_ticket_reported_and_tells_supervisors(
    conn, world: World
) -> None:
    conn.execute("UPDATE engineers SET status = 'inactive'")
    ticket = _report(conn, world)
    assert ticket.status == "reported"
    assert ticket.engineer_id is None
    assert ticket.dispatch_rule == "none"
    assert "no engineer of the district pool" in ticket.dispatch_reason
    kinds = conn.execute(
        "SELECT event, target FROM notifications WHERE ticket_id = %s", [ticket.id]
    ).fetchall()
    assert ("dispatch_failed", "http://127.0.0.1:9/hook/supervisors") in kinds
    timer = conn.execute(
        "SELECT kind FROM ticket_timers WHERE ticket_id = %s AND fired_at IS NULL "
        "AND cancelled_at IS NULL AND kind = 'redispatch'",
        [ticket.id],
    ).fetchone()
    assert timer is not None


def test_exam_room_device_is_critical(conn, world: World) -> None:
    ticket = _report(conn, world, "exam_projector")
    assert ticket.priority == "critical"
    assert _report(conn, world, "desktop").priority == "normal"


def test_racing_dispatches_respect_the_load_limit(
    conn, world: World, database_url: str
) -> None:
    import threading

    import psycopg

    conn.execute("UPDATE engineers SET max_open_tickets = 2")
    conn.commit()
    barrier = threading.Barrier(6)

    def report(name: str) -> None:
        with psycopg.connect(database_url) as own:
            barrier.wait()
            service.create_ticket(
                own, source="qr", device_id=world.devices[name], actor="r", now=NOW
            )
            own.commit()

    threads = [threading.Thread(target=report, args=(f"lab{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loads = conn.execute(
        "SELECT engineer_id, count(*) FROM tickets WHERE status = 'dispatched' "
        "GROUP BY engineer_id"
    ).fetchall()
    assert sum(n for _, n in loads) == 6
    assert max(n for _, n in loads) == 2
