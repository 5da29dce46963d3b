"""Write one decoded batch in the caller's transaction.

Telemetry goes in with COPY. The first attempt copies straight into the
table; a duplicate (a redelivered message, an agent's replay) makes that
fail, and the batch then goes through a temporary staging table and
``INSERT ... ON CONFLICT DO NOTHING``. Device state rows are locked in
device-id order and fault subjects in the same order, so concurrent ingest
processes seldom deadlock; when they do, the batch is retried whole.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from ..calendar_store import CalendarCache
from ..db import Conn
from ..errors import EdufleetError
from ..tickets.faults import (
    ConnectivityOutcome,
    FaultOutcome,
    handle_connectivity,
    handle_fault_event,
    handle_inventory_change,
)
from ..tickets.model import TicketConfig
from .decode import Batch, BirthRecord, Rejection
from .devices import Device

log = logging.getLogger("edufleet.collector.ingest")

_COPY_COLUMNS = "(ts, device_id, sid, seq, metrics, received_at)"


@dataclass
class WriteResult:
    samples: int = 0
    duplicates: int = 0
    inventory_changes: int = 0
    tickets_opened: int = 0
    recovered: list[int] = field(default_factory=list)
    staged: bool = False
    seen_written: dict[int, float] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def write_telemetry(conn: Conn, lines: list[str]) -> tuple[int, bool]:
    """COPY the sample lines in; return (rows inserted, whether staging was used)."""
    if not lines:
        return 0, False
    data = "".join(lines)
    # A redelivered sample already stored makes the COPY fail; the slower
    # path below then skips duplicates one by one.
    with contextlib.suppress(pg_errors.UniqueViolation):
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY telemetry {_COPY_COLUMNS} FROM STDIN") as copy,
        ):
            copy.write(data)
        return len(lines), False

    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_stage "
        "(LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with conn.cursor().copy(f"COPY ingest_stage {_COPY_COLUMNS} FROM STDIN") as copy:
        copy.write(data)
    cursor = conn.execute(
        f"INSERT INTO telemetry {_COPY_COLUMNS} "
        f"SELECT ts, device_id, sid, seq, metrics, received_at FROM ingest_stage "
        "ON CONFLICT DO NOTHING"
    )
    conn.execute("TRUNCATE ingest_stage")
    return cursor.rowcount, True


def write_rejections(conn: Conn, rejections: list[Rejection]) -> None:
    if not rejections:
        return
    with conn.cursor().copy(
        "COPY rejected_messages (received_at, topic, device_uid, device_id, reason, "
        "detail, payload_bytes, payload_sample) FROM STDIN"
    ) as copy:
        for r in rejections:
            copy.write_row(
                (
                    _ts(r.at),
                    r.topic.replace("\x00", "\ufffd")[:1000],
                    r.device_uid,
                    r.device_id,
                    r.reason,
                    r.detail.replace("\x00", "\ufffd")[:4000],
                    len(r.payload),
                    r.sample,
                )
            )


def _record_seen(conn: Conn, ids: list[int], batch: Batch) -> list[int]:
    """Upsert last_seen of ``ids``; return those back from silence or unknown."""
    if not ids:
        return []
    seen = [_ts(batch.seen[i]) for i in ids]
    conn.execute(
        """
        INSERT INTO device_state AS s (device_id, state, state_since, last_seen)
        SELECT id, 'online', seen, seen
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS t(id, seen)
        ORDER BY id
        ON CONFLICT (device_id) DO UPDATE SET last_seen = EXCLUDED.last_seen
        WHERE s.last_seen IS NULL OR s.last_seen < EXCLUDED.last_seen
        """,
        [ids, seen],
    )
    rows = conn.execute(
        """
        WITH old AS (
            SELECT device_id, offline_reported FROM device_state
            WHERE state IN ('silent', 'unknown') AND device_id = ANY(%s)
            ORDER BY device_id FOR UPDATE
        )
        UPDATE device_state s
        SET state = 'online', state_since = s.last_seen, offline_reported = false
        FROM old WHERE s.device_id = old.device_id
        RETURNING s.device_id, old.offline_reported
        """,
        [ids],
    ).fetchall()
    return [int(device_id) for device_id, reported in rows if reported]


def _record_states(
    conn: Conn, batch: Batch
) -> tuple[list[tuple[int, float]], list[int]]:
    """Apply state messages; return (devices newly lost, devices back online)."""
    ids = sorted(batch.states)
    if not ids:
        return [], []
    old = {
        int(device_id): (str(state), bool(reported))
        for device_id, state, reported in conn.execute(
            "SELECT device_id, state, offline_reported FROM device_state "
            "WHERE device_id = ANY(%s) ORDER BY device_id FOR UPDATE",
            [ids],
        )
    }
    changes = [batch.states[i] for i in ids]
    applied = conn.execute(
        """
        INSERT INTO device_state AS s (device_id, state, state_since, session_id)
        SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[])
        ON CONFLICT (device_id) DO UPDATE SET
            state = EXCLUDED.state,
            state_since = CASE WHEN s.state = EXCLUDED.state THEN s.state_since
                               ELSE EXCLUDED.state_since END,
            session_id = EXCLUDED.session_id,
            offline_reported = s.offline_reported AND EXCLUDED.state = s.state
        WHERE s.state_since <= EXCLUDED.state_since
        RETURNING device_id, state
        """,
        [
            ids,
            [c.state for c in changes],
            [_ts(c.at) for c in changes],
            [c.sid for c in changes],
        ],
    ).fetchall()
    lost: list[tuple[int, float]] = []
    back: list[int] = []
    for device_id, state in applied:
        before, reported = old.get(int(device_id), ("unknown", False))
        if state == "lost" and before != "lost":
            lost.append((int(device_id), batch.states[int(device_id)].at))
        elif state == "online" and before in ("lost", "silent") and reported:
            back.append(int(device_id))
    return lost, back


def _record_clocks(conn: Conn, batch: Batch) -> None:
    ids = sorted(batch.clocks)
    if not ids:
        return
    conn.execute(
        """
        UPDATE device_state s SET clock_skew_seconds = t.skew, clock_suspect = t.suspect
        FROM unnest(%s::bigint[], %s::float8[], %s::boolean[]) AS t(id, skew, suspect)
        WHERE s.device_id = t.id
        """,
        [ids, [batch.clocks[i][0] for i in ids], [batch.clocks[i][1] for i in ids]],
    )


def _hardware(inventory: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of an inventory whose change is worth an event."""
    if not inventory:
        return {}
    disks = sorted(
        (str(d.get("device", "")), int(d.get("total_bytes", 0)))
        for d in inventory.get("disks", [])
        if isinstance(d, dict)
    )
    return {
        "ram_mib": int(inventory.get("ram_bytes", 0)) // (1024 * 1024),
        "disks": [list(d) for d in disks],
        "serial": inventory.get("serial") or None,
    }


def inventory_changes(
    stored: dict[str, Any] | None, asset_serial: str, new: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """How a new inventory differs from the stored record in RAM, disks or serial."""
    before, after = _hardware(stored), _hardware(new)
    changes: dict[str, dict[str, Any]] = {}
    if before:
        for key in ("ram_mib", "disks"):
            if before[key] != after[key]:
                changes[key] = {"before": before[key], "after": after[key]}
    known_serial = before.get("serial") or asset_serial or None
    if known_serial and after["serial"] and after["serial"] != known_serial:
        changes["serial"] = {"before": known_serial, "after": after["serial"]}
    return changes


def _record_births(conn: Conn, batch: Batch) -> list[tuple[int, dict[str, Any]]]:
    """Store inventories; return the (device, changes) recorded for the first time."""
    found = []
    for record in sorted(batch.births, key=lambda r: (r.device.id, r.at)):
        changes = _record_birth(conn, record, batch.intervals.get(record.device.id))
        if changes:
            found.append((record.device.id, changes))
    return found


def _record_birth(
    conn: Conn, record: BirthRecord, interval: int | None
) -> dict[str, Any] | None:
    payload = record.birth
    inventory = payload.inventory.model_dump(mode="json", exclude_none=True)
    row = conn.execute(
        "SELECT inventory, serial FROM devices WHERE id = %s FOR UPDATE",
        [record.device.id],
    ).fetchone()
    if row is None:
        return None
    stored, asset_serial = row
    changes = inventory_changes(stored, str(asset_serial or ""), inventory)
    conn.execute(
        "UPDATE devices SET inventory = %s, updated_at = now() WHERE id = %s",
        [Jsonb(inventory), record.device.id],
    )
    if hasattr(payload, "agent_version"):
        conn.execute(
            """
            UPDATE device_state SET agent_version = %s,
                report_interval_seconds = COALESCE(%s, report_interval_seconds)
            WHERE device_id = %s
            """,
            [payload.agent_version, interval, record.device.id],
        )
    if not changes:
        return None
    inserted = conn.execute(
        """
        INSERT INTO device_events (device_id, kind, occurred_at, sid, seq, details)
        VALUES (%s, 'inventory_changed', %s, %s, %s, %s)
        ON CONFLICT DO NOTHING
        """,
        [
            record.device.id,
            payload.ts,
            payload.sid,
            getattr(payload, "seq", 0),
            Jsonb({"changes": changes}),
        ],
    ).rowcount
    if not inserted:
        return None
    log.info(
        "device %r inventory changed: %s", record.device.id, ", ".join(sorted(changes))
    )
    return changes


def _offline_is_fault(
    conn: Conn, calendars: CalendarCache, device: Device, at: float
) -> bool:
    """Whether going offline at ``at`` is a fault rather than the school day's end.

    An always-on device (controller, switch, camera) must never go offline;
    any other device only during the school's service hours.
    """
    if device.always_on:
        return True
    return calendars.get(conn, device.school_id).in_service(_ts(at))


class Writer:
    """Writes batches; faults and outages go to the tickets service."""

    def __init__(
        self,
        *,
        calendars: CalendarCache,
        devices_by_id: Callable[[], dict[int, Device]],
        config: TicketConfig,
        seen_resolution: float = 0.0,
    ) -> None:
        self.calendars = calendars
        self.devices_by_id = devices_by_id
        self.config = config
        self.seen_resolution = seen_resolution
        self._seen_written: dict[int, float] = {}

    def _seen_due(self, batch: Batch) -> list[int]:
        """Devices whose stored last_seen is older than the resolution allows.

        A device reporting every second need not rewrite its row every
        second; the silence detector allows for the lag.
        """
        written = self._seen_written
        resolution = self.seen_resolution
        return sorted(
            device_id
            for device_id, at in batch.seen.items()
            if at - written.get(device_id, 0.0) >= resolution
        )

    def committed(self, result: WriteResult) -> None:
        """Note what a committed batch wrote, for the next batches."""
        for device_id, at in result.seen_written.items():
            self._seen_written[device_id] = at

    def write(self, conn: Conn, batch: Batch) -> WriteResult:
        result = WriteResult()
        result.samples, result.staged = write_telemetry(conn, batch.copy_lines)
        result.duplicates = len(batch.copy_lines) - result.samples

        due = self._seen_due(batch)
        returned = _record_seen(conn, due, batch)
        result.seen_written = {device_id: batch.seen[device_id] for device_id in due}
        lost, back = _record_states(conn, batch)
        _record_clocks(conn, batch)
        changes = _record_births(conn, batch)
        result.inventory_changes = len(changes)
        for device_id, details in changes:
            outcome = handle_inventory_change(
                conn,
                device_id=device_id,
                changes=details,
                now=datetime.now(UTC),
                config=self.config,
            )
            result.tickets_opened += _opened(outcome)
        result.recovered = sorted({*returned, *back})

        rejections = list(batch.rejections)
        result.tickets_opened += self._faults(conn, batch, rejections)
        result.tickets_opened += self._connectivity(conn, lost, result.recovered)
        write_rejections(conn, rejections)
        result.rejections = rejections
        return result

    def _faults(self, conn: Conn, batch: Batch, rejections: list[Rejection]) -> int:
        opened = 0
        now = datetime.now(UTC)
        # Subject order keeps lock order alike across processes; the sort is
        # stable, so one device's events keep their arrival order.
        for record in sorted(batch.faults, key=lambda r: r.subject.id):
            event = record.event
            try:
                with conn.transaction():
                    outcome = handle_fault_event(
                        conn,
                        device_id=record.device.id,
                        action=event.action,
                        code=event.code,
                        severity=event.severity,
                        message=event.message,
                        evidence=dict(event.evidence),
                        subject_device_id=record.subject.id,
                        sid=event.sid,
                        seq=event.seq,
                        ts=event.ts,
                        now=now,
                        config=self.config,
                    )
            except (psycopg.OperationalError, pg_errors.DeadlockDetected):
                raise
            except (psycopg.Error, EdufleetError) as exc:
                log.warning(
                    "fault %s of device %r not recorded, stored as rejected: %s",
                    event.code,
                    record.device.id,
                    exc,
                )
                rejections.append(
                    Rejection(
                        record.at,
                        record.message.topic,
                        None,
                        record.device.id,
                        "fault_not_recorded",
                        f"the tickets service refused fault {event.code}: {exc}",
                        record.message.payload,
                    )
                )
                continue
            opened += _opened(outcome)
        return opened

    def _connectivity(
        self, conn: Conn, lost: list[tuple[int, float]], recovered: list[int]
    ) -> int:
        devices = self.devices_by_id()
        faults = [
            device_id
            for device_id, at in lost
            if device_id in devices
            and _offline_is_fault(conn, self.calendars, devices[device_id], at)
        ]
        opened = 0
        if faults:
            conn.execute(
                "UPDATE device_state SET offline_reported = true "
                "WHERE device_id = ANY(%s)",
                [faults],
            )
            outcome = handle_connectivity(
                conn,
                device_ids=faults,
                state="lost",
                now=datetime.now(UTC),
                config=self.config,
            )
            opened += _opened(outcome)
        if recovered:
            handle_connectivity(
                conn,
                device_ids=recovered,
                state="online",
                now=datetime.now(UTC),
                config=self.config,
            )
        return opened


def _opened(outcome: Any) -> int:
    """How many tickets an outcome of the tickets service created or reopened."""
    if isinstance(outcome, ConnectivityOutcome):
        return len(outcome.created)
    if isinstance(outcome, FaultOutcome):
        return int(outcome.result in ("created", "reopened"))
    return 0
