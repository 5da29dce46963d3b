"""``edufleet demo``: the whole system on loopback with a simulated fleet."""

from __future__ import annotations

import argparse

from ..demo import run_demo
from .common import start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo", help="run web, ingest, worker and a simulated fleet (for `make demo`)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="web port (8000 if free)"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.05, help="faults per device per hour"
    )
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    settings = start()
    return run_demo(settings, port=args.port, fault_rate=args.fault_rate)
