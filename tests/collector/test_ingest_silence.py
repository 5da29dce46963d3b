"""Offline judged against the school calendar: the silence detector and wills."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from ingest_support import (
    Fleet,
    ingest_thread,
    publisher,
    scalar,
    seed_fleet,
    state,
    wait_for,
)

from edufleet_collector.calendar_store import CalendarCache
from edufleet_collector.ingest.silence import SILENCE_LOCK_ID, detect_silence

SHANGHAI = ZoneInfo("Asia/Shanghai")
FACTOR = 3.0
INTERVAL = 60.0


def make_calendar(
    conn: psycopg.Connection[Any],
    *,
    days: dict[date, bool] | None = None,
    hours: tuple[str, str] | None = None,
    term: tuple[date, date] = (date(2026, 9, 1), date(2027, 1, 20)),
) -> int:
    """An autumn-term calendar: National Day off, a make-up Saturday on."""
    row = conn.execute(
        "INSERT INTO calendars (code, name) VALUES ('test', 'test') RETURNING id"
    ).fetchone()
    assert row is not None
    calendar_id = int(row[0])
    conn.execute(
        "INSERT INTO calendar_terms (calendar_id, name, starts_on, ends_on) "
        "VALUES (%s, 'autumn', %s, %s)",
        [calendar_id, *term],
    )
    exceptions = days or {date(2026, 10, 1): False, date(2026, 10, 10): True}
    for day, school in exceptions.items():
        conn.execute(
            "INSERT INTO calendar_days (calendar_id, day, is_school_day) "
            "VALUES (%s, %s, %s)",
            [calendar_id, day, school],
        )
    periods = [hours] if hours else [("07:30", "12:00"), ("14:30", "17:30")]
    for opens, closes in periods:
        conn.execute(
            "INSERT INTO calendar_hours (calendar_id, opens, closes) "
            "VALUES (%s, %s, %s)",
            [calendar_id, opens, closes],
        )
    conn.commit()
    return calendar_id


def go_quiet(
    conn: psycopg.Connection[Any], device_ids: list[int], at: datetime
) -> None:
    conn.execute(
        """
        INSERT INTO device_state (device_id, state, state_since, last_seen)
        SELECT id, 'online', %s, %s FROM unnest(%s::bigint[]) AS id
        """,
        [at, at, device_ids],
    )
    conn.commit()


def detect(conn: psycopg.Connection[Any], at: datetime) -> Any:
    with conn.transaction():
        return detect_silence(
            conn,
            now=at,
            factor=FACTOR,
            default_interval=INTERVAL,
            calendars=CalendarCache(),
        )


@pytest.mark.parametrize(
    ("moment", "pc_fault"),
    [
        pytest.param(datetime(2026, 9, 30, 10, 0), True, id="wednesday-lesson"),
        pytest.param(datetime(2026, 9, 30, 13, 0), False, id="midday-break"),
        pytest.param(datetime(2026, 9, 30, 22, 0), False, id="night"),
        pytest.param(datetime(2026, 10, 11, 10, 0), False, id="sunday"),
        pytest.param(datetime(2026, 10, 1, 10, 0), False, id="national-day"),
        pytest.param(datetime(2026, 10, 10, 10, 0), True, id="make-up-saturday"),
        pytest.param(datetime(2026, 8, 20, 10, 0), False, id="summer-holiday"),
    ],
)
def test_silence_is_a_fault_for_pcs_only_in_school_hours_for_always_on_ever(
    conn: psycopg.Connection[Any], moment: datetime, pc_fault: bool
) -> None:
    fleet = seed_fleet(conn, pcs=1, controllers=1, calendar_id=make_calendar(conn))
    pc, controller = fleet.ids[fleet.uids[0]], fleet.ids[fleet.uids[1]]
    quiet_at = moment.replace(tzinfo=SHANGHAI)
    go_quiet(conn, [pc, controller], quiet_at)

    report = detect(conn, quiet_at + timedelta(seconds=FACTOR * INTERVAL + 1))

    assert report.ran
    assert report.silent == [pc, controller]
    assert report.faults == ([pc, controller] if pc_fault else [controller])
    states = conn.execute(
        "SELECT device_id, state, offline_reported FROM device_state ORDER BY 1"
    ).fetchall()
    assert states == [(pc, "silent", pc_fault), (controller, "silent", True)]
    tickets = conn.execute(
        "SELECT device_id FROM tickets WHERE fault_code = 'offline' ORDER BY 1"
    ).fetchall()
    assert [t[0] for t in tickets] == report.faults


def test_silence_waits_for_k_report_intervals_of_each_device(
    conn: psycopg.Connection[Any],
) -> None:
    fleet = seed_fleet(conn, pcs=0, controllers=3)
    quick, slow, talking = (fleet.ids[u] for u in fleet.uids)
    start = datetime(2026, 9, 30, 22, 0, tzinfo=SHANGHAI)
    go_quiet(conn, [quick, slow], start)
    go_quiet(conn, [talking], start + timedelta(minutes=9))
    conn.execute(
        "UPDATE device_state SET report_interval_seconds = 600 WHERE device_id = %s",
        [slow],
    )
    conn.commit()

    first = detect(conn, start + timedelta(minutes=10))
    later = detect(conn, start + timedelta(minutes=31))

    assert first.silent == [quick]
    assert later.silent == [slow, talking]


def test_only_one_process_runs_the_detector_at_a_time(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    fleet = seed_fleet(conn, pcs=0, controllers=1)
    start = datetime(2026, 9, 30, 22, 0, tzinfo=SHANGHAI)
    go_quiet(conn, list(fleet.ids.values()), start)

    with psycopg.connect(database_url) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", [SILENCE_LOCK_ID])
        blocked = detect(conn, start + timedelta(hours=1))
    after = detect(conn, start + timedelta(hours=1))

    assert not blocked.ran and blocked.silent == []
    assert after.ran and after.silent == list(fleet.ids.values())


@pytest.fixture
def ingest_settings(settings: Any, private_broker: Any) -> Any:
    return settings.model_copy(
        update={"mqtt_url": private_broker.url, "ingest_batch_ms": 50}
    )


@pytest.mark.parametrize("school_day", [True, False], ids=["school-day", "holiday"])
def test_a_will_makes_a_ticket_for_a_pc_only_in_service_time(
    conn: psycopg.Connection[Any],
    database_url: str,
    ingest_settings: Any,
    school_day: bool,
) -> None:
    today = datetime.now(SHANGHAI).date()
    calendar_id = make_calendar(
        conn,
        days={today: school_day},
        hours=("00:00", "23:59:59"),
        term=(today - timedelta(days=1), today + timedelta(days=1)),
    )
    fleet: Fleet = seed_fleet(conn, pcs=1, controllers=1, calendar_id=calendar_id)
    pc, controller = fleet.uids

    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send([state(pc, "online"), state(controller, "online")])
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM device_state") == 2,
            what="both devices online",
        )
        pub.send([state(pc, "lost"), state(controller, "lost")])
        wait_for(
            lambda: (
                scalar(
                    database_url,
                    "SELECT count(*) FROM device_state WHERE state = 'lost'",
                )
                == 2
            ),
            what="both devices lost",
        )
        pub.send([state(controller, "online")])
        wait_for(
            lambda: (
                scalar(
                    database_url,
                    "SELECT count(*) FROM tickets WHERE status = 'closed'",
                )
                == 1
            ),
            what="the controller's ticket to self-recover",
        )

    tickets = conn.execute(
        "SELECT d.uid, t.status FROM tickets t JOIN devices d ON d.id = t.device_id "
        "WHERE t.fault_code = 'offline' ORDER BY d.uid"
    ).fetchall()
    expected = [(controller, "closed")] + ([(pc, "reported")] if school_day else [])
    assert sorted(tickets) == sorted(expected)


def test_refused_messages_past_retention_are_pruned(
    conn: psycopg.Connection[Any],
) -> None:
    from edufleet_collector.ingest.silence import prune_rejected

    at = datetime(2026, 9, 30, 10, 0, tzinfo=SHANGHAI)
    for age_days in (40, 31, 29, 1):
        conn.execute(
            "INSERT INTO rejected_messages (received_at, topic, reason, "
            "payload_bytes, payload_sample) VALUES (%s, 't', 'bad_json', 1, 'x')",
            [at - timedelta(days=age_days)],
        )

    deleted = prune_rejected(conn, now=at, keep_days=30)

    left = conn.execute("SELECT count(*) FROM rejected_messages").fetchone()
    assert (deleted, left) == (2, (2,))
