"""``edufleet users add|revoke-sessions`` and ``edufleet tokens create``."""

from __future__ import annotations

import argparse
import getpass
import os

from .. import accounts
from .common import connect, start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="manage user accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="create or update a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    scope = add.add_mutually_exclusive_group()
    scope.add_argument("--region", help="region code, for a district_bureau user")
    scope.add_argument("--school", help="school code, for a school_admin user")
    add.add_argument("--engineer", type=int, help="engineer id, for an engineer user")
    add.add_argument("--display-name", default="")
    add.add_argument(
        "--password",
        action="store_true",
        help="prompt for a password (or read EDUFLEET_NEW_PASSWORD) for logging in",
    )
    add.set_defaults(handler=run_users_add)
    revoke = users_sub.add_parser(
        "revoke-sessions",
        help="log a user out on every device (a lost phone, a leaked cookie)",
    )
    revoke.add_argument("name")
    revoke.set_defaults(handler=run_users_revoke_sessions)

    tokens = sub.add_parser("tokens", help="manage API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="issue an API token and print it")
    create.add_argument("name", help="the user the token acts as")
    create.add_argument("--label", default="")
    create.set_defaults(handler=run_tokens_create)


def run_users_add(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    password = None
    if args.password:
        password = os.environ.get("EDUFLEET_NEW_PASSWORD") or getpass.getpass(
            "password: "
        )
    with connect(settings) as conn:
        user_id = accounts.create_user(
            conn,
            name=args.name,
            role=args.role,
            region_code=args.region,
            school_code=args.school,
            engineer_id=args.engineer,
            password=password,
            display_name=args.display_name,
        )
    print(f"user {args.name!r} ({args.role}) has id {user_id}")
    return 0


def run_users_revoke_sessions(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        accounts.revoke_sessions(conn, name=args.name)
    print(f"every login session of {args.name!r} is now refused")
    return 0


def run_tokens_create(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    with connect(settings) as conn:
        token = accounts.create_token(conn, user_name=args.name, label=args.label)
    print(token)
    return 0
