"""Expand a panel's SQL the way Grafana's PostgreSQL datasource does.

Grafana rewrites a panel query in three passes before PostgreSQL sees it:

1. the browser replaces template variables (``$var``, ``${var}``,
   ``${var:format}``, ``[[var]]``) and the panel's ``$__interval``,
   quoting values as the SQL datasource does: a multi-value or "include
   all" variable becomes ``'a','b'``, a single value has its quotes doubled;
2. the server replaces ``$__interval``, ``$__interval_ms`` and
   ``$__unixEpochFrom()`` / ``$__unixEpochTo()``;
3. the server's macro engine replaces ``$__name(args)``: ``$__timeFilter``,
   ``$__timeGroup`` (``time_bucket`` when the datasource has the TimescaleDB
   option), ``$__timeGroupAlias``, ``$__time``, ``$__timeFrom`` and so on.

The dashboard tests and the wall benchmark run the expanded SQL against a
real database, so what they measure is what Grafana would send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ..errors import InvalidInput

ALL_VALUE = "$__all"

# The browser's template variable syntax, as Grafana's templateSrv reads it.
_VARIABLE_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)
# The server's macro syntax: a name and everything up to the first ")".
_MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
_INTERVAL_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)$")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
    "y": 365 * 86400,
}
# Grafana's interval rounding table (the first bound at or above the raw
# interval picks the step next to it).
_NICE_STEPS: tuple[tuple[float, float], ...] = (
    (0.015, 0.01),
    (0.035, 0.02),
    (0.075, 0.05),
    (0.15, 0.1),
    (0.35, 0.2),
    (0.75, 0.5),
    (1.5, 1),
    (3.5, 2),
    (7.5, 5),
    (12.5, 10),
    (17.5, 15),
    (25, 20),
    (45, 30),
    (90, 60),
    (210, 120),
    (450, 300),
    (750, 600),
    (1050, 900),
    (1500, 1200),
    (2700, 1800),
    (5400, 3600),
    (9000, 7200),
    (16200, 10800),
    (32400, 21600),
    (86400, 43200),
    (604800, 86400),
    (1814400, 604800),
    (3628800, 2592000),
)


@dataclass(frozen=True)
class Variable:
    """A dashboard template variable and the value currently selected.

    ``current`` holds the selected values; ``["$__all"]`` selects "All",
    which expands to ``all_value`` when set, else to every value in
    ``options``.
    """

    name: str
    current: Sequence[str]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    options: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidInput(
                "time range bounds must be timezone-aware datetimes; pass tzinfo=UTC",
                field="time_range",
            )
        if self.end < self.start:
            raise InvalidInput(
                f"time range ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()}); swap the bounds",
                field="time_range",
            )


def parse_interval(text: str) -> timedelta:
    """Read a Grafana interval such as ``'5m'``, ``1h`` or ``30s``."""
    match = _INTERVAL_RE.match(text.strip().strip("'"))
    if not match:
        raise InvalidInput(
            f"interval {text!r} is not a Grafana interval; write a number and a "
            "unit (ms, s, m, h, d, w, M, y), e.g. '5m'",
            field="interval",
        )
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def format_interval(interval: timedelta) -> str:
    """Grafana's short form of an interval: whole years, days, hours and so on."""
    milliseconds = int(interval / timedelta(milliseconds=1))
    for unit, size in (
        ("y", 365 * 86400_000),
        ("d", 86400_000),
        ("h", 3600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ):
        if milliseconds >= size:
            return f"{milliseconds // size}{unit}"
    return "1ms"


def auto_interval(
    time_range: TimeRange, *, max_data_points: int = 1000, minimum: str = "1m"
) -> timedelta:
    """The ``$__interval`` Grafana picks for a panel ``max_data_points`` wide."""
    raw = (time_range.end - time_range.start).total_seconds() / max(max_data_points, 1)
    step = 365 * 86400.0
    for bound, candidate in _NICE_STEPS:
        if raw < bound:
            step = candidate
            break
    floor = parse_interval(minimum).total_seconds()
    return timedelta(seconds=max(step, floor))


def _go_float(value: float) -> str:
    """Format a float as Go's ``%v`` does: shortest digits, %e from 1e+06."""
    if value == 0:
        return "0"
    sign, digits, raw_exponent = Decimal(repr(value)).normalize().as_tuple()
    exponent = int(raw_exponent)
    text = "".join(map(str, digits))
    power = len(text) + exponent - 1
    prefix = "-" if sign else ""
    if power < -4 or power >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"
    if exponent >= 0:
        return prefix + text + "0" * exponent
    point = len(text) + exponent
    if point <= 0:
        return prefix + "0." + "0" * -point + text
    return prefix + text[:point] + "." + text[point:]


def _rfc3339_nano(moment: datetime) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _selected(variable: Variable) -> tuple[list[str], bool]:
    """The values a variable stands for, and whether they came from "All"."""
    values = list(variable.current)
    if ALL_VALUE in values:
        if not variable.include_all:
            raise InvalidInput(
                f"variable {variable.name!r} selects All but does not include "
                "All; set include_all or pick values",
                field=variable.name,
            )
        return [v for v in variable.options if v != ALL_VALUE], True
    return values, False


def _format_value(variable: Variable, format_name: str | None) -> str:
    values, is_all = _selected(variable)
    if is_all and variable.all_value is not None and format_name != "text":
        return variable.all_value
    single = not variable.multi and not is_all
    if single and len(values) != 1:
        raise InvalidInput(
            f"variable {variable.name!r} takes one value but {len(values)} are "
            "selected; pick one or make the variable multi-value",
            field=variable.name,
        )

    if format_name is None:
        if single:
            if variable.include_all:
                return _quote_literal(values[0])
            return values[0].replace("'", "''")
        return ",".join(_quote_literal(v) for v in values)
    if format_name in ("csv", "raw", "text"):
        return ",".join(values)
    if format_name == "sqlstring":
        return ",".join(_quote_literal(v) for v in values)
    if format_name == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if format_name == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if format_name == "pipe":
        return "|".join(values)
    raise InvalidInput(
        f"variable {variable.name!r} uses the format {format_name!r}, which this "
        "expander does not know; use csv, sqlstring, raw, singlequote, "
        "doublequote or pipe",
        field=variable.name,
    )


def interpolate_variables(
    sql: str,
    variables: Mapping[str, Variable],
    *,
    time_range: TimeRange,
    interval: timedelta,
) -> str:
    """The browser's pass: template variables and the built-in ``$__`` values."""
    builtins = {
        "__interval": format_interval(interval),
        "__interval_ms": str(int(interval / timedelta(milliseconds=1))),
        "__from": str(int(time_range.start.timestamp() * 1000)),
        "__to": str(int(time_range.end.timestamp() * 1000)),
    }

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        format_name = match[3] or match[6]
        if name in builtins:
            return builtins[name]
        variable = variables.get(name)
        if variable is None:
            return match[0]
        return _format_value(variable, format_name)

    return _VARIABLE_RE.sub(replace, sql)


def _server_globals(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    sql = sql.replace("$__interval_ms", str(int(interval / timedelta(milliseconds=1))))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_range.start.timestamp())))
    return sql.replace("$__unixEpochTo()", str(int(time_range.end.timestamp())))


def _time_group(args: list[str], timescaledb: bool) -> str:
    if len(args) < 2:
        raise InvalidInput(
            "macro $__timeGroup needs a time column and an interval, "
            "e.g. $__timeGroup(ts, '5m')",
            field="$__timeGroup",
        )
    seconds = parse_interval(args[1]).total_seconds()
    if timescaledb:
        return f"time_bucket('{seconds:.3f}s',{args[0]})"
    step = _go_float(seconds)
    return f"floor(extract(epoch from {args[0]})/{step})*{step}"


def _needs_column(name: str, args: list[str]) -> str:
    if not args or not args[0]:
        raise InvalidInput(
            f"macro ${name} needs a time column argument, e.g. ${name}(ts)",
            field=f"${name}",
        )
    return args[0]


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool) -> str:
    """The server's pass: ``$__name(args)`` macros of the PostgreSQL datasource."""
    start = _rfc3339_nano(time_range.start)
    end = _rfc3339_nano(time_range.end)
    epoch_from = int(time_range.start.timestamp())
    epoch_to = int(time_range.end.timestamp())

    def evaluate(name: str, args: list[str]) -> str:
        if name == "__time":
            return f'{_needs_column(name, args)} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {_needs_column(name, args)}) as "time"'
        if name == "__timeFilter":
            return f"{_needs_column(name, args)} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name == "__timeGroup":
            return _time_group(args, timescaledb)
        if name == "__timeGroupAlias":
            return _time_group(args, timescaledb) + ' AS "time"'
        if name == "__unixEpochFilter":
            column = _needs_column(name, args)
            return f"{column} >= {epoch_from} AND {column} <= {epoch_to}"
        raise InvalidInput(
            f"unknown macro ${name}; the PostgreSQL datasource knows $__time, "
            "$__timeFilter, $__timeGroup, $__timeGroupAlias, $__timeFrom, "
            "$__timeTo and $__unixEpochFilter",
            field=f"${name}",
        )

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        # A $__timeGroup followed directly by a comma is the pre-5.3 form,
        # which Grafana still aliases as "time".
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        args = [arg.strip() for arg in match[2].split(",")]
        return evaluate(name, args)

    return _MACRO_RE.sub(replace, sql)


def render_query(
    sql: str,
    *,
    time_range: TimeRange,
    variables: Mapping[str, Variable] | None = None,
    interval: timedelta | None = None,
    timescaledb: bool = False,
) -> str:
    """Expand a panel's raw SQL completely, as Grafana would send it."""
    step = interval or auto_interval(time_range)
    text = interpolate_variables(
        sql, variables or {}, time_range=time_range, interval=step
    )
    text = _server_globals(text, time_range, step)
    return expand_macros(text, time_range, timescaledb=timescaledb)
