"""``edufleet broker init|revoke``: the broker's dynamic security identities."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..broker import roles
from ..broker.dynsec import DynsecClient
from ..enrollment import revoke_device_identity
from ..errors import ConfigError, NotFound
from .common import connect, start

DEFAULT_FILE = "/var/lib/mosquitto/dynamic-security.json"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    broker = sub.add_parser("broker", help="set up the MQTT broker's identities")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True)
    init = broker_sub.add_parser(
        "init",
        help="write the dynamic security file with edufleet's roles",
        description="Write Mosquitto's dynamic security file: the roles "
        "collector-admin, ingest, simulator and device, and one identity each "
        "for the collector's administration and for ingest. Passwords come from "
        "EDUFLEET_BROKER_ADMIN_PASSWORD, EDUFLEET_BROKER_INGEST_PASSWORD and "
        "EDUFLEET_BROKER_SIMULATOR_PASSWORD, or are generated and printed once.",
    )
    init.add_argument("--admin-user", required=True, help="the collector's admin")
    init.add_argument("--ingest-user", default="ingest")
    init.add_argument(
        "--simulator-user",
        help="also create a simulator identity (load tests and demos only)",
    )
    init.add_argument(
        "--file", default=DEFAULT_FILE, help=f"where to write (default {DEFAULT_FILE})"
    )
    init.set_defaults(handler=run_broker_init)

    revoke = broker_sub.add_parser(
        "revoke",
        help="delete a device's broker login (done by retiring it, too)",
        description="Revoke the MQTT identity of a device, which disconnects it. "
        "Uses EDUFLEET_MQTT_ADMIN_USERNAME / _PASSWORD. The device can enroll "
        "again with a school token.",
    )
    revoke.add_argument("device", help="device id (the MQTT username), e.g. d1a2b3c4")
    revoke.set_defaults(handler=run_broker_revoke)


def _password(variable: str) -> tuple[str, bool]:
    given = os.environ.get(variable)
    if given is not None and len(given) < 12:
        raise ConfigError(f"{variable} must have at least 12 characters")
    return (given, False) if given else (roles.new_password(), True)


def run_broker_init(args: argparse.Namespace) -> int:
    wanted = [
        (args.admin_user, roles.ADMIN_ROLE, "EDUFLEET_BROKER_ADMIN_PASSWORD"),
        (args.ingest_user, roles.INGEST_ROLE, "EDUFLEET_BROKER_INGEST_PASSWORD"),
    ]
    if args.simulator_user:
        wanted.append(
            (
                args.simulator_user,
                roles.SIMULATOR_ROLE,
                "EDUFLEET_BROKER_SIMULATOR_PASSWORD",
            )
        )
    if len({name for name, _, _ in wanted}) != len(wanted):
        raise ConfigError(
            "--admin-user, --ingest-user and --simulator-user must differ"
        )

    users: dict[str, tuple[str, str]] = {}
    generated: list[tuple[str, str]] = []
    for name, role, variable in wanted:
        password, new = _password(variable)
        users[name] = (password, role)
        if new:
            generated.append((name, password))

    path = Path(args.file)
    try:
        roles.write_config(path, users)
    except (FileExistsError, OSError) as exc:
        raise ConfigError(str(exc)) from exc

    print(f"wrote {path} (mode 0600) with roles: {', '.join(roles.fixed_roles())}")
    for name, password in generated:
        print(f"  {name}: {password}")
    if generated:
        print("store these passwords now; they are not shown again")
    print(
        "the collector needs EDUFLEET_MQTT_ADMIN_USERNAME / _PASSWORD (admin) and "
        "ingest EDUFLEET_MQTT_USERNAME / _PASSWORD; make the file owned by the "
        "mosquitto user"
    )
    return 0


def run_broker_revoke(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    if not settings.mqtt_admin_username or settings.mqtt_admin_password is None:
        raise ConfigError(
            "set EDUFLEET_MQTT_ADMIN_USERNAME and EDUFLEET_MQTT_ADMIN_PASSWORD to "
            "the broker's dynamic security admin"
        )
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT id FROM devices WHERE uid = %s", [args.device]
        ).fetchone()
        if row is None:
            raise NotFound(f"device {args.device!r} does not exist")
        dynsec = DynsecClient.from_url(
            settings.mqtt_url,
            settings.mqtt_admin_username,
            settings.mqtt_admin_password.get_secret_value(),
            tls_ca_file=settings.mqtt_ca_file,
        )
        with dynsec:
            revoked = revoke_device_identity(conn, dynsec, int(row[0]))
    if revoked:
        print(f"device {args.device!r}: broker identity revoked")
    else:
        print(f"device {args.device!r} had no broker identity")
    return 0
