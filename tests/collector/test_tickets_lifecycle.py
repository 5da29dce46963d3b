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


def test_merged_duplicate_closes_with_the_other_tickets_outcome(
    conn, world: World
) -> None:
    now = local(2026, 9, 14, 9, 0)
    kept = service.create_ticket(
        conn, source="qr", device_id=world.devices["projector"], actor="r", now=now
    )
    duplicate = service.create_ticket(
        conn,
        source="hotline",
        device_id=world.devices["desktop"],
        actor="r",
        now=now,
        reporter_phone="13700000000",
    )
    merged = service.transition(
        conn, duplicate.id, "merge", "admin", "same cable", now, into_id=kept.id
    )
    assert merged.status == "closed" and merged.merged_into == kept.id
    assert service.get_ticket(conn, kept.id).me_too_count == 1
    view = service.ticket_status_view(conn, duplicate.id)
    assert view.status == "dispatched" and view.colour == "red"

    service.transition(conn, kept.id, "accept", "eng", "", now)
    service.transition(
        conn, kept.id, "resolve", "eng", "", now, resolution_code="new_cable"
    )
    assert service.get_ticket(conn, duplicate.id).resolution_code == "new_cable"
    assert service.ticket_status_view(conn, duplicate.id).colour == "green"
    # The duplicate's reporter hears of the fix on the ticket they joined.
    told = conn.execute(
        "SELECT count(*) FROM notifications "
        "WHERE ticket_id = %s AND event = 'resolved'",
        [duplicate.id],
    ).fetchone()
    assert told == (1,)


def test_hand_back_goes_to_the_next_engineer_with_the_reason(
    conn, world: World
) -> None:
    now = local(2026, 9, 14, 9, 0)
    ticket = service.create_ticket(
        conn, source="qr", device_id=world.devices["projector"], actor="r", now=now
    )
    service.transition(conn, ticket.id, "accept", "eng", "", now)
    with pytest.raises(InvalidInput):
        service.transition(conn, ticket.id, "hand_back", "eng", "", now)
    moved = service.transition(conn, ticket.id, "hand_back", "eng", "no ladder", now)
    assert moved.status == "dispatched"
    assert moved.engineer_id == world.engineers["backup1"]
    assert "no ladder" in moved.dispatch_reason
    # Reassigning by hand names the engineer.
    again = service.transition(
        conn,
        ticket.id,
        "reassign",
        "admin",
        "knows the model",
        now,
        engineer_id=world.engineers["pool_av"],
    )
    assert again.engineer_id == world.engineers["pool_av"]
    assert again.dispatch_rule == "manual"


def test_cancel_needs_a_reason_and_stops_every_timer(conn, world: World) -> None:
    now = local(2026, 9, 14, 9, 0)
    ticket = service.create_ticket(
        conn, source="qr", device_id=world.devices["projector"], actor="r", now=now
    )
    with pytest.raises(InvalidInput) as caught:
        service.transition(conn, ticket.id, "cancel", "admin", "", now)
    assert caught.value.field == "note"
    cancelled = service.transition(conn, ticket.id, "cancel", "admin", "test", now)
    assert cancelled.colour == "grey"
    pending = conn.execute(
        "SELECT count(*) FROM ticket_timers WHERE ticket_id = %s "
        "AND fired_at IS NULL AND cancelled_at IS NULL",
        [ticket.id],
    ).fetchone()
    assert pending == (0,)
    with pytest.raises(Conflict):
        service.transition(conn, ticket.id, "reopen", "admin", "", now)


def test_ticket_colour_sql_function_agrees_with_the_model(conn) -> None:  # type: ignore[no-untyped-def]
    from edufleet_collector.tickets import COLOURS, STATUSES

    for status in STATUSES:
        row = conn.execute("SELECT ticket_colour(%s)", [status]).fetchone()
        assert row == (COLOURS[status],)
