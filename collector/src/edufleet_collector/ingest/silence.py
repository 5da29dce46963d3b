"""The silence detector: devices that stopped talking without sending their will.

A device is silent when nothing arrived from it for ``factor`` times its
report interval (the fastest probe interval of its last birth, or a default).
Whether that is a fault depends on the school's calendar: an always-on device
(controller, switch, camera) is expected to talk at any hour, any other device
only during the school's service hours. The judgement uses the moment the
device fell silent (its last message), not the moment of detection, so a PC
that went quiet at 17:25 inside the day still counts at 17:35.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..calendar_store import CalendarCache
from ..db import Conn
from ..tickets.faults import handle_connectivity
from ..tickets.model import DEFAULT_CONFIG, TicketConfig
from . import metrics

log = logging.getLogger("edufleet.collector.ingest.silence")

SILENCE_LOCK_ID = 0x0EDF5113
"""Advisory lock held by the one ingest process that runs the detector."""


@dataclass
class SilenceReport:
    ran: bool
    silent: list[int] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)


def detect_silence(
    conn: Conn,
    *,
    now: datetime,
    factor: float,
    default_interval: float,
    calendars: CalendarCache,
    config: TicketConfig = DEFAULT_CONFIG,
    slack: float = 0.0,
) -> SilenceReport:
    """Mark silent devices and report the faulty ones; run inside a transaction.

    ``slack`` is how far a stored last_seen may lag behind the last message
    (ingest rewrites it at most that often). Returns ``ran=False`` when another
    process holds the detector's lock.
    Rows that a concurrent batch is writing are skipped: that device is
    talking right now.
    """
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s)", [SILENCE_LOCK_ID]
    ).fetchone()
    if not row or not row[0]:
        return SilenceReport(ran=False)

    rows = conn.execute(
        """
        WITH candidates AS (
            SELECT device_id FROM device_state
            WHERE state = 'online'
              AND last_seen < %(now)s - make_interval(secs => %(slack)s
                  + %(factor)s * COALESCE(report_interval_seconds, %(default)s))
            ORDER BY device_id
            FOR UPDATE SKIP LOCKED
        )
        UPDATE device_state s
        SET state = 'silent', state_since = s.last_seen
        FROM candidates c, devices d, device_categories k
        WHERE s.device_id = c.device_id AND d.id = s.device_id AND k.code = d.category
          AND d.status IN ('in_service', 'under_repair')
        RETURNING s.device_id, s.last_seen, d.school_id, k.always_on
        """,
        {"now": now, "factor": factor, "default": default_interval, "slack": slack},
    ).fetchall()

    report = SilenceReport(ran=True)
    for device_id, last_seen, school_id, always_on in rows:
        report.silent.append(int(device_id))
        if always_on or calendars.get(conn, int(school_id)).in_service(last_seen):
            report.faults.append(int(device_id))
    report.silent.sort()
    report.faults.sort()

    if report.faults:
        conn.execute(
            "UPDATE device_state SET offline_reported = true WHERE device_id = ANY(%s)",
            [report.faults],
        )
        outcome = handle_connectivity(
            conn, device_ids=report.faults, state="silent", now=now, config=config
        )
        metrics.tickets_opened.labels("silence").inc(len(outcome.created))
    if report.silent:
        metrics.silent_devices.labels("yes").inc(len(report.faults))
        metrics.silent_devices.labels("no").inc(len(report.silent) - len(report.faults))
        log.info(
            "%d devices fell silent, %d of them during service hours or always on",
            len(report.silent),
            len(report.faults),
        )
    return report


def prune_rejected(conn: Conn, *, now: datetime, keep_days: float) -> int:
    """Delete refused messages older than ``keep_days``; return how many went."""
    deleted = conn.execute(
        "DELETE FROM rejected_messages "
        "WHERE received_at < %s - make_interval(secs => %s)",
        [now, keep_days * 86400],
    ).rowcount
    if deleted:
        log.info("pruned %d refused messages older than %g days", deleted, keep_days)
    return deleted
