"""MQTT topic names of the edufleet protocol, version 1.

Every topic of a device sits under ``edufleet/v1/<device_id>/``::

    edufleet/v1/<device_id>/state              retained, QoS 1
    edufleet/v1/<device_id>/birth              retained, QoS 1
    edufleet/v1/<device_id>/telemetry          QoS 1
    edufleet/v1/<device_id>/event              QoS 1
    edufleet/v1/<device_id>/cmd/<name>         collector -> device, QoS 1
    edufleet/v1/<device_id>/cmd-result/<name>  device -> collector, QoS 1
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

from edufleet_protocol.errors import TopicError

ROOT: Final = "edufleet"
VERSION: Final = "v1"
PREFIX: Final = f"{ROOT}/{VERSION}"

# The same pattern as ``devices.uid`` in the registry.
DEVICE_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{2,63}$"
COMMAND_NAME_PATTERN: Final = r"^[a-z][a-z0-9-]{0,31}$"

Kind = Literal["state", "birth", "telemetry", "event", "cmd", "cmd-result"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
NAMED_KINDS: Final = frozenset({"cmd", "cmd-result"})

# Ingest consumers share the load through one MQTT 5 shared-subscription group.
INGEST_SHARE_GROUP: Final = "edufleet"

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_COMMAND_NAME = re.compile(COMMAND_NAME_PATTERN)


def is_device_id(value: str) -> bool:
    return _DEVICE_ID.fullmatch(value) is not None


def check_device_id(value: str) -> str:
    """Return ``value`` when it is a valid device id, else raise TopicError."""
    if not is_device_id(value):
        raise TopicError(
            f"device id {value!r} does not match {DEVICE_ID_PATTERN}: use 3-64 "
            "lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


def check_command_name(value: str) -> str:
    if _COMMAND_NAME.fullmatch(value) is None:
        raise TopicError(
            f"command name {value!r} does not match {COMMAND_NAME_PATTERN}: use "
            "up to 32 lowercase letters, digits or '-', starting with a letter"
        )
    return value


def device_prefix(device_id: str) -> str:
    """``edufleet/v1/<device_id>/``, with the trailing slash."""
    return f"{PREFIX}/{check_device_id(device_id)}/"


def topic(device_id: str, kind: Kind, name: str | None = None) -> str:
    """Build the topic of one message kind; ``name`` only for cmd and cmd-result."""
    if kind not in KINDS:
        raise TopicError(f"unknown topic kind {kind!r}; expected one of {KINDS}")
    if kind in NAMED_KINDS:
        if name is None:
            raise TopicError(f"topic kind {kind!r} needs a command name")
        return f"{device_prefix(device_id)}{kind}/{check_command_name(name)}"
    if name is not None:
        raise TopicError(f"topic kind {kind!r} takes no name, got {name!r}")
    return f"{device_prefix(device_id)}{kind}"


def state_topic(device_id: str) -> str:
    return topic(device_id, "state")


def birth_topic(device_id: str) -> str:
    return topic(device_id, "birth")


def telemetry_topic(device_id: str) -> str:
    return topic(device_id, "telemetry")


def event_topic(device_id: str) -> str:
    return topic(device_id, "event")


def command_topic(device_id: str, name: str) -> str:
    return topic(device_id, "cmd", name)


def command_result_topic(device_id: str, name: str) -> str:
    return topic(device_id, "cmd-result", name)


def command_filter(device_id: str) -> str:
    """The filter a device subscribes to for its own commands."""
    return f"{device_prefix(device_id)}cmd/+"


def parse_topic(value: str) -> tuple[str, Kind, str | None]:
    """Split a topic into ``(device_id, kind, name or None)``.

    Raises TopicError naming what is wrong when the topic is not one of ours.
    """
    parts = value.split("/")
    if len(parts) < 4 or parts[0] != ROOT or parts[1] != VERSION:
        raise TopicError(f"topic {value!r} is not under {PREFIX}/<device_id>/<kind>")
    device_id, kind = parts[2], parts[3]
    check_device_id(device_id)
    if kind not in KINDS:
        raise TopicError(
            f"topic {value!r} has unknown kind {kind!r}; expected one of {KINDS}"
        )
    if kind in NAMED_KINDS:
        if len(parts) != 5:
            raise TopicError(f"topic {value!r} must end in {kind}/<command name>")
        return device_id, kind, check_command_name(parts[4])
    if len(parts) != 4:
        raise TopicError(f"topic {value!r} has extra levels after {kind!r}")
    return device_id, kind, None


def ingest_filters(group: str = INGEST_SHARE_GROUP) -> list[str]:
    """Shared-subscription filters for the collector's ingest consumers.

    Note that MQTT 5 brokers do not deliver retained messages to a new shared
    subscription; a consumer that needs the current retained state subscribes
    to ``wildcard_filter(kind)`` without the share prefix once.
    """
    share = f"$share/{group}/"
    return [
        share + wildcard_filter("state"),
        share + wildcard_filter("birth"),
        share + wildcard_filter("telemetry"),
        share + wildcard_filter("event"),
        share + wildcard_filter("cmd-result"),
    ]


def wildcard_filter(kind: Kind) -> str:
    """A filter matching one message kind of every device."""
    if kind in NAMED_KINDS:
        return f"{PREFIX}/+/{kind}/+"
    return f"{PREFIX}/+/{kind}"
