"""The registry as ingest needs it: wire uid -> device id, status, school, category."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..db import Conn

log = logging.getLogger("edufleet.collector.ingest")

REPORTING_STATUSES = frozenset({"in_service", "under_repair"})
"""Statuses whose devices may report; a spare or retired device is refused."""


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    status: str
    school_id: int
    category: str
    always_on: bool

    @property
    def may_report(self) -> bool:
        return self.status in REPORTING_STATUSES


_SELECT = """
    SELECT d.uid, d.id, d.status, d.school_id, d.category, c.always_on
    FROM devices d JOIN device_categories c ON c.code = d.category
"""


class DeviceCache:
    """Every device by uid, reloaded whole when older than ``max_age`` seconds.

    A uid not in the cache is looked up at once (in bulk, per batch), so a
    device enrolled a second ago is accepted; a uid found nowhere is
    remembered as unknown for ``unknown_age`` seconds, so a flood from an
    unknown device costs one query per interval.
    """

    def __init__(self, max_age: float = 300.0, unknown_age: float = 10.0) -> None:
        self.max_age = max_age
        self.unknown_age = unknown_age
        self._by_uid: dict[str, Device] = {}
        self._unknown: dict[str, float] = {}
        self._loaded_at: float | None = None

    def _row(self, row: tuple[object, ...]) -> tuple[str, Device]:
        uid, id_, status, school_id, category, always_on = row
        return str(uid), Device(
            int(id_),  # type: ignore[call-overload]
            str(status),
            int(school_id),  # type: ignore[call-overload]
            str(category),
            bool(always_on),
        )

    def refresh(self, conn: Conn) -> None:
        started = time.monotonic()
        by_uid = dict(self._row(row) for row in conn.execute(_SELECT))
        self._by_uid = by_uid
        self._unknown.clear()
        self._loaded_at = time.monotonic()
        log.debug(
            "device cache reloaded: %d devices in %.2f s",
            len(by_uid),
            self._loaded_at - started,
        )

    def resolve(self, conn: Conn, uids: Iterable[str]) -> dict[str, Device]:
        """The known devices among ``uids``, reloading or looking up as needed."""
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > self.max_age:
            self.refresh(conn)
        by_uid = self._by_uid
        unknown = self._unknown
        missing = {
            u
            for u in uids
            if u not in by_uid
            and now - unknown.get(u, -self.unknown_age) >= self.unknown_age
        }
        if missing:
            found = dict(
                self._row(row)
                for row in conn.execute(
                    _SELECT + " WHERE d.uid = ANY(%s)", [list(missing)]
                )
            )
            by_uid.update(found)
            unknown.update(dict.fromkeys(missing - found.keys(), now))
        return by_uid
