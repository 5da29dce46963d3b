"""The macro expander against the expansions Grafana's PostgreSQL datasource makes."""

from datetime import UTC, datetime, timedelta

import pytest

from edufleet_collector.errors import InvalidInput
from edufleet_collector.grafana.macros import (
    ALL_VALUE,
    TimeRange,
    Variable,
    auto_interval,
    expand_macros,
    format_interval,
    interpolate_variables,
    parse_interval,
    render_query,
)

RANGE = TimeRange(
    datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
    datetime(2026, 3, 2, 6, 30, 15, 500000, tzinfo=UTC),
)


def _vars(*variables: Variable) -> dict[str, Variable]:
    return {v.name: v for v in variables}


def test_time_filter_uses_rfc3339_bounds_in_utc():
    sql = expand_macros("WHERE $__timeFilter(t.ts)", RANGE, timescaledb=False)
    assert sql == (
        "WHERE t.ts BETWEEN '2026-03-02T00:00:00Z' AND '2026-03-02T06:30:15.5Z'"
    )


def test_time_from_and_to_are_quoted_literals():
    sql = expand_macros("$__timeFrom() .. $__timeTo()", RANGE, timescaledb=False)
    assert sql == "'2026-03-02T00:00:00Z' .. '2026-03-02T06:30:15.5Z'"


def test_time_group_native_floors_epoch_seconds():
    sql = expand_macros("SELECT $__timeGroup(ts, '5m') AS t", RANGE, timescaledb=False)
    assert sql == "SELECT floor(extract(epoch from ts)/300)*300 AS t"


def test_time_group_with_timescaledb_uses_time_bucket():
    sql = expand_macros("GROUP BY $__timeGroup(ts, 1h)", RANGE, timescaledb=True)
    assert sql == "GROUP BY time_bucket('3600.000s',ts)"


def test_time_group_followed_by_comma_gets_time_alias():
    sql = expand_macros(
        "SELECT $__timeGroup(ts, '1m'), avg(x)", RANGE, timescaledb=False
    )
    assert sql == 'SELECT floor(extract(epoch from ts)/60)*60 AS "time", avg(x)'


def test_time_group_alias_and_fill_argument():
    sql = expand_macros(
        "SELECT $__timeGroupAlias(ts, '1d', 0)", RANGE, timescaledb=False
    )
    assert sql == 'SELECT floor(extract(epoch from ts)/86400)*86400 AS "time"'


def test_large_interval_formats_like_go():
    sql = expand_macros("$__timeGroup(ts, '2w')", RANGE, timescaledb=False)
    assert sql == "floor(extract(epoch from ts)/1.2096e+06)*1.2096e+06"


def test_time_macro_aliases_column():
    assert expand_macros("$__time(ts)", RANGE, timescaledb=False) == 'ts AS "time"'


def test_unix_epoch_filter_uses_whole_seconds():
    sql = expand_macros("$__unixEpochFilter(e)", RANGE, timescaledb=False)
    assert sql == "e >= 1772409600 AND e <= 1772433015"


def test_unknown_macro_is_refused_with_its_name():
    with pytest.raises(InvalidInput, match=r"\$__nope"):
        expand_macros("$__nope(x)", RANGE, timescaledb=False)


def test_time_group_without_interval_is_refused():
    with pytest.raises(InvalidInput, match="needs a time column and an interval"):
        expand_macros("$__timeGroup(ts)", RANGE, timescaledb=False)


def test_single_value_variable_doubles_quotes_without_adding_them():
    variables = _vars(Variable("school", ["O'Hara"]))
    sql = interpolate_variables(
        "name = '$school'", variables, time_range=RANGE, interval=timedelta(minutes=1)
    )
    assert sql == "name = 'O''Hara'"


def test_multi_value_variable_quotes_and_joins_values():
    variables = _vars(Variable("region", ["460100", "46'02"], multi=True))
    sql = interpolate_variables(
        "code IN ($region)", variables, time_range=RANGE, interval=timedelta(minutes=1)
    )
    assert sql == "code IN ('460100','46''02')"


def test_multi_value_variable_with_one_value_is_still_quoted():
    variables = _vars(Variable("region", ["460100"], multi=True))
    sql = interpolate_variables(
        "code IN (${region})", variables, time_range=RANGE, interval=timedelta(1)
    )
    assert sql == "code IN ('460100')"


def test_include_all_single_value_is_quoted():
    variables = _vars(Variable("city", ["460100"], include_all=True))
    sql = interpolate_variables(
        "c = $city", variables, time_range=RANGE, interval=timedelta(1)
    )
    assert sql == "c = '460100'"


def test_all_selection_expands_to_every_option():
    variables = _vars(
        Variable(
            "city",
            [ALL_VALUE],
            multi=True,
            include_all=True,
            options=[ALL_VALUE, "460100", "460200"],
        )
    )
    sql = interpolate_variables(
        "c IN ($city)", variables, time_range=RANGE, interval=timedelta(1)
    )
    assert sql == "c IN ('460100','460200')"


def test_all_selection_with_custom_all_value_is_inserted_raw():
    variables = _vars(
        Variable(
            "city",
            [ALL_VALUE],
            include_all=True,
            all_value="460000",
            options=["460100"],
        )
    )
    sql = interpolate_variables(
        "root = '${city}'", variables, time_range=RANGE, interval=timedelta(1)
    )
    assert sql == "root = '460000'"


def test_csv_and_sqlstring_formats():
    variables = _vars(Variable("id", ["1", "2", "3"], multi=True))
    csv = interpolate_variables(
        "ARRAY[${id:csv}]", variables, time_range=RANGE, interval=timedelta(1)
    )
    quoted = interpolate_variables(
        "(${id:sqlstring})", variables, time_range=RANGE, interval=timedelta(1)
    )
    assert csv == "ARRAY[1,2,3]"
    assert quoted == "('1','2','3')"


def test_legacy_bracket_syntax_is_replaced():
    variables = _vars(Variable("dev", ["42"]))
    sql = interpolate_variables(
        "device_id = [[dev]]", variables, time_range=RANGE, interval=timedelta(1)
    )
    assert sql == "device_id = 42"


def test_unknown_variables_and_macros_survive_the_browser_pass():
    sql = interpolate_variables(
        "$__timeFilter(ts) AND $other", {}, time_range=RANGE, interval=timedelta(1)
    )
    assert sql == "$__timeFilter(ts) AND $other"


def test_single_value_variable_refuses_two_values():
    variables = _vars(Variable("dev", ["1", "2"]))
    with pytest.raises(InvalidInput, match="takes one value but 2"):
        interpolate_variables(
            "$dev", variables, time_range=RANGE, interval=timedelta(1)
        )


def test_unknown_format_is_refused():
    variables = _vars(Variable("dev", ["1"]))
    with pytest.raises(InvalidInput, match="format 'json'"):
        interpolate_variables(
            "${dev:json}", variables, time_range=RANGE, interval=timedelta(1)
        )


def test_interval_builtins_in_both_passes():
    sql = render_query(
        "$__interval $__interval_ms $__timeGroup(ts, $__interval) "
        "$__unixEpochFrom() ${__from}",
        time_range=RANGE,
        interval=timedelta(minutes=5),
    )
    assert sql == (
        "5m 300000 floor(extract(epoch from ts)/300)*300 1772409600 1772409600000"
    )


def test_parse_and_format_interval_round_trip():
    assert parse_interval("'90s'") == timedelta(seconds=90)
    assert format_interval(timedelta(seconds=90)) == "1m"
    assert format_interval(timedelta(days=2, hours=3)) == "2d"
    assert format_interval(timedelta(milliseconds=250)) == "250ms"
    with pytest.raises(InvalidInput, match="not a Grafana interval"):
        parse_interval("five minutes")


def test_auto_interval_rounds_and_respects_minimum():
    day = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    assert auto_interval(day, max_data_points=1000) == timedelta(minutes=1)
    assert auto_interval(day, max_data_points=100) == timedelta(minutes=15)
    assert auto_interval(day, max_data_points=100, minimum="1h") == timedelta(hours=1)


def test_naive_time_range_is_refused():
    with pytest.raises(InvalidInput, match="timezone-aware"):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 1, 2))
