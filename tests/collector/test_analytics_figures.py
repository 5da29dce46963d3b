"""Availability and SLA figures against values computed by hand.

The fixture week is Monday 2 to Sunday 8 March 2026 (Asia/Shanghai, UTC+8),
with service hours 07:30-12:00 and 14:30-17:30 (7.5 h a school day):

    Mon 2   school day          Thu 5   school day
    Tue 3   school day          Fri 6   school day
    Wed 4   holiday (day off)   Sat 7   make-up working day
                                Sun 8   weekend

So the week holds five school days: 5 x 7.5 h = 135,000 service seconds.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from edufleet_collector.analytics import (
    refresh_rollups,
    refresh_service_periods,
    refresh_summaries,
)

CST = timezone(timedelta(hours=8))
WEEK_FROM = datetime(2026, 3, 2, tzinfo=CST)
WEEK_TO = datetime(2026, 3, 9, tzinfo=CST)
SCHOOL_WEEK = 5 * 7.5 * 3600


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=CST)


def _one(conn: psycopg.Connection, sql: str, params: object = None) -> object:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _seed_places(conn: psycopg.Connection) -> dict[str, int]:
    conn.execute(
        """
        INSERT INTO regions (code, parent_code, name_zh, name_en, level) VALUES
            ('460000', NULL, '海南省', 'Hainan', 'province'),
            ('460100', '460000', '海口市', 'Haikou', 'city'),
            ('460105', '460100', '秀英区', 'Xiuying', 'district'),
            ('460106', '460100', '龙华区', 'Longhua', 'district')
        """
    )
    calendar_id = _one(
        conn,
        "INSERT INTO calendars (code, name, region_code) "
        "VALUES ('hn', 'Hainan', '460000') RETURNING id",
    )
    conn.execute(
        "INSERT INTO calendar_terms (calendar_id, name, starts_on, ends_on) "
        "VALUES (%s, 'spring', '2026-02-23', '2026-07-10')",
        [calendar_id],
    )
    conn.execute(
        "INSERT INTO calendar_days (calendar_id, day, is_school_day, note) VALUES "
        "(%(c)s, '2026-03-04', false, 'holiday'), "
        "(%(c)s, '2026-03-07', true, 'make-up day')",
        {"c": calendar_id},
    )
    conn.execute(
        "INSERT INTO calendar_hours (calendar_id, opens, closes) VALUES "
        "(%(c)s, '07:30', '12:00'), (%(c)s, '14:30', '17:30')",
        {"c": calendar_id},
    )
    ids = {}
    for code, region in (("A", "460105"), ("B", "460106")):
        ids[code] = int(
            _one(
                conn,
                "INSERT INTO schools (code, name, region_code) VALUES (%s, %s, %s) "
                "RETURNING id",
                [code, f"School {code}", region],
            )
        )
    ids["room"] = int(
        _one(
            conn,
            "INSERT INTO rooms (school_id, name) VALUES (%s, '101') RETURNING id",
            [ids["A"]],
        )
    )
    return ids


def _device(
    conn: psycopg.Connection,
    tag: str,
    school_id: int,
    *,
    category: str = "desktop",
    status: str = "in_service",
    room_id: int | None = None,
) -> int:
    return int(
        _one(
            conn,
            "INSERT INTO devices (asset_tag, category, school_id, status, room_id) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [tag, category, school_id, status, room_id],
        )
    )


def _ticket(
    conn: psycopg.Connection,
    device_id: int | None,
    school_id: int,
    reported: datetime,
    *,
    accepted: datetime | None = None,
    resolved: datetime | None = None,
    status: str | None = None,
    priority: str = "normal",
    measure: str = "service",
    targets: tuple[int, int] = (3600, 16 * 3600),
) -> int:
    if status is None:
        status = "resolved" if resolved else "accepted" if accepted else "dispatched"
    return int(
        _one(
            conn,
            """
            INSERT INTO tickets (device_id, school_id, source, title, status,
                status_token, priority, reported_at, accepted_at, resolved_at,
                updated_at, sla_measure, response_target_seconds,
                resolution_target_seconds)
            VALUES (%s, %s, 'qr', 'fault', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING id
            """,
            [
                device_id,
                school_id,
                status,
                secrets.token_urlsafe(16),
                priority,
                reported,
                accepted,
                resolved,
                resolved or accepted or reported,
                measure,
                *targets,
            ],
        )
    )


@pytest.fixture
def week(conn: psycopg.Connection) -> dict[str, int]:
    ids = _seed_places(conn)
    a, b = ids["A"], ids["B"]
    ids["d1"] = _device(conn, "A-1", a, room_id=ids["room"])
    ids["d2"] = _device(conn, "A-2", a, room_id=ids["room"])
    ids["d3"] = _device(conn, "A-NET", a, category="network")
    ids["spare"] = _device(conn, "A-SPARE", a, status="spare")
    ids["d4"] = _device(conn, "B-1", b)

    # d1: Tue 16:00 -> Thu 09:00 across the Wednesday holiday: 1.5 h + 1.5 h.
    _ticket(conn, ids["d1"], a, at(3, 16), resolved=at(5, 9))
    # d1 again, overlapping the first into the evening: adds nothing.
    _ticket(conn, ids["d1"], a, at(3, 17), resolved=at(3, 20))
    # d2: Friday evening into the next week: only the make-up Saturday counts.
    _ticket(conn, ids["d2"], a, at(6, 18), resolved=at(9, 8))
    # d2: a cancelled report counts for nothing.
    _ticket(conn, ids["d2"], a, at(2, 8), status="cancelled")
    # d3 is always on: Sunday 10:00-12:00 counts in wall-clock time.
    _ticket(conn, ids["d3"], a, at(8, 10), resolved=at(8, 12))
    # The spare device does not count at all.
    _ticket(conn, ids["spare"], a, at(2, 8), resolved=at(2, 11))
    # d4: still open since Thursday 10:00.
    _ticket(conn, ids["d4"], b, at(5, 10))
    refresh_service_periods(conn, WEEK_FROM)
    refresh_summaries(conn)
    return ids


def test_service_periods_follow_holiday_and_make_up_day(conn, week):
    seconds = _one(
        conn,
        "SELECT school_service_seconds(%s, %s, %s)",
        [week["A"], WEEK_FROM, WEEK_TO],
    )
    assert seconds == SCHOOL_WEEK
    saturday = _one(
        conn,
        "SELECT school_service_seconds(%s, %s, %s)",
        [week["B"], at(7, 0), at(8, 0)],
    )
    assert saturday == 7.5 * 3600
    wednesday = _one(
        conn,
        "SELECT school_service_seconds(%s, %s, %s)",
        [week["A"], at(4, 0), at(5, 0)],
    )
    assert wednesday == 0


def test_device_availability_counts_service_hours_only(conn, week):
    rows = dict(
        conn.execute(
            "SELECT device_id, availability FROM device_availability(%s, %s, %s)",
            [WEEK_FROM, WEEK_TO, WEEK_TO],
        ).fetchall()
    )
    assert rows[week["d1"]] == pytest.approx(1 - 3 * 3600 / SCHOOL_WEEK)
    assert rows[week["d2"]] == pytest.approx(1 - 7.5 * 3600 / SCHOOL_WEEK)
    assert rows[week["d3"]] == pytest.approx(1 - 2 * 3600 / (7 * 86400))
    # Open since Thursday 10:00: 2 h + 3 h, then Friday and Saturday.
    assert rows[week["d4"]] == pytest.approx(1 - 20 * 3600 / SCHOOL_WEEK)
    assert week["spare"] not in rows


def test_school_room_and_region_availability_add_up(conn, week):
    school = dict(
        conn.execute(
            "SELECT school_id, availability FROM school_availability(%s, %s, %s)",
            [WEEK_FROM, WEEK_TO, WEEK_TO],
        ).fetchall()
    )
    service_a = 2 * SCHOOL_WEEK + 7 * 86400
    down_a = (3 + 7.5 + 2) * 3600
    assert school[week["A"]] == pytest.approx(1 - down_a / service_a)

    room = conn.execute(
        "SELECT devices, availability FROM room_availability(%s, %s, %s) "
        "WHERE room_id = %s",
        [WEEK_FROM, WEEK_TO, WEEK_TO, week["room"]],
    ).fetchone()
    assert room == (2, pytest.approx(1 - (3 + 7.5) * 3600 / (2 * SCHOOL_WEEK)))
    of_school_b = conn.execute(
        "SELECT count(*) FROM room_availability(%s, %s, %s, %s)",
        [WEEK_FROM, WEEK_TO, WEEK_TO, week["B"]],
    ).fetchone()
    assert of_school_b == (0,)

    regions = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT region_code, schools, devices, availability "
            "FROM region_availability(%s, %s, %s)",
            [WEEK_FROM, WEEK_TO, WEEK_TO],
        )
    }
    city = 1 - (down_a + 20 * 3600) / (service_a + SCHOOL_WEEK)
    assert regions["460100"] == (2, 4, pytest.approx(city))
    assert regions["460000"] == regions["460100"]
    assert regions["460106"] == (1, 1, pytest.approx(1 - 20 * 3600 / SCHOOL_WEEK))


def test_availability_stops_at_now(conn, week):
    now = at(5, 11)
    rows = dict(
        conn.execute(
            "SELECT device_id, availability FROM device_availability(%s, %s, %s)",
            [WEEK_FROM, WEEK_TO, now],
        ).fetchall()
    )
    # Mon, Tue, and Thu 07:30-11:00 have passed: 7.5 + 7.5 + 3.5 hours.
    service = (7.5 + 7.5 + 3.5) * 3600
    assert rows[week["d4"]] == pytest.approx(1 - 3600 / service)
    assert rows[week["d1"]] == pytest.approx(1 - 3 * 3600 / service)


@pytest.fixture
def sla(conn: psycopg.Connection, week: dict[str, int]) -> dict[str, int]:
    a = week["A"]
    t1 = _ticket(conn, week["d1"], a, at(3, 17), accepted=at(5, 8), resolved=at(6, 16))
    conn.execute(
        "INSERT INTO ticket_pauses (ticket_id, reason, started_at, ended_at, actor) "
        "VALUES (%s, 'parts', %s, %s, 'engineer')",
        [t1, at(5, 10), at(6, 10)],
    )
    t2 = _ticket(
        conn,
        week["d2"],
        a,
        at(7, 21),
        accepted=at(7, 21, 20),
        resolved=at(8, 2),
        priority="critical",
        measure="wall",
        targets=(900, 4 * 3600),
    )
    t3 = _ticket(conn, week["d3"], a, at(6, 17))
    conn.execute("DELETE FROM tickets WHERE id NOT IN (%s, %s, %s)", [t1, t2, t3])
    return {"t1": t1, "t2": t2, "t3": t3}


def _facts(conn: psycopg.Connection) -> dict[int, tuple[object, ...]]:
    return {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT ticket_id, response_seconds, response_service_seconds, "
            "resolution_seconds, resolution_service_seconds, "
            "paused_service_seconds, response_met, resolution_met "
            "FROM ticket_sla_facts"
        )
    }


def test_sla_figures_cover_nights_holidays_and_pauses(conn, sla):
    refresh_rollups(conn, at(9, 8))
    facts = _facts(conn)

    # Reported Tue 17:00, accepted Thu 08:00: 0.5 h Tue + Wed off + 0.5 h Thu.
    # Resolved Fri 16:00; 14 h of service, 7.5 h of it paused for parts.
    assert facts[sla["t1"]] == (
        39 * 3600,
        3600,
        (71 - 24) * 3600,
        (14 - 7.5) * 3600,
        7.5 * 3600,
        True,
        True,
    )
    # A critical fault on a Saturday night, counted in wall-clock time.
    assert facts[sla["t2"]] == (1200, 0, 5 * 3600, 0, 0, False, False)
    # Open since Friday 17:00: 0.5 h Fri, the make-up Saturday, 0.5 h Mon.
    assert facts[sla["t3"]][1] == 8.5 * 3600
    assert facts[sla["t3"]][5:] == (False, None)


def test_sla_attainment_by_month(conn, sla):
    refresh_rollups(conn, at(9, 8))
    row = conn.execute(
        "SELECT sum(tickets), sum(response_met), sum(response_judged), "
        "sum(resolution_met), sum(resolution_judged) FROM ticket_sla_monthly "
        "WHERE month = '2026-03-01'"
    ).fetchone()
    assert row == (3, 1, 3, 1, 2)


def test_open_ticket_facts_follow_the_clock(conn, sla):
    refresh_rollups(conn, at(9, 8))
    refresh_rollups(conn, at(9, 11))
    # Three more hours of Monday morning service (08:00-11:00).
    assert _facts(conn)[sla["t3"]][1] == (8.5 + 3) * 3600


def test_changed_ticket_facts_are_recomputed(conn, sla):
    refresh_rollups(conn, at(9, 8))
    conn.execute(
        "UPDATE tickets SET status = 'cancelled', updated_at = %s WHERE id = %s",
        [at(9, 9), sla["t2"]],
    )
    refresh_rollups(conn, at(9, 10))
    assert set(_facts(conn)) == {sla["t1"], sla["t3"]}


def test_service_periods_rewrite_only_changed_calendars(conn, week):
    again = refresh_service_periods(conn, WEEK_FROM)
    assert again.rewritten == []
    conn.execute(
        "INSERT INTO calendar_days (calendar_id, day, is_school_day) "
        "SELECT id, '2026-03-05', false FROM calendars WHERE code = 'hn'"
    )
    changed = refresh_service_periods(conn, WEEK_FROM)
    assert len(changed.rewritten) == 1
    seconds = _one(
        conn,
        "SELECT school_service_seconds(%s, %s, %s)",
        [week["A"], WEEK_FROM, WEEK_TO],
    )
    assert seconds == SCHOOL_WEEK - 7.5 * 3600


def test_reliability_counts_failures_and_merged_downtime(conn, week):
    refresh_rollups(conn, WEEK_TO)
    rows = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT device_id, failures, down_seconds FROM device_reliability"
        )
    }
    # Two overlapping tickets: Tue 16:00 -> Thu 09:00 is 41 h of wall time.
    assert rows[week["d1"]] == (2, 41 * 3600)
    assert week["d2"] in rows and rows[week["d2"]][0] == 1
    assert rows[week["d4"]] == (1, (WEEK_TO - at(5, 10)).total_seconds())


def test_school_without_any_calendar_uses_default_hours(conn):
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) VALUES ('X1', 'X', 'province')"
    )
    school = _one(
        conn,
        "INSERT INTO schools (code, name, region_code) VALUES ('X', 'X', 'X1') "
        "RETURNING id",
    )
    refresh_service_periods(conn, datetime(2026, 3, 2, tzinfo=UTC))
    seconds = _one(
        conn,
        "SELECT school_service_seconds(%s, %s, %s)",
        [school, WEEK_FROM, WEEK_TO],
    )
    # The default calendar: every weekday, no holidays, 7.5 h.
    assert seconds == 5 * 7.5 * 3600


def test_failure_rates_and_replacement_ranking(conn, week):
    refresh_rollups(conn, WEEK_TO)
    row = conn.execute(
        "SELECT devices, failures, failures_per_device_year, mtbf_days "
        "FROM failure_rates WHERE category = 'desktop'"
    ).fetchone()
    # d1 twice, d2 once (its cancelled report aside), d4 and the spare once.
    assert row == (4, 5, 1.25, pytest.approx(4 * 365 / 5))
    ranked = [
        r[0]
        for r in conn.execute(
            "SELECT device_id FROM replacement_candidates ORDER BY rank LIMIT 3"
        )
    ]
    # Scores: d1 0.5 + 41 h down; d4 0.25 + 86 h down; d2 0.25 + 30 h down.
    assert ranked == [week["d1"], week["d4"], week["d2"]]
