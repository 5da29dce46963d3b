"""``edufleet enroll-tokens create|list|revoke``: school enrollment tokens."""

from __future__ import annotations

import argparse
import sys

from .. import enrollment
from .common import connect, start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = sub.add_parser(
        "enroll-tokens",
        help="manage the tokens that enroll a school's PCs",
        description="Tokens that `edufleet-agent enroll --token` exchanges for a "
        "device identity. (API tokens for people are `edufleet tokens`.)",
    )
    tokens_sub = tokens.add_subparsers(dest="enroll_tokens_command", required=True)

    create = tokens_sub.add_parser("create", help="issue a token and print it")
    create.add_argument("--school", required=True, help="school code")
    create.add_argument(
        "--uses",
        type=int,
        default=enrollment.DEFAULT_USES,
        help=f"how many PCs it may enroll (default {enrollment.DEFAULT_USES})",
    )
    create.add_argument(
        "--days",
        type=float,
        default=enrollment.DEFAULT_DAYS,
        help=f"days until it expires (default {enrollment.DEFAULT_DAYS})",
    )
    create.add_argument("--label", default="")
    create.set_defaults(handler=run_create)

    listing = tokens_sub.add_parser("list", help="list tokens, newest first")
    listing.add_argument("--school", help="only this school's tokens")
    listing.set_defaults(handler=run_list)

    revoke = tokens_sub.add_parser("revoke", help="stop a token from enrolling more")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        token, record = enrollment.create_enrollment_token(
            conn,
            school_code=args.school,
            max_uses=args.uses,
            days=args.days,
            label=args.label,
        )
    print(token)
    print(
        f"token {record.id} for school {record.school_code}: {record.max_uses} uses, "
        f"expires {record.expires_at:%Y-%m-%d %H:%M} UTC",
        file=sys.stderr,
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        tokens = enrollment.list_enrollment_tokens(conn, school_code=args.school)
    print(
        f"{'id':>6}  {'school':<12} {'uses':>11}  {'expires (UTC)':<16}  state  label"
    )
    for token in tokens:
        print(
            f"{token.id:>6}  {token.school_code:<12} "
            f"{token.uses:>5}/{token.max_uses:<5}  "
            f"{token.expires_at:%Y-%m-%d %H:%M}  {token.state:<9} {token.label}"
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        token = enrollment.revoke_enrollment_token(conn, args.id)
    print(f"token {token.id} for school {token.school_code} is revoked")
    return 0
