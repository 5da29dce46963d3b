"""``edufleet simulate``: a fleet of virtual devices against the broker."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from types import FrameType

from ..errors import InvalidInput
from ..logs import configure_logging
from ..simulator import (
    SimulationConfig,
    Simulator,
    VirtualDevice,
    load_fleet,
    register_fleet,
)
from .common import connect, start

log = logging.getLogger("edufleet.collector.simulator")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "simulate",
        help="run virtual devices that report like real agents",
        description="Register simulated schools and devices (SIM0001..., "
        "sim0001-001...) and run them against the broker. Devices share a few "
        "MQTT connections; only the first device of each connection has a real "
        "last will. The broker password comes from EDUFLEET_SIMULATOR_PASSWORD "
        "(with --username) or EDUFLEET_MQTT_PASSWORD.",
    )
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--devices-per-school", type=int, default=50)
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between reports"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.02,
        help="faults opened per device per hour (default 0.02)",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds to run (default: until Ctrl-C)"
    )
    parser.add_argument("--mqtt-url", help="broker URL (default EDUFLEET_MQTT_URL)")
    parser.add_argument("--username", help="broker user with the simulator role")
    parser.add_argument("--per-connection", type=int, default=500)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--use-registry",
        action="store_true",
        help="simulate devices already in the registry instead of creating SIM ones",
    )
    source.add_argument(
        "--no-register",
        action="store_true",
        help="touch no database (ingest will refuse the devices); for broker tests",
    )
    parser.set_defaults(handler=run_simulate)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.schools <= 10_000:
        raise InvalidInput("--schools must be 1-10000", field="schools")
    if not 1 <= args.devices_per_school <= 1_000:
        raise InvalidInput(
            "--devices-per-school must be 1-1000", field="devices_per_school"
        )
    if args.interval < 1:
        raise InvalidInput("--interval must be at least 1 second", field="interval")
    if not 0 <= args.fault_rate <= 60:
        raise InvalidInput("--fault-rate must be 0-60 per hour", field="fault_rate")


def run_simulate(args: argparse.Namespace) -> int:
    _check(args)
    count = args.schools * args.devices_per_school
    if args.no_register:
        configure_logging(os.environ.get("EDUFLEET_LOG_LEVEL", "INFO"), "text")
        url = args.mqtt_url or os.environ.get(
            "EDUFLEET_MQTT_URL", "mqtt://127.0.0.1:1883"
        )
        username = args.username or os.environ.get("EDUFLEET_MQTT_USERNAME")
        password = os.environ.get("EDUFLEET_SIMULATOR_PASSWORD") or os.environ.get(
            "EDUFLEET_MQTT_PASSWORD"
        )
        ca_file = os.environ.get("EDUFLEET_MQTT_CA_FILE")
        devices = [
            VirtualDevice(f"sim{s:04d}-{n:03d}")
            for s in range(1, args.schools + 1)
            for n in range(1, args.devices_per_school + 1)
        ]
    else:
        settings = start()
        url = args.mqtt_url or settings.mqtt_url
        username = args.username or settings.mqtt_username
        password = os.environ.get("EDUFLEET_SIMULATOR_PASSWORD") or (
            settings.mqtt_password.get_secret_value()
            if settings.mqtt_password
            else None
        )
        ca_file = settings.mqtt_ca_file
        with connect(settings) as conn:
            if args.use_registry:
                devices = load_fleet(conn, limit=count)
            else:
                devices = register_fleet(
                    conn,
                    schools=args.schools,
                    devices_per_school=args.devices_per_school,
                )
        if not devices:
            raise InvalidInput(
                "the registry has no in-service devices to simulate; run "
                "`edufleet seed` or drop --use-registry",
                field="use_registry",
            )
        log.info("registered %d simulated devices", len(devices))

    simulator = Simulator(
        devices,
        SimulationConfig(
            mqtt_url=url,
            interval_s=args.interval,
            fault_rate=args.fault_rate,
            duration_s=args.duration,
            username=username,
            password=password,
            ca_file=Path(ca_file) if ca_file else None,
            devices_per_connection=args.per_connection,
        ),
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        simulator.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    report = simulator.run()
    print(report.summary())
    return 0 if report.refused == 0 else 1
