"""Who may do what on the broker: the roles of edufleet and their ACLs.

Roles created once, by :func:`write_config` (``edufleet broker init``):

``collector-admin``
    administers the dynamic security plugin; held by the web app, which
    creates device identities at enrollment.
``ingest``
    reads every device's messages through the shared subscription and
    publishes commands to any device.
``simulator``
    publishes for any device; for load tests and the demo, never in production.
``device``
    held by every device: denies, at a higher priority than anything else, the
    broker's control and system topics.

And one role per device, ``device:<device_id>``, made by :func:`device_acls`:
publish under ``edufleet/v1/<device_id>/`` (and under the prefix of every
peripheral registered below it, for a multimedia controller), subscribe to its
own ``cmd/`` only. Mosquitto 2.0's dynamic security plugin has no ``%u``
substitution in ACL topics, so this cannot be one shared role.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edufleet_protocol import topics

from .dynsec import Acl

ADMIN_ROLE = "collector-admin"
INGEST_ROLE = "ingest"
SIMULATOR_ROLE = "simulator"
DEVICE_ROLE = "device"
DEVICE_ROLE_PREFIX = "device:"

# The plugin's own default; a higher count slows every reconnect of 300,000
# devices after a broker restart.
PASSWORD_ITERATIONS = 101

ALL_DEVICES = f"{topics.PREFIX}/#"
SHARED_INGEST = f"$share/{topics.INGEST_SHARE_GROUP}/{ALL_DEVICES}"
ALL_COMMANDS = f"{topics.PREFIX}/+/cmd/#"


def device_role(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + topics.check_device_id(device_id)


def device_acls(device_id: str, peripherals: Iterable[str] = ()) -> list[Acl]:
    """The rules of one device's own role."""
    own = topics.device_prefix(device_id)
    acls = [
        Acl("publishClientSend", own + "#"),
        Acl("subscribePattern", own + "cmd/#"),
        Acl("publishClientReceive", own + "cmd/#"),
    ]
    for peripheral in sorted(set(peripherals) - {device_id}):
        acls.append(Acl("publishClientSend", topics.device_prefix(peripheral) + "#"))
    return acls


def fixed_roles() -> dict[str, list[Acl]]:
    """The roles that ``broker init`` creates, by name."""
    control = "$CONTROL/dynamic-security/#"
    return {
        ADMIN_ROLE: [
            Acl("publishClientSend", control),
            Acl("publishClientReceive", control),
            Acl("subscribePattern", control),
            Acl("subscribePattern", "$SYS/#"),
            Acl("publishClientReceive", "$SYS/#"),
        ],
        INGEST_ROLE: [
            Acl("subscribePattern", SHARED_INGEST),
            Acl("subscribePattern", ALL_DEVICES),
            Acl("publishClientReceive", ALL_DEVICES),
            Acl("publishClientSend", ALL_COMMANDS),
        ],
        SIMULATOR_ROLE: [
            Acl("publishClientSend", ALL_DEVICES),
            Acl("subscribePattern", ALL_COMMANDS),
            Acl("publishClientReceive", ALL_COMMANDS),
        ],
        DEVICE_ROLE: [
            Acl("publishClientSend", "$CONTROL/#", allow=False, priority=10),
            Acl("subscribePattern", "$CONTROL/#", allow=False, priority=10),
            Acl("subscribePattern", "$SYS/#", allow=False, priority=10),
        ],
    }


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's stored form of a password: PBKDF2-SHA512 over a random salt."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWORD_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PASSWORD_ITERATIONS,
    }


def new_password() -> str:
    return secrets.token_urlsafe(24)


def build_config(users: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The plugin's JSON: the fixed roles, and ``{username: (password, role)}``."""
    roles = fixed_roles()
    for username, (_, role) in users.items():
        if role not in roles:
            raise ValueError(f"user {username!r} has unknown role {role!r}")
    return {
        "clients": [
            {
                "username": username,
                "textName": f"edufleet {role}",
                **hash_password(password),
                "roles": [{"rolename": role}],
            }
            for username, (password, role) in users.items()
        ],
        "roles": [
            {"rolename": name, "acls": [acl.as_json() for acl in acls]}
            for name, acls in roles.items()
        ],
        # Anything no role allows is refused, except receiving what a client
        # was allowed to subscribe to, and unsubscribing.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def write_config(path: Path, users: dict[str, tuple[str, str]]) -> None:
    """Write the plugin's file with mode 0600; refuse to replace an existing one."""
    if path.exists():
        raise FileExistsError(
            f"{path} already exists; the broker's identities live in it. Move it "
            "away first if you really mean to start over"
        )
    text = json.dumps(build_config(users), indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
