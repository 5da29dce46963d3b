"""``edufleet seed``: load a generated sample province into an empty registry."""

from __future__ import annotations

import argparse
import os
import time

from ..registry.seed import (
    DEMO_PASSWORD,
    SeedSummary,
    registry_counts,
    seed_province,
    vacuum_registry,
)
from .common import connect, start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "seed",
        help="load a generated sample province (into an empty registry only)",
        description="Generate regions, the school calendar, schools, rooms, "
        "devices with QR codes, engineers, assignments and demo users. The same "
        "arguments give the same province (QR codes aside). Refuses a registry "
        "that already holds schools or devices: seed a freshly migrated database.",
    )
    parser.add_argument("--schools", type=int, required=True)
    parser.add_argument("--devices-per-school", type=int, required=True)
    parser.add_argument(
        "--cities",
        type=int,
        default=None,
        help="how many of the 19 cities and counties get schools, largest first",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--engineers-per-district", type=int, default=2)
    parser.add_argument(
        "--password",
        default=os.environ.get("EDUFLEET_DEMO_PASSWORD", DEMO_PASSWORD),
        help="password of the demo users (default: EDUFLEET_DEMO_PASSWORD, "
        f"else {DEMO_PASSWORD!r})",
    )
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="skip quietly, instead of failing, when the registry is not empty",
    )
    parser.set_defaults(handler=run_seed)


def describe(summary: SeedSummary) -> str:
    """The counts and the demo logins, as the command prints them."""
    lines = [
        f"regions {summary.regions}, calendars {summary.calendars}, "
        f"schools {summary.schools}, rooms {summary.rooms}, "
        f"devices {summary.devices} (QR codes {summary.device_codes}), "
        f"engineers {summary.engineers}, assignments {summary.assignments}",
        f"demo logins (password {summary.password!r}):",
    ]
    lines += [f"  {name:<24} {role}" for name, role in summary.users]
    return "\n".join(lines)


def run_seed(args: argparse.Namespace) -> int:
    settings = start()
    started = time.perf_counter()
    with connect(settings) as conn:
        schools, devices = registry_counts(conn)
        if args.if_empty and (schools or devices):
            print(
                f"registry already holds {schools} schools and {devices} devices; "
                "seed skipped"
            )
            return 0
        summary = seed_province(
            conn,
            schools=args.schools,
            devices_per_school=args.devices_per_school,
            cities=args.cities,
            seed=args.seed,
            engineers_per_district=args.engineers_per_district,
            password=args.password,
        )
        conn.commit()
        vacuum_registry(conn)
    print(describe(summary))
    print(f"seeded in {time.perf_counter() - started:.1f} s")
    return 0
