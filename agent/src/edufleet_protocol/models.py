"""Payload models of the edufleet protocol, version 1.

Every payload is a JSON object with ``"v": 1``. Receivers ignore fields they do
not know, so a sender may add optional fields without a new version; a change
that would break a version-1 receiver gets a new ``v`` and a new topic root.

Numbers must be finite (no NaN or infinity), timestamps carry a time zone, and
strings and lists have upper bounds, so one bad message cannot exhaust the
collector. ``parse_payload`` is the single entry for bytes off the wire.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from edufleet_protocol.errors import PayloadError
from edufleet_protocol.topics import COMMAND_NAME_PATTERN, DEVICE_ID_PATTERN

PROTOCOL_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_SAMPLES: Final = 500
MAX_METRICS: Final = 512
MAX_EVIDENCE: Final = 64

SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{8,64}$"
# "host.cpu_pct", or with one label in brackets: "host.disk_pct[/home]".
METRIC_NAME_PATTERN: Final = (
    r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\[[^\[\]\u0000-\u001f]{1,200}\])?$"
)
FAULT_CODE_PATTERN: Final = r"^[A-Z][A-Z0-9_]{1,63}$"

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
CommandName = Annotated[str, StringConstraints(pattern=COMMAND_NAME_PATTERN)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN)]
FaultCode = Annotated[str, StringConstraints(pattern=FAULT_CODE_PATTERN)]
Seq = Annotated[int, Field(ge=1, le=2**63 - 1)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]

# A metric or evidence value: a finite number, a flag, or a short word.
Scalar: TypeAlias = (
    bool | int | float | Annotated[str, StringConstraints(max_length=200)]
)
Metrics = Annotated[dict[MetricName, Scalar], Field(max_length=MAX_METRICS)]
Evidence = Annotated[dict[MetricName, Scalar], Field(max_length=MAX_EVIDENCE)]


class Payload(BaseModel):
    """Base of every payload: a version, finite numbers, unknown fields ignored."""

    # defer_build: a model's validator is built on first use, so a small
    # agent does not pay memory for the payloads it never handles.
    model_config = ConfigDict(
        extra="ignore",
        allow_inf_nan=False,
        frozen=True,
        str_max_length=4000,
        defer_build=True,
    )

    v: Literal[1] = PROTOCOL_VERSION


class _Part(BaseModel):
    model_config = ConfigDict(
        extra="ignore", allow_inf_nan=False, frozen=True, defer_build=True
    )


# --- state -----------------------------------------------------------------

State = Literal["online", "sleeping", "lost"]


class StatePayload(Payload):
    """Retained on ``state``: online on connect, sleeping on a graceful stop,
    lost as the broker's delayed will."""

    state: State
    ts: AwareDatetime
    sid: SessionId


# --- birth -----------------------------------------------------------------


class Disk(_Part):
    device: ShortText
    mount: ShortText
    fstype: Annotated[str, StringConstraints(max_length=40)] = ""
    total_bytes: Count


class OsInfo(_Part):
    system: Annotated[str, StringConstraints(max_length=40)]  # Linux, Windows, Darwin
    release: ShortText = ""
    version: ShortText = ""
    distribution: ShortText = ""
    arch: Annotated[str, StringConstraints(max_length=40)] = ""


class Inventory(_Part):
    hostname: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    cpu_model: ShortText = ""
    cpu_cores: Annotated[int, Field(ge=0, le=4096)] = 0
    cpu_threads: Annotated[int, Field(ge=0, le=8192)] = 0
    ram_bytes: Count = 0
    disks: Annotated[list[Disk], Field(max_length=64)] = []
    macs: Annotated[
        list[
            Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")]
        ],
        Field(max_length=64),
    ] = []
    ips: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=64)
    ] = []
    serial: ShortText | None = None
    product_uuid: ShortText | None = None
    manufacturer: ShortText | None = None
    product_name: ShortText | None = None
    os: OsInfo


class ProbeInfo(_Part):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    interval_s: Annotated[float, Field(gt=0, le=86400)]
    timeout_s: Annotated[float, Field(gt=0, le=3600)]


class Peripheral(_Part):
    """A device attached to this one, such as a projector on a controller."""

    device_id: DeviceId
    kind: Annotated[str, StringConstraints(max_length=40)]
    address: ShortText = ""


class Birth(Payload):
    """Retained on ``birth``, sent on every connect and on ``cmd/rebirth``."""

    agent_version: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    sid: SessionId
    ts: AwareDatetime
    inventory: Inventory
    probes: Annotated[list[ProbeInfo], Field(max_length=64)] = []
    peripherals: Annotated[list[Peripheral], Field(max_length=64)] = []


# --- telemetry ---------------------------------------------------------------


class TelemetrySample(_Part):
    """One collection cycle. (device, sid, seq) is its idempotency key."""

    sid: SessionId
    seq: Seq
    ts: AwareDatetime
    metrics: Metrics


class Telemetry(Payload):
    """One or several samples, oldest first."""

    samples: Annotated[
        list[TelemetrySample], Field(min_length=1, max_length=MAX_SAMPLES)
    ]


# --- events ------------------------------------------------------------------

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: Final[tuple[Severity, ...]] = ("critical", "major", "minor", "warning")


class FaultEvent(Payload):
    """A fault opened or cleared on the device itself or on a peripheral."""

    kind: Literal["fault"] = "fault"
    action: Literal["opened", "cleared"]
    code: FaultCode
    severity: Severity
    message: Text
    evidence: Evidence = {}
    subject: DeviceId
    sid: SessionId
    seq: Seq
    ts: AwareDatetime


class InventoryDiff(_Part):
    path: ShortText  # "ram_bytes", "disks", "macs", ...
    before: Any = None
    after: Any = None


class InventoryChange(Payload):
    """The inventory differs from the one in the last birth."""

    kind: Literal["inventory"] = "inventory"
    changes: Annotated[list[InventoryDiff], Field(min_length=1, max_length=64)]
    inventory: Inventory
    sid: SessionId
    seq: Seq
    ts: AwareDatetime


Event = Annotated[FaultEvent | InventoryChange, Field(discriminator="kind")]


# --- commands ----------------------------------------------------------------


class Command(Payload):
    """Sent to ``cmd/<name>``; ``id`` comes back in the result."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    ts: AwareDatetime
    args: Annotated[dict[MetricName, Scalar], Field(max_length=32)] = {}


class CommandResult(Payload):
    """Published to ``cmd-result/<name>`` in answer to a command."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    name: CommandName
    status: Literal["ok", "error", "unknown_command", "bad_request"]
    message: Text = ""
    data: Annotated[dict[MetricName, Scalar], Field(max_length=MAX_METRICS)] = {}
    sid: SessionId
    ts: AwareDatetime


# --- enrollment (HTTPS, not MQTT) --------------------------------------------


class Fingerprint(_Part):
    """What identifies the hardware across re-installs."""

    serial: ShortText | None = None
    product_uuid: ShortText | None = None
    macs: Annotated[
        list[
            Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")]
        ],
        Field(max_length=64),
    ] = []


class EnrollRequest(Payload):
    """Body of ``POST /api/v1/enroll``."""

    token: Annotated[str, StringConstraints(min_length=8, max_length=200)]
    fingerprint: Fingerprint
    hostname: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    room: Annotated[str, StringConstraints(max_length=100)] | None = None
    asset_tag: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = (
        None
    )
    agent_version: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class EnrollResponse(Payload):
    """What enrollment returns; the agent keeps it in its credentials file."""

    device_id: DeviceId
    # Unbounded repetition plus max_length: a counted repetition of a
    # Unicode class would compile into a large automaton in pydantic-core.
    mqtt_url: Annotated[
        str, StringConstraints(pattern=r"^mqtts?://\S+$", max_length=300)
    ]
    username: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    ca_pem: Annotated[str, StringConstraints(max_length=20000)] | None = None
    topic_prefix: Annotated[str, StringConstraints(max_length=200)]
    school_code: Annotated[str, StringConstraints(max_length=32)]
    room: Annotated[str, StringConstraints(max_length=100)] | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_ends_with_slash(cls, value: str) -> str:
        if not value.endswith("/"):
            raise ValueError("topic_prefix must end with '/'")
        return value


# --- parsing -------------------------------------------------------------------

PayloadKind = Literal[
    "state",
    "birth",
    "telemetry",
    "event",
    "cmd",
    "cmd-result",
    "enroll-request",
    "enroll-response",
]

_TARGETS: Final[dict[str, Any]] = {
    "state": StatePayload,
    "birth": Birth,
    "telemetry": Telemetry,
    "event": Event,
    "cmd": Command,
    "cmd-result": CommandResult,
    "enroll-request": EnrollRequest,
    "enroll-response": EnrollResponse,
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(kind: str) -> TypeAdapter[Any] | None:
    """The validator of one payload kind, built on first use."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None and kind in _TARGETS:
        adapter = _ADAPTERS[kind] = TypeAdapter(_TARGETS[kind])
    return adapter


def _refuse_constant(name: str) -> Any:
    raise PayloadError(f"payload contains {name}; numbers must be finite", reason="nan")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(
            f"payload number {text} overflows to infinity; numbers must be finite",
            reason="nan",
        )
    return value


def _describe(exc: ValidationError, kind: str) -> str:
    shown = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "(payload)"
        shown.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(shown)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"invalid {kind} payload: " + "; ".join(shown) + tail


def parse_payload(
    kind: PayloadKind | str, raw: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES
) -> Any:
    """Check size, JSON syntax and model of ``raw``; return the model instance.

    Raises PayloadError whose ``reason`` is too_large, bad_json, nan or invalid.
    ``kind`` is a topic kind (state, birth, telemetry, event, cmd, cmd-result)
    or enroll-request / enroll-response.
    """
    adapter = _adapter(kind)
    if adapter is None:
        raise PayloadError(
            f"unknown payload kind {kind!r}; expected one of {sorted(_TARGETS)}",
            reason="invalid",
        )
    if len(raw) > max_bytes:
        raise PayloadError(
            f"{kind} payload of {len(raw):,} bytes exceeds the {max_bytes:,}-byte "
            "limit; send fewer samples per message",
            reason="too_large",
        )

    try:
        document = json.loads(
            raw, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except PayloadError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(
            f"{kind} payload is not UTF-8 JSON: {exc}", reason="bad_json"
        ) from exc
    except RecursionError as exc:
        raise PayloadError(
            f"{kind} payload nests too deeply", reason="bad_json"
        ) from exc
    if not isinstance(document, dict):
        raise PayloadError(
            f"{kind} payload must be a JSON object, got {type(document).__name__}",
            reason="invalid",
        )

    try:
        return adapter.validate_python(document)
    except ValidationError as exc:
        raise PayloadError(_describe(exc, kind), reason="invalid") from exc


def dump_payload(model: BaseModel) -> bytes:
    """Serialise a payload to compact JSON bytes, as sent on the wire."""
    return model.model_dump_json(exclude_none=True).encode()
