"""Read the dashboards' JSON and run their queries as Grafana would.

Used by the dashboard tests and the wall benchmark: list every panel query,
resolve the template variables by running their own queries in order, and
expand a panel's SQL with the macro expander.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..db import Conn
from ..errors import InvalidInput
from .macros import ALL_VALUE, TimeRange, Variable, render_query

Choice = Literal["first", "all"]

NUMERIC_TYPES = {20, 21, 23, 700, 701, 1700}
"""PostgreSQL type oids Grafana reads as numbers: int2/4/8, float4/8, numeric."""
TIME_TYPES = {1082, 1114, 1184}
"""date, timestamp and timestamptz."""


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    panel_id: int
    title: str
    panel_type: str
    ref_id: str
    raw_sql: str
    format: str
    panel: Mapping[str, Any]


def load_dashboards(folder: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` dashboard of a folder, in file name order."""
    boards = []
    for path in sorted(folder.glob("*.json")):
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{path.name} is not valid JSON ({exc}); export the dashboard again",
                field=path.name,
            ) from exc
        board["__file__"] = path.name
        boards.append(board)
    return boards


def iter_panels(board: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, including those folded inside rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(board: Mapping[str, Any]) -> list[PanelQuery]:
    found = []
    for panel in iter_panels(board):
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            found.append(
                PanelQuery(
                    dashboard_uid=str(board["uid"]),
                    panel_id=int(panel["id"]),
                    title=str(panel.get("title", "")),
                    panel_type=str(panel["type"]),
                    ref_id=str(target.get("refId", "A")),
                    raw_sql=str(target.get("rawSql", "")),
                    format=str(target.get("format", "time_series")),
                    panel=panel,
                )
            )
    return found


def _values(conn: Conn, sql: str) -> list[str]:
    cursor = conn.execute(sql)
    names = [column.name for column in cursor.description or []]
    index = names.index("__value") if "__value" in names else 0
    return [str(row[index]) for row in cursor.fetchall()]


def resolve_variables(
    conn: Conn,
    board: Mapping[str, Any],
    time_range: TimeRange,
    *,
    choice: Choice = "first",
    selected: Mapping[str, str] | None = None,
    timescaledb: bool = False,
) -> dict[str, Variable]:
    """Run each query variable's SQL in order and select a value of each.

    ``selected`` names the value to pick for some variables; the others get
    "All" where they offer it and ``choice`` is "all", else their first value.
    A variable whose query returns nothing, or lacks the value asked for, is
    an error: every later query would fail in Grafana too.
    """
    resolved: dict[str, Variable] = {}
    for spec in board.get("templating", {}).get("list", []):
        if spec.get("type") != "query":
            continue
        name = str(spec["name"])
        query = spec["query"]
        text = query if isinstance(query, str) else str(query.get("rawSql", ""))
        sql = render_query(
            text, time_range=time_range, variables=resolved, timescaledb=timescaledb
        )
        options = _values(conn, sql)
        if not options:
            raise InvalidInput(
                f"variable {name!r} of dashboard {board.get('uid')!r} has no values; "
                "seed the database or fix its query",
                field=name,
            )
        include_all = bool(spec.get("includeAll"))
        current = [ALL_VALUE] if include_all and choice == "all" else [options[0]]
        wanted = (selected or {}).get(name)
        if wanted is not None:
            if wanted not in options:
                raise InvalidInput(
                    f"variable {name!r} has no value {wanted!r}; its query offers "
                    f"{len(options)} others",
                    field=name,
                )
            current = [wanted]
        resolved[name] = Variable(
            name=name,
            current=current,
            multi=bool(spec.get("multi")),
            include_all=include_all,
            all_value=spec.get("allValue") or None,
            options=options,
        )
    return resolved


def result_problems(
    query: PanelQuery, columns: list[tuple[str, int]], rows: list[tuple[Any, ...]]
) -> list[str]:
    """What a panel would lack in this result: the columns its type needs.

    A table may be empty (no open tickets is good news); other panels must
    show something on a seeded database.
    """
    names = {name for name, _ in columns}
    numeric = [name for name, oid in columns if oid in NUMERIC_TYPES]
    problems = []
    if not rows and query.panel_type != "table":
        problems.append("returned no rows")
    if query.panel_type == "geomap":
        for needed in ("latitude", "longitude"):
            if needed not in numeric:
                problems.append(f"needs a numeric {needed!r} column")
        for layer in query.panel.get("options", {}).get("layers", []):
            field = layer.get("config", {}).get("style", {}).get("color", {})
            if field.get("field") and field["field"] not in numeric:
                problems.append(f"colours by {field['field']!r}, which is not numeric")
    elif query.panel_type in ("stat", "gauge", "bargauge"):
        if len(rows) != 1:
            problems.append(f"should return one row, returned {len(rows)}")
        if not numeric:
            problems.append("needs a numeric column")
    elif query.panel_type in ("timeseries", "state-timeline"):
        kinds = dict(columns)
        if "time" not in names or kinds["time"] not in TIME_TYPES | NUMERIC_TYPES:
            problems.append("needs a 'time' column of a time or epoch type")
        others = [n for n in names if n != "time"]
        if not others:
            problems.append("needs a value column besides 'time'")
        if query.panel_type == "timeseries" and not [n for n in numeric if n != "time"]:
            problems.append("needs a numeric value column")
        times = [row[[n for n, _ in columns].index("time")] for row in rows]
        if "time" in names and times != sorted(times):
            problems.append("rows are not ordered by time")
    elif query.panel_type == "barchart":
        if not numeric or len(numeric) == len(columns):
            problems.append("needs a label column and a numeric column")
    elif not columns:
        problems.append("returned no columns")
    return problems
