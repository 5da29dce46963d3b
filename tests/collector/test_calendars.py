from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from edufleet_collector.calendar_store import CalendarCache, load_school_calendar
from edufleet_collector.calendars import Calendar, Period, SeasonalHours

CST = ZoneInfo("Asia/Shanghai")
AUTUMN = (date(2026, 9, 1), date(2027, 1, 22))
# National Day 2026: Oct 1-7 off, Saturday Oct 10 is a make-up working day.
EXCEPTIONS = {date(2026, 10, d): False for d in range(1, 8)} | {
    date(2026, 10, 10): True
}


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST)


@pytest.fixture
def calendar() -> Calendar:
    return Calendar(terms=[AUTUMN], days=EXCEPTIONS)


def test_school_day_follows_terms_weekdays_and_exceptions(calendar):
    assert calendar.is_school_day(date(2026, 9, 30))  # Wednesday in term
    assert not calendar.is_school_day(date(2026, 10, 1))  # National Day, a Thursday
    assert not calendar.is_school_day(date(2026, 10, 11))  # ordinary Sunday
    assert calendar.is_school_day(date(2026, 10, 10))  # make-up Saturday
    assert not calendar.is_school_day(date(2026, 8, 31))  # summer holiday, Monday


def test_in_service_respects_midday_break_and_night(calendar):
    assert calendar.in_service(local(2026, 9, 30, 7, 30))
    assert not calendar.in_service(local(2026, 9, 30, 12, 0))  # closes is exclusive
    assert not calendar.in_service(local(2026, 9, 30, 13, 0))
    assert calendar.in_service(local(2026, 9, 30, 15, 0))
    assert not calendar.in_service(local(2026, 9, 30, 22, 0))
    assert calendar.in_service(local(2026, 10, 10, 9, 0))
    assert not calendar.in_service(local(2026, 10, 2, 9, 0))


def test_service_seconds_across_night_weekend_and_holiday(calendar):
    # Wed 30 Sep 16:00 -> Fri 9 Oct 08:30 (local).
    # Wed: 16:00-17:30 = 1.5 h. Oct 1-7 holiday; Oct 3-4 weekend anyway.
    # Thu Oct 8: full day 4.5 + 3 = 7.5 h. Fri Oct 9: 07:30-08:30 = 1 h.
    seconds = calendar.service_seconds(
        local(2026, 9, 30, 16, 0), local(2026, 10, 9, 8, 30)
    )
    assert seconds == pytest.approx((1.5 + 7.5 + 1) * 3600)


def test_service_intervals_are_clipped_and_in_utc(calendar):
    intervals = calendar.service_intervals(
        local(2026, 9, 30, 11, 0), local(2026, 9, 30, 15, 0)
    )
    assert intervals == [
        (
            local(2026, 9, 30, 11, 0).astimezone(UTC),
            local(2026, 9, 30, 12, 0).astimezone(UTC),
        ),
        (
            local(2026, 9, 30, 14, 30).astimezone(UTC),
            local(2026, 9, 30, 15, 0).astimezone(UTC),
        ),
    ]
    assert all(a.tzinfo == UTC for a, _ in intervals)


def test_add_service_seconds_skips_break_night_and_holiday(calendar):
    # 1 h from Wed 30 Sep 11:30 -> 30 min before the break, 30 min after it.
    assert calendar.add_service_seconds(local(2026, 9, 30, 11, 30), 3600) == local(
        2026, 9, 30, 15, 0
    )
    # 2 h from Wed 30 Sep 17:00 -> 30 min that day, then the holiday week,
    # then 1.5 h on Thu 8 Oct from 07:30.
    assert calendar.add_service_seconds(local(2026, 9, 30, 17, 0), 7200) == local(
        2026, 10, 8, 9, 0
    )


def test_add_service_seconds_is_inverse_of_service_seconds(calendar):
    start = local(2026, 9, 28, 10, 15)
    for hours in (0.5, 3, 8, 20, 40):
        end = calendar.add_service_seconds(start, hours * 3600)
        assert calendar.service_seconds(start, end) == pytest.approx(hours * 3600)


def test_add_service_seconds_without_future_terms_raises():
    ended = Calendar(terms=[(date(2020, 9, 1), date(2021, 1, 20))])
    with pytest.raises(ValueError, match="add the coming terms"):
        ended.add_service_seconds(local(2026, 9, 1, 8, 0), 60)


def test_seasonal_hours_replace_default_hours():
    summer = SeasonalHours(
        date(2026, 5, 1), date(2026, 9, 30), (Period(time(7, 0), time(11, 30)),)
    )
    cal = Calendar(seasonal_hours=[summer])
    assert cal.in_service(local(2026, 6, 1, 7, 10))
    assert not cal.in_service(local(2026, 6, 1, 15, 0))
    assert cal.in_service(local(2026, 11, 2, 15, 0))


def test_naive_datetime_is_refused(calendar):
    with pytest.raises(ValueError, match="no time zone"):
        calendar.in_service(datetime(2026, 9, 30, 9, 0))


def test_period_crossing_midnight_is_refused():
    with pytest.raises(ValueError, match="cross midnight"):
        Period(time(20, 0), time(1, 0))


def _insert_region_calendar(conn):
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) "
        "VALUES ('460000', '海南省', 'province')"
    )
    conn.execute(
        "INSERT INTO regions (code, parent_code, name_zh, level) "
        "VALUES ('460100', '460000', '海口市', 'city')"
    )
    province_cal = conn.execute(
        "INSERT INTO calendars (code, name, region_code) "
        "VALUES ('hainan', 'Hainan', '460000') RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO calendar_terms VALUES (%s, 'autumn', %s, %s)",
        [province_cal, *AUTUMN],
    )
    for day, on in EXCEPTIONS.items():
        conn.execute(
            "INSERT INTO calendar_days VALUES (%s, %s, %s, '')", [province_cal, day, on]
        )
    school = conn.execute(
        "INSERT INTO schools (code, name, region_code) VALUES ('S1', '一中', '460100') "
        "RETURNING id"
    ).fetchone()[0]
    return province_cal, school


def test_school_inherits_nearest_region_calendar(conn):
    _, school = _insert_region_calendar(conn)
    cal = load_school_calendar(conn, school)
    assert not cal.is_school_day(date(2026, 10, 1))
    assert cal.is_school_day(date(2026, 10, 10))
    assert cal.in_service(local(2026, 9, 30, 9, 0))


def test_school_calendar_overrides_days_and_hours_of_its_parent(conn):
    province_cal, school = _insert_region_calendar(conn)
    own = conn.execute(
        "INSERT INTO calendars (code, name, parent_id) VALUES ('s1', 'boarding', %s) "
        "RETURNING id",
        [province_cal],
    ).fetchone()[0]
    conn.execute("UPDATE schools SET calendar_id = %s WHERE id = %s", [own, school])
    conn.execute(
        "INSERT INTO calendar_hours (calendar_id, opens, closes) VALUES "
        "(%s, '07:30', '12:00'), (%s, '14:30', '17:30'), (%s, '19:00', '21:30')",
        [own, own, own],
    )
    conn.execute(
        "INSERT INTO calendar_days VALUES (%s, '2026-10-05', true, 'sports day')", [own]
    )

    cal = load_school_calendar(conn, school)
    assert cal.in_service(local(2026, 9, 30, 20, 0))  # evening self-study
    assert cal.is_school_day(date(2026, 10, 5))  # the school's own exception wins
    assert not cal.is_school_day(
        date(2026, 10, 6)
    )  # the region's holiday still applies
    assert cal.terms == (AUTUMN,)  # terms inherited


def test_school_without_any_calendar_gets_default(conn, caplog):
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) VALUES ('R', 'R', 'province')"
    )
    school = conn.execute(
        "INSERT INTO schools (code, name, region_code) "
        "VALUES ('S', 'S', 'R') RETURNING id"
    ).fetchone()[0]
    cal = load_school_calendar(conn, school)
    assert cal.is_school_day(date(2026, 8, 3))
    assert "has no calendar" in caplog.text


def test_calendar_cache_reloads_after_max_age(conn):
    _, school = _insert_region_calendar(conn)
    cache = CalendarCache(max_age=0.0)
    first = cache.get(conn, school)
    conn.execute("DELETE FROM calendar_days WHERE day = '2026-10-01'")
    second = cache.get(conn, school)
    assert not first.is_school_day(date(2026, 10, 1))
    assert second.is_school_day(date(2026, 10, 1))
    keep = CalendarCache(max_age=3600)
    assert keep.get(conn, school) is keep.get(conn, school)
