"""``edufleet channels`` and ``edufleet sla``: notification channels, SLA targets."""

from __future__ import annotations

import argparse
import re

from ..db import Conn
from ..errors import InvalidInput, NotFound
from ..tickets.model import PRIORITIES
from .common import connect, start

AUDIENCES = ("engineers", "supervisors", "reporters")
KINDS = ("webhook", "wecom", "dingtalk", "email")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, field: str) -> int:
    """Seconds of a duration written 90s, 15m, 16h or 2d."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidInput(
            f"{field} {text!r} is not a duration; write e.g. 15m, 1h, 16h or 2d",
            field=field,
        )
    seconds = int(float(match[1]) * _UNIT[match[2]])
    if seconds <= 0:
        raise InvalidInput(f"{field} must be longer than 0", field=field)
    return seconds


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    channels = sub.add_parser("channels", help="notification channels per region")
    channels_sub = channels.add_subparsers(dest="channels_command", required=True)
    add = channels_sub.add_parser("add", help="add a notification channel")
    add.add_argument("--region", help="region code; omit for every region")
    add.add_argument("--audience", required=True, choices=AUDIENCES)
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument(
        "--target", required=True, help="webhook or robot URL, or e-mail address"
    )
    add.add_argument(
        "--secret",
        default="",
        help="HMAC key of a webhook, or the signing secret of a DingTalk robot",
    )
    add.set_defaults(handler=run_channels_add)
    listing = channels_sub.add_parser("list", help="list the channels")
    listing.set_defaults(handler=run_channels_list)

    sla = sub.add_parser("sla", help="SLA targets per region and priority")
    sla_sub = sla.add_subparsers(dest="sla_command", required=True)
    put = sla_sub.add_parser("set", help="set the targets of one priority")
    put.add_argument("--region", help="region code; omit for the default policy")
    put.add_argument("--priority", required=True, choices=PRIORITIES)
    put.add_argument("--response", required=True, help="e.g. 15m or 1h")
    put.add_argument("--resolution", required=True, help="e.g. 16h or 2d")
    put.add_argument(
        "--measure",
        choices=("service", "wall"),
        default="service",
        help="count school service hours or wall-clock time",
    )
    put.set_defaults(handler=run_sla_set)
    show = sla_sub.add_parser("list", help="list the policies")
    show.set_defaults(handler=run_sla_list)


def _check_region(conn: Conn, region: str | None) -> None:
    if region is None:
        return
    if (
        conn.execute("SELECT 1 FROM regions WHERE code = %s", [region]).fetchone()
        is None
    ):
        raise NotFound(f"region {region!r} does not exist; see the regions table")


def run_channels_add(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    if args.kind == "email" and "@" not in args.target:
        raise InvalidInput("an email channel's --target is an e-mail address")
    if args.kind != "email" and not args.target.startswith(("http://", "https://")):
        raise InvalidInput(f"a {args.kind} channel's --target is an http(s) URL")
    with connect(settings) as conn:
        _check_region(conn, args.region)
        row = conn.execute(
            "INSERT INTO notification_channels "
            "(region_code, audience, kind, target, secret) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [args.region, args.audience, args.kind, args.target, args.secret],
        ).fetchone()
    assert row is not None
    print(
        f"channel {row[0]}: {args.kind} for {args.audience} of {args.region or 'all'}"
    )
    return 0


def run_channels_list(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT id, COALESCE(region_code, '*'), audience, kind, "
            "split_part(target, '?', 1), enabled FROM notification_channels "
            "ORDER BY region_code NULLS FIRST, audience, id"
        ).fetchall()
    for cid, region, audience, kind, target, enabled in rows:
        state = "" if enabled else " (disabled)"
        print(f"{cid:>4}  {region:<8} {audience:<12} {kind:<9} {target}{state}")
    return 0


def run_sla_set(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    response = parse_duration(args.response, "response")
    resolution = parse_duration(args.resolution, "resolution")
    with connect(settings) as conn:
        _check_region(conn, args.region)
        conn.execute(
            """
            INSERT INTO sla_policies
                (region_code, priority, response_seconds, resolution_seconds, measure)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (coalesce(region_code, ''), priority) DO UPDATE SET
                response_seconds = EXCLUDED.response_seconds,
                resolution_seconds = EXCLUDED.resolution_seconds,
                measure = EXCLUDED.measure, updated_at = now()
            """,
            [args.region, args.priority, response, resolution, args.measure],
        )
    print(
        f"SLA for {args.priority} tickets in {args.region or 'every region'}: "
        f"response {response} s, resolution {resolution} s ({args.measure})"
    )
    return 0


def run_sla_list(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT COALESCE(region_code, '*'), priority, response_seconds, "
            "resolution_seconds, measure FROM sla_policies "
            "ORDER BY region_code NULLS FIRST, "
            "array_position(ARRAY['critical', 'high', 'normal', 'low'], priority)"
        ).fetchall()
    for region, priority, response, resolution, measure in rows:
        print(
            f"{region:<8} {priority:<9} response {response / 3600:g} h  "
            f"resolution {resolution / 3600:g} h  ({measure})"
        )
    return 0
