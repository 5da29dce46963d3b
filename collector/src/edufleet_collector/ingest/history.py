"""The history of devices' connection states, recorded by a trigger on
``device_state`` (migration 0054): reading it, and pruning it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..db import Conn

log = logging.getLogger("edufleet.collector.ingest")

MAX_CHANGES = 1000
"""State changes returned at most by one read."""


@dataclass(frozen=True)
class StateChange:
    at: datetime
    state: str
    previous: str | None


def state_changes(
    conn: Conn, device_id: int, *, since: datetime, until: datetime
) -> list[StateChange]:
    """A device's state changes in [since, until), oldest first."""
    rows = conn.execute(
        """
        SELECT at, state, previous FROM device_state_history
        WHERE device_id = %s AND at >= %s AND at < %s
        ORDER BY at, recorded_at
        LIMIT %s
        """,
        [device_id, since, until, MAX_CHANGES],
    ).fetchall()
    return [StateChange(at, str(state), previous) for at, state, previous in rows]


def prune_state_history(conn: Conn, *, before: datetime) -> int:
    """Delete state changes older than ``before``; return how many."""
    deleted = conn.execute(
        "DELETE FROM device_state_history WHERE at < %s", [before]
    ).rowcount
    if deleted:
        log.info("pruned %d device state change(s) before %s", deleted, before)
    return deleted
