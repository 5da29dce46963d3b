"""The ticket lifecycle against a real PostgreSQL, with a hand-moved clock."""

from __future__ import annotations

import pytest
from ticket_world import Clock, World, build_world, events_of, local, outbox

from edufleet_collector.errors import Conflict, InvalidInput
from edufleet_collector.tickets import service


@pytest.fixture
def world(conn) -> World:  # type: ignore[no-untyped-def]
    return build_world(conn)


def test_full_lifecycle_records_every_transition(conn, world: World) -> None:
    clock = Clock(local(2026, 9, 14, 9, 0))
    ticket = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["projector"],
        symptom="no_picture",
        description="投影没有画面",
        reporter_name="李老师",
        reporter_phone="13800000000",
        actor="reporter",
        now=clock(),
    )
    assert ticket.status == "dispatched"
    assert ticket.engineer_id == world.engineers["primary"]
    assert ticket.dispatch_rule == "primary"
    assert "primary engineer primary" in ticket.dispatch_reason
    assert ticket.title == "投影仪 无画面"
    assert ticket.colour == "red"

    clock.advance(minutes=5)
    ticket = service.transition(conn, ticket.id, "accept", "engineer:1", "", clock())
    assert ticket.status == "accepted"
    assert ticket.colour == "yellow"

    clock.advance(minutes=5)
    visit = local(2026, 9, 14, 14, 30)
    ticket = service.transition(
        conn, ticket.id, "schedule", "engineer:1", "下午去", clock(), visit_at=visit
    )
    assert ticket.status == "scheduled"
    assert ticket.visit_at == visit

    clock.now = local(2026, 9, 14, 15, 0)
    ticket = service.transition(
        conn,
        ticket.id,
        "resolve",
        "engineer:1",
        "换灯泡",
        clock(),
        resolution_code="replaced_lamp",
        parts=[{"part": "lamp", "qty": 1}],
    )
    assert ticket.status == "resolved"
    assert ticket.colour == "green"
    assert ticket.parts == [{"part": "lamp", "qty": 1}]

    clock.advance(hours=1)
    ticket = service.transition(conn, ticket.id, "close", "admin", "", clock())
    assert ticket.status == "closed"
    conn.commit()

    assert events_of(conn, ticket.id) == [
        ("created", None, "reported"),
        ("dispatched", "reported", "dispatched"),
        ("accepted", "dispatched", "accepted"),
        ("scheduled", "accepted", "scheduled"),
        ("resolved", "scheduled", "resolved"),
        ("closed", "resolved", "closed"),
    ]
    events = {e for e, _, _ in outbox(conn, ticket.id)}
    assert {"dispatched", "accepted", "scheduled", "resolved"} <= events


def test_illegal_transition_names_the_allowed_ones(conn, world: World) -> None:
    now = local(2026, 9, 14, 9, 0)
    ticket = service.create_ticket(
        conn,
        source="hotline",
        device_id=world.devices["desktop"],
        symptom="freezing",
        actor="admin",
        now=now,
    )
    with pytest.raises(Conflict) as caught:
        service.transition(
            conn, ticket.id, "resolve", "engineer:1", "", now, resolution_code="x"
        )
    message = str(caught.value)
    assert "dispatched" in message
    assert "accept" in message and "cancel" in message and "reassign" in message


def test_second_report_of_a_device_is_a_me_too(conn, world: World) -> None:
    now = local(2026, 9, 14, 9, 0)
    first = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["projector"],
        symptom="no_picture",
        actor="reporter",
        now=now,
    )
    second = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["projector"],
        symptom="dim",
        actor="reporter",
        now=now,
        reporter_phone="13900000000",
    )
    assert second.id == first.id
    assert second.me_too_count == 1
    assert second.reporter_phone == "13900000000"
    assert [k for k, _, _ in events_of(conn, first.id)][-1] == "me_too"


def test_unknown_symptom_is_refused_with_the_field(conn, world: World) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.create_ticket(
            conn,
            source="qr",
            device_id=world.devices["projector"],
            symptom="smoke",
            actor="reporter",
            now=local(2026, 9, 14, 9, 0),
        )
    assert caught.value.field == "symptom"
