"""The background worker: escalation timers, outbox delivery, daily upkeep.

One pass (:meth:`Worker.run_once`) fires the due timers, delivers the due
notifications, and once a day keeps the telemetry partitions. Auto-closing
unrated tickets and verifying fixes are timers too, so they run with the
rest. Any number of workers may run: timers and outbox rows are claimed with
``FOR UPDATE SKIP LOCKED``. Time comes from an injectable clock, so tests run
a worker through days in milliseconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import ConnectionPool

from ..analytics import run_due_analytics
from ..backoff import Backoff
from ..db.partitions import maintain_telemetry
from ..ingest.history import prune_state_history
from ..notify.outbox import (
    DEFAULT_BACKOFF,
    DeliveryReport,
    Sender,
    deliver_due,
    erase_delivered_contacts,
)
from ..privacy import purge_personal_data
from ..tickets.model import DEFAULT_CONFIG, TicketConfig
from ..tickets.timers import FiringReport, fire_due_timers

log = logging.getLogger("edufleet.collector.worker")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker paces itself; every field has a working default."""

    interval: float = 2.0
    timer_batch: int = 100
    outbox_batch: int = 10
    """Notifications claimed at once; with the send timeout, keep their total
    sending time under ``lease``, or another worker may send them again."""
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 8
    backoff: Backoff = DEFAULT_BACKOFF
    upkeep_every: timedelta = timedelta(days=1)
    retention_days: int = 90
    personal_data_retention_days: int = 180
    upload_dir: str | None = None
    state_history_retention_days: int = 400
    """Where report photos are, to delete them with the reporters' data."""
    partitions_ahead_days: int = 7


@dataclass
class PassReport:
    timers: FiringReport = field(default_factory=FiringReport)
    outbox: DeliveryReport = field(default_factory=DeliveryReport)
    upkeep: bool = False


class Worker:
    """Runs the background jobs against a pool; see the module docstring."""

    def __init__(
        self,
        pool: ConnectionPool,
        senders: Mapping[str, Sender],
        *,
        config: TicketConfig = DEFAULT_CONFIG,
        options: WorkerOptions | None = None,
        clock: Clock = utc_now,
        owner: str | None = None,
    ) -> None:
        self.pool = pool
        self.senders = senders
        self.config = config
        self.options = options or WorkerOptions()
        self.clock = clock
        self.owner = owner or default_owner()
        self.last_upkeep: datetime | None = None
        self.stop_event = threading.Event()

    def run_once(self) -> PassReport:
        """One pass over every job; a failing job is logged and the others still run."""
        report = PassReport()
        try:
            report.timers = self.fire_timers()
        except psycopg.Error as exc:
            log.error("firing timers failed: %s", exc)
        try:
            report.outbox = self.deliver()
        except psycopg.Error as exc:
            log.error("delivering notifications failed: %s", exc)
        try:
            report.upkeep = self.upkeep()
        except psycopg.Error as exc:
            log.error("telemetry partition upkeep failed: %s", exc)
        try:
            with self.pool.connection() as conn:
                run_due_analytics(conn, self.clock())
        except psycopg.Error as exc:
            log.error("analytics refresh failed: %s", exc)
        return report

    def fire_timers(self) -> FiringReport:
        total = FiringReport()
        while not self.stop_event.is_set():
            with self.pool.connection() as conn:
                report = fire_due_timers(
                    conn,
                    now=self.clock(),
                    owner=self.owner,
                    config=self.config,
                    limit=self.options.timer_batch,
                )
            total.fired += report.fired
            total.acted += report.acted
            for kind, count in report.kinds.items():
                total.kinds[kind] = total.kinds.get(kind, 0) + count
            if report.fired < self.options.timer_batch:
                break
        if total.fired:
            log.info("fired %d timers (%s)", total.fired, total.kinds)
        return total

    def deliver(self) -> DeliveryReport:
        total = DeliveryReport()
        while not self.stop_event.is_set():
            with self.pool.connection() as conn:
                report = deliver_due(
                    conn,
                    self.senders,
                    owner=self.owner,
                    now=self.clock(),
                    lease=self.options.lease,
                    max_attempts=self.options.max_attempts,
                    backoff=self.options.backoff,
                    limit=self.options.outbox_batch,
                )
            total.sent += report.sent
            total.retried += report.retried
            total.dead += report.dead
            total.errors += report.errors
            handled = report.sent + report.retried + report.dead
            if handled < self.options.outbox_batch:
                break
        return total

    def upkeep(self) -> bool:
        """Keep the telemetry partitions and erase expired reporter data, at most
        once per ``upkeep_every``."""
        now = self.clock()
        due = (
            self.last_upkeep is None
            or now - self.last_upkeep >= self.options.upkeep_every
        )
        if not due:
            return False
        with self.pool.connection() as conn:
            maintain_telemetry(
                conn,
                retention_days=self.options.retention_days,
                days_ahead=self.options.partitions_ahead_days,
                now=now,
            )
            purge_personal_data(
                conn,
                retention_days=self.options.personal_data_retention_days,
                now=now,
                upload_dir=self.options.upload_dir,
            )
            prune_state_history(
                conn,
                before=now - timedelta(days=self.options.state_history_retention_days),
            )
            erase_delivered_contacts(
                conn,
                before=now - timedelta(days=self.options.personal_data_retention_days),
            )
        self.last_upkeep = now
        return True

    def run_forever(self) -> None:
        """Run passes every ``interval`` seconds until :meth:`stop`."""
        log.info("worker %s started", self.owner)
        while not self.stop_event.is_set():
            self.run_once()
            self.stop_event.wait(self.options.interval)
        log.info("worker %s stopped", self.owner)

    def stop(self) -> None:
        self.stop_event.set()
