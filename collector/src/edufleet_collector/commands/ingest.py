"""``edufleet ingest``: consume the agents' MQTT messages into the database."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from types import FrameType

from prometheus_client import start_http_server

from ..ingest.consumer import Ingest, IngestOptions
from .common import start

log = logging.getLogger("edufleet.collector.ingest")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "ingest", help="consume agent messages from MQTT into the database"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (0 or unset: no server)",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="messages per database batch"
    )
    parser.add_argument(
        "--batch-ms", type=int, default=None, help="longest wait for a batch to fill"
    )
    parser.add_argument(
        "--client-id",
        default=None,
        help="MQTT client id; keep it stable so a restart resumes its session "
        "(default: edufleet-ingest-<hostname>)",
    )
    parser.add_argument(
        "--retire",
        action="store_true",
        help="take this client id out of service for good: stop its share of new "
        "messages, store what its sessions still hold, remove them from the "
        "broker, and exit",
    )
    parser.set_defaults(handler=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    settings = start()
    client_id = args.client_id or f"edufleet-ingest-{socket.gethostname()}"
    options = IngestOptions.from_settings(
        settings,
        client_id=client_id,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        retire=args.retire,
    )
    ingest = Ingest(settings, options)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host)
        log.info(
            "metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port
        )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: draining and stopping", signum)
        ingest.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "ingest %r starting (pid %d, batches of %d messages or %d ms, "
        "%d unacknowledged at most)",
        client_id,
        os.getpid(),
        options.batch_size,
        options.batch_ms,
        options.max_pending,
    )
    ingest.run()
    return 0
