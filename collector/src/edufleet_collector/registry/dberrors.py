"""Turn constraint violations from PostgreSQL into errors that name the field.

Registry writes run inside ``translated()``; a unique violation becomes
``Conflict`` (HTTP 409), a check, foreign-key, not-null or range violation
becomes ``InvalidInput`` (HTTP 422) whose ``field`` is the offending column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import errors as pg

from ..errors import Conflict, InvalidInput

_KEY_DETAIL = re.compile(r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\)")

# Constraints whose name does not spell the column they guard.
_CONSTRAINT_FIELDS = {
    "rooms_school_id_name_key": "name",
    "school_engineers_one_primary_idx": "role",
    "school_engineers_pkey": "engineer_id",
    "device_codes_active_idx": "code",
    "devices_check": "parent_id",
    "regions_check": "parent_code",
}
_FIELD_NAMES = {"school_id": "school_code"}


def _field(exc: pg.Error) -> str | None:
    diag = exc.diag
    if diag.column_name:
        return _FIELD_NAMES.get(diag.column_name, diag.column_name)
    name = diag.constraint_name or ""
    if name in _CONSTRAINT_FIELDS:
        return _CONSTRAINT_FIELDS[name]
    match = _KEY_DETAIL.match(diag.message_detail or "")
    if match:
        column = match["columns"].split(",")[-1].strip()
        return _FIELD_NAMES.get(column, column)
    table = diag.table_name or ""
    for suffix in ("_check", "_key", "_fkey"):
        if name.startswith(table + "_") and name.endswith(suffix):
            column = name[len(table) + 1 : -len(suffix)]
            return _FIELD_NAMES.get(column, column)
    return None


def _value(exc: pg.Error) -> str:
    """The value of the key's last column, as PostgreSQL reported it."""
    match = _KEY_DETAIL.match(exc.diag.message_detail or "")
    if not match:
        return ""
    columns = match["columns"].count(",")
    return match["values"].split(", ", columns)[-1]


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Map database constraint errors raised while writing ``what`` (e.g. 'device')."""
    try:
        yield
    except pg.UniqueViolation as exc:
        field = _field(exc) or "id"
        raise Conflict(
            f"{field} {_value(exc)!r} is already used by another {what}; "
            f"choose a different {field}"
        ) from exc
    except pg.ForeignKeyViolation as exc:
        field = _field(exc) or "id"
        raise InvalidInput(
            f"{field} {_value(exc)!r} does not refer to an existing record",
            field=field,
        ) from exc
    except (pg.CheckViolation, pg.NotNullViolation) as exc:
        column = _field(exc)
        raise InvalidInput(
            f"{what} {column or 'value'} is not allowed: {exc.diag.message_primary}",
            field=column,
        ) from exc
    except (pg.NumericValueOutOfRange, pg.StringDataRightTruncation) as exc:
        raise InvalidInput(
            f"a {what} value is too large: {exc.diag.message_primary}", field=None
        ) from exc
