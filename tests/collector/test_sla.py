"""SLA clocks from the event log: wall-clock and service hours, pauses, policies.

The test school's calendar: weekdays 08:00-12:00 and 14:00-18:00 local in the
autumn term, 1-2 October off (National Day), Saturday 10 October a make-up
working day.
"""

from __future__ import annotations

import pytest
from ticket_world import World, build_world, local

from edufleet_collector.tickets import service
from edufleet_collector.tickets.sla import sla_figures

HOUR = 3600.0


@pytest.fixture
def world(conn) -> World:  # type: ignore[no-untyped-def]
    return build_world(conn)


def _report(conn, world: World, at, device: str = "desktop"):  # type: ignore[no-untyped-def]
    return service.create_ticket(
        conn, source="qr", device_id=world.devices[device], actor="reporter", now=at
    )


def test_response_over_a_night_and_a_weekend(conn, world: World) -> None:
    ticket = _report(conn, world, local(2026, 9, 18, 17, 0))  # a Friday
    accepted = service.transition(
        conn, ticket.id, "accept", "eng", "", local(2026, 9, 21, 9, 0)
    )
    assert accepted.response_seconds == 64 * HOUR
    # Friday 17-18 and Monday 08-09.
    assert accepted.response_service_seconds == 2 * HOUR
    assert accepted.response_breached is True  # 1 service hour for normal


def test_resolution_across_a_holiday_and_a_make_up_saturday(conn, world: World) -> None:
    ticket = _report(conn, world, local(2026, 9, 30, 17, 0))  # Wednesday
    service.transition(conn, ticket.id, "accept", "eng", "", local(2026, 9, 30, 17, 30))
    resolved = service.transition(
        conn,
        ticket.id,
        "resolve",
        "eng",
        "",
        local(2026, 10, 10, 10, 0),
        resolution_code="fixed",
    )
    # 30 Sep 17-18 (1 h); 1-2 Oct off; weekend; 5-9 Oct 5 x 8 h; Saturday
    # 10 Oct 08-10 (2 h).
    assert resolved.resolution_service_seconds == 43 * HOUR
    assert resolved.resolution_seconds == (9 * 24 + 17) * HOUR
    assert resolved.resolution_breached is True


def test_pause_for_parts_stops_the_resolution_clock(conn, world: World) -> None:
    start = local(2026, 9, 14, 9, 0)  # Monday
    ticket = _report(conn, world, start)
    service.transition(conn, ticket.id, "accept", "eng", "", start)
    service.transition(
        conn,
        ticket.id,
        "pause",
        "eng",
        "waiting for a PSU",
        local(2026, 9, 14, 10, 0),
        reason="parts",
    )
    paused = sla_figures(conn, ticket.id, local(2026, 9, 15, 9, 0))
    assert paused.resolution.running is False
    assert paused.resolution.service_seconds == 1 * HOUR
    assert paused.resolution.due_at is None

    service.transition(conn, ticket.id, "resume", "eng", "", local(2026, 9, 15, 10, 0))
    resolved = service.transition(
        conn,
        ticket.id,
        "resolve",
        "eng",
        "",
        local(2026, 9, 15, 11, 0),
        resolution_code="psu",
    )
    # 09-10 Monday, then 10-11 Tuesday; the pause (Mon 10:00 - Tue 10:00) is out.
    assert resolved.resolution_service_seconds == 2 * HOUR
    assert resolved.resolution_seconds == 2 * HOUR
    assert resolved.paused_seconds == 24 * HOUR
    # Response is not paused: reported and accepted at once.
    assert resolved.response_seconds == 0


def test_appointment_pauses_until_the_visit(conn, world: World) -> None:
    start = local(2026, 9, 14, 9, 0)
    ticket = _report(conn, world, start)
    service.transition(conn, ticket.id, "accept", "eng", "", start)
    service.transition(
        conn,
        ticket.id,
        "schedule",
        "eng",
        "teacher asked for Wednesday",
        local(2026, 9, 14, 10, 0),
        visit_at=local(2026, 9, 16, 8, 0),
    )
    during = sla_figures(conn, ticket.id, local(2026, 9, 15, 12, 0))
    assert during.resolution.service_seconds == 1 * HOUR
    after = sla_figures(conn, ticket.id, local(2026, 9, 16, 9, 0))
    assert after.resolution.service_seconds == 2 * HOUR
    assert after.resolution.running is True


def test_policy_changed_after_the_fact_loses_no_time(conn, world: World) -> None:
    start = local(2026, 9, 14, 9, 0)
    ticket = _report(conn, world, start)
    service.transition(conn, ticket.id, "accept", "eng", "", start)
    now = local(2026, 9, 15, 11, 0)  # Monday 7 + Tuesday 3 service hours
    before = sla_figures(conn, ticket.id, now)
    assert before.resolution.service_seconds == 10 * HOUR
    assert before.resolution.breached is False
    assert before.resolution.due_at == local(2026, 9, 16, 9, 0)

    conn.execute(
        "INSERT INTO sla_policies (region_code, priority, response_seconds, "
        "resolution_seconds, measure) "
        "VALUES ('460100', 'normal', 1800, 28800, 'service')"
    )
    after = sla_figures(conn, ticket.id, now)
    assert after.policy.region_code == "460100"
    assert after.resolution.service_seconds == before.resolution.service_seconds
    assert after.resolution.breached is True
    assert after.resolution.due_at == local(2026, 9, 15, 9, 0)

    # A wall-clock policy at the district counts the same history in hours.
    conn.execute(
        "INSERT INTO sla_policies (region_code, priority, response_seconds, "
        "resolution_seconds, measure) "
        "VALUES ('460105', 'normal', 1800, 172800, 'wall')"
    )
    wall = sla_figures(conn, ticket.id, now)
    assert wall.policy.region_code == "460105"
    assert wall.resolution.elapsed == 26 * HOUR
    assert wall.resolution.breached is False


def test_priority_change_applies_the_stricter_target(conn, world: World) -> None:
    start = local(2026, 9, 14, 9, 0)
    ticket = _report(conn, world, start)
    raised = service.transition(
        conn,
        ticket.id,
        "change_priority",
        "admin",
        "exam tomorrow",
        local(2026, 9, 14, 9, 30),
        priority="critical",
    )
    # critical: 15 min wall-clock response, already past at 09:30.
    assert raised.response_breached is True
    assert raised.response_due_at == local(2026, 9, 14, 9, 15)


def test_reopened_ticket_counts_only_open_time(conn, world: World) -> None:
    start = local(2026, 9, 14, 9, 0)
    ticket = _report(conn, world, start)
    service.transition(conn, ticket.id, "accept", "eng", "", start)
    service.transition(
        conn,
        ticket.id,
        "resolve",
        "eng",
        "",
        local(2026, 9, 14, 10, 0),
        resolution_code="x",
    )
    service.transition(conn, ticket.id, "reopen", "admin", "", local(2026, 9, 15, 9, 0))
    figures = sla_figures(conn, ticket.id, local(2026, 9, 15, 10, 0))
    assert figures.resolution.service_seconds == 2 * HOUR
    assert figures.resolution.wall_seconds == 2 * HOUR
    assert figures.resolution.running is True
