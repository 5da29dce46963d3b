"""``edufleet worker``: escalation timers, notification delivery, daily upkeep."""

from __future__ import annotations

import argparse
import logging
import signal
from datetime import timedelta
from types import FrameType

import httpx

from ..db.pool import open_pool
from ..notify.channels import default_senders
from ..tickets.model import TicketConfig
from ..worker.runner import Worker, WorkerOptions
from .common import start

log = logging.getLogger("edufleet.collector.worker")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "worker",
        help="fire escalation timers, deliver notifications, keep partitions",
    )
    parser.add_argument(
        "--once", action="store_true", help="run one pass and exit (for cron or tests)"
    )
    parser.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    settings = start()
    options = WorkerOptions(
        interval=settings.worker_interval_seconds,
        lease=timedelta(seconds=settings.notify_lease_seconds),
        max_attempts=settings.notify_max_attempts,
        retention_days=settings.telemetry_retention_days,
        partitions_ahead_days=settings.telemetry_partitions_ahead_days,
        personal_data_retention_days=settings.personal_data_retention_days,
        upload_dir=settings.upload_dir,
        state_history_retention_days=settings.state_history_retention_days,
    )
    pool = open_pool(settings, name="worker", min_size=1, max_size=4)
    client = httpx.Client(timeout=settings.notify_timeout_seconds)
    try:
        worker = Worker(
            pool,
            default_senders(settings, client),
            config=TicketConfig.from_settings(settings),
            options=options,
        )
        if args.once:
            report = worker.run_once()
            print(
                f"timers fired: {report.timers.fired}; notifications sent: "
                f"{report.outbox.sent}, retried: {report.outbox.retried}, "
                f"dead: {report.outbox.dead}"
            )
            return 0

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d received, stopping after this pass", signum)
            worker.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        worker.run_forever()
        return 0
    finally:
        client.close()
        pool.close()
