"""Per-device broker identities: create or refresh one, and revoke one.

A device's MQTT username is its device id. It holds two roles: the shared
``device`` role (checked first, it denies control and system topics) and its
own ``device:<device_id>`` role with the topics it may use.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from ..errors import NotFound
from .dynsec import Acl, DynsecClient
from .roles import DEVICE_ROLE, device_acls, device_role, new_password

log = logging.getLogger("edufleet.collector.broker")

# Role priorities on a device client: the shared denies are consulted first.
_SHARED_PRIORITY = 10
_OWN_PRIORITY = 0


def provision_device(
    dynsec: DynsecClient,
    device_id: str,
    *,
    peripherals: Iterable[str] = (),
    password: str | None = None,
) -> str:
    """Create or refresh the device's identity with a fresh password; return it."""
    password = password or new_password()
    sync_device_role(dynsec, device_id, peripherals=peripherals)

    client = dynsec.get_client(device_id)
    if client is None:
        dynsec.create_client(
            device_id,
            password,
            textname="edufleet device",
            roles={
                DEVICE_ROLE: _SHARED_PRIORITY,
                device_role(device_id): _OWN_PRIORITY,
            },
        )
        log.info("created broker identity %r", device_id)
        return password

    dynsec.set_client_password(device_id, password)
    held = {role.get("rolename") for role in client.get("roles", [])}
    if DEVICE_ROLE not in held:
        dynsec.add_client_role(device_id, DEVICE_ROLE, priority=_SHARED_PRIORITY)
    if device_role(device_id) not in held:
        dynsec.add_client_role(
            device_id, device_role(device_id), priority=_OWN_PRIORITY
        )
    if client.get("disabled"):
        dynsec.enable_client(device_id)
    log.info("refreshed broker identity %r with a new password", device_id)
    return password


def sync_device_role(
    dynsec: DynsecClient, device_id: str, *, peripherals: Iterable[str] = ()
) -> None:
    """Make the device's own role hold exactly the ACLs it should."""
    rolename = device_role(device_id)
    wanted = device_acls(device_id, peripherals)
    role = dynsec.get_role(rolename)
    if role is None:
        dynsec.create_role(rolename, wanted)
        return

    present = {
        (acl["acltype"], acl["topic"]): acl for acl in role.get("acls", []) if acl
    }
    wanted_keys = {(acl.acltype, acl.topic): acl for acl in wanted}
    for key in present.keys() - wanted_keys.keys():
        dynsec.remove_role_acl(rolename, *key)
    for key, acl in wanted_keys.items():
        current = present.get(key)
        if current is None:
            dynsec.add_role_acl(rolename, acl)
        elif bool(current.get("allow")) != acl.allow:
            dynsec.remove_role_acl(rolename, *key)
            dynsec.add_role_acl(rolename, Acl(acl.acltype, acl.topic, acl.allow))


def revoke_device(dynsec: DynsecClient, device_id: str) -> bool:
    """Delete the device's client and role; False if it had none."""
    existed = True
    try:
        dynsec.delete_client(device_id)
    except NotFound:
        existed = False
    with contextlib.suppress(NotFound):
        dynsec.delete_role(device_role(device_id))
    if existed:
        log.info("revoked broker identity %r", device_id)
    return existed
