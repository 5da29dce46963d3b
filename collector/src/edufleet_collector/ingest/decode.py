"""Turn raw MQTT messages into what a batch writes: validation at the edge.

Nothing here touches the database, and nothing raises for bad input: every
refused message becomes a :class:`Rejection` that is stored like any other
row. The checks, in order: the topic; the device (registered, and in service
or under repair); size, JSON, the protocol's model, NaN and infinity; then
each telemetry sample's timestamp.

Clocks: a sample stamped more than ``max_clock_ahead`` seconds after its
arrival, or older than ``max_sample_age``, is refused (reason
``clock_ahead`` or ``too_old``) rather than stored under the arrival time,
because the timestamp is part of the sample's idempotency key; storing it
under a different time would let a redelivery make a second row. The device
is flagged ``clock_suspect`` with the measured skew; state and birth
messages, which are sent live, measure the skew of every device.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import to_json

from edufleet_protocol.errors import ProtocolError
from edufleet_protocol.models import (
    Birth,
    FaultEvent,
    InventoryChange,
    StatePayload,
    Telemetry,
    parse_payload,
)
from edufleet_protocol.topics import parse_topic

from .devices import Device

SAMPLE_BYTES = 2048
"""How much of a refused payload is kept in ``rejected_messages``."""


class Received(NamedTuple):
    """One message as the MQTT thread hands it over."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    at: float
    """Wall-clock time of arrival, seconds since the epoch."""


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int
    max_clock_ahead: float
    max_sample_age: float
    clock_suspect: float


@dataclass(slots=True)
class Rejection:
    at: float
    topic: str
    device_uid: str | None
    device_id: int | None
    reason: str
    detail: str
    payload: bytes

    @property
    def sample(self) -> bytes:
        return self.payload[:SAMPLE_BYTES]


@dataclass(slots=True)
class StateChange:
    state: str
    at: float
    sid: str


@dataclass(slots=True)
class BirthRecord:
    device: Device
    birth: Birth | InventoryChange
    at: float


@dataclass(slots=True)
class FaultRecord:
    device: Device
    subject: Device
    event: FaultEvent
    at: float
    message: Received


@dataclass
class Batch:
    """Everything one batch of messages asks the database to record."""

    copy_lines: list[str] = field(default_factory=list)
    sample_times: list[float] = field(default_factory=list)
    seen: dict[int, float] = field(default_factory=dict)
    states: dict[int, StateChange] = field(default_factory=dict)
    intervals: dict[int, int | None] = field(default_factory=dict)
    births: list[BirthRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    clocks: dict[int, tuple[float, bool]] = field(default_factory=dict)
    """device id -> (apparent skew in seconds, whether the clock is wrong)"""
    rejections: list[Rejection] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)


def uid_of(topic: str) -> str | None:
    """The device uid a topic names, without validating anything else."""
    parts = topic.split("/", 3)
    return parts[2] if len(parts) > 3 else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _copy_escape(text: str) -> str:
    # Serialised JSON has no raw control characters, only backslash escapes,
    # which COPY's text format would interpret.
    return text.replace("\\", "\\\\")


class Decoder:
    """Validates messages against the protocol, the registry and the clock."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def decode(self, messages: list[Received], devices: dict[str, Device]) -> Batch:
        batch = Batch()
        for message in messages:
            self._decode_one(message, devices, batch)
        return batch

    def _reject(
        self,
        batch: Batch,
        message: Received,
        *,
        reason: str,
        detail: str,
        uid: str | None = None,
        device: Device | None = None,
    ) -> None:
        batch.rejections.append(
            Rejection(
                message.at,
                message.topic,
                uid,
                device.id if device else None,
                reason,
                detail,
                message.payload,
            )
        )

    def _decode_one(
        self, message: Received, devices: dict[str, Device], batch: Batch
    ) -> None:
        try:
            uid, kind, _name = parse_topic(message.topic)
        except ProtocolError as exc:
            self._reject(
                batch,
                message,
                reason=exc.reason,
                detail=str(exc),
                uid=uid_of(message.topic),
            )
            return
        batch.kinds[kind] += 1

        device = devices.get(uid)
        if device is None:
            self._reject(
                batch,
                message,
                reason="unknown_device",
                detail=f"device {uid!r} is not in the registry; enroll it or fix "
                "the agent's device id",
                uid=uid,
            )
            return
        if not device.may_report:
            self._reject(
                batch,
                message,
                reason="device_not_in_service",
                detail=f"device {uid!r} has status {device.status!r}; only "
                "in_service and under_repair devices may report; set its status "
                "back to in_service if it is in use again",
                uid=uid,
                device=device,
            )
            return

        try:
            payload = self._parse(kind, message.payload)
        except ProtocolError as exc:
            self._reject(
                batch,
                message,
                reason=exc.reason,
                detail=str(exc),
                uid=uid,
                device=device,
            )
            return

        batch.seen[device.id] = max(batch.seen.get(device.id, 0.0), message.at)
        if isinstance(payload, Telemetry):
            self._telemetry(batch, message, uid, device, payload)
        elif isinstance(payload, StatePayload):
            self._clock(batch, message, uid, device, payload.ts)
            previous = batch.states.get(device.id)
            if previous is None or previous.at <= message.at:
                batch.states[device.id] = StateChange(
                    payload.state, message.at, payload.sid
                )
        elif isinstance(payload, Birth):
            self._clock(batch, message, uid, device, payload.ts)
            batch.births.append(BirthRecord(device, payload, message.at))
            intervals = [probe.interval_s for probe in payload.probes]
            batch.intervals[device.id] = (
                max(1, round(min(intervals))) if intervals else None
            )
        elif isinstance(payload, InventoryChange):
            batch.births.append(BirthRecord(device, payload, message.at))
        elif isinstance(payload, FaultEvent):
            self._fault(batch, message, uid, device, event=payload, devices=devices)

    def _parse(self, kind: str, raw: bytes) -> Any:
        """The protocol's model of ``raw``, or ProtocolError with its reason code.

        Telemetry, nearly all of the traffic, first goes straight through the
        model's JSON validator, which refuses exactly what ``parse_payload``
        refuses but several times faster; only a refusal takes the slower
        path, which names the reason.
        """
        limit = self.limits.max_payload_bytes
        if kind == "telemetry" and len(raw) <= limit:
            try:
                return Telemetry.model_validate_json(raw)
            except ValidationError:
                pass  # parse_payload below names the reason for the refusal
        return parse_payload(kind, raw, max_bytes=limit)

    def _clock(
        self,
        batch: Batch,
        message: Received,
        uid: str,
        device: Device,
        ts: datetime,
    ) -> None:
        """Record how far a live message's clock is from ours.

        A message cannot arrive before it was sent, so a timestamp ahead of
        arrival proves a wrong clock. One behind may only have waited in the
        broker's queue; it proves a wrong clock only when it is older than
        any queue holds (the sample age limit).
        """
        skew = ts.timestamp() - message.at
        limits = self.limits
        suspect = skew > limits.clock_suspect or skew < -limits.max_sample_age
        batch.clocks[device.id] = (skew, suspect)

    def _telemetry(
        self,
        batch: Batch,
        message: Received,
        uid: str,
        device: Device,
        payload: Telemetry,
    ) -> None:
        limits = self.limits
        received = _iso(message.at)
        device_id = str(device.id)
        refused: list[str] = []
        for sample in payload.samples:
            ts = sample.ts.timestamp()
            if ts > message.at + limits.max_clock_ahead:
                refused.append(
                    f"sample seq {sample.seq} at {sample.ts.isoformat()} is "
                    f"{ts - message.at:,.0f} s ahead of the collector's clock "
                    f"(limit {limits.max_clock_ahead:,.0f} s); fix the device's "
                    "clock (NTP)"
                )
                batch.clocks[device.id] = (ts - message.at, True)
                continue
            if ts < message.at - limits.max_sample_age:
                refused.append(
                    f"sample seq {sample.seq} at {sample.ts.isoformat()} is older "
                    f"than the {limits.max_sample_age / 86400:,.0f}-day limit; "
                    "fix the device's clock, or drop the agent's stale queue"
                )
                batch.clocks[device.id] = (ts - message.at, True)
                continue
            batch.copy_lines.append(
                f"{sample.ts.isoformat()}\t{device_id}\t{sample.sid}\t{sample.seq}\t"
                f"{_copy_escape(to_json(sample.metrics).decode())}\t{received}\n"
            )
            batch.sample_times.append(ts)
        if refused:
            reason = "clock_ahead" if "ahead" in refused[0] else "too_old"
            shown = "; ".join(refused[:3])
            more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
            self._reject(
                batch,
                message,
                reason=reason,
                detail=f"{len(refused)} of {len(payload.samples)} samples refused: "
                f"{shown}{more}",
                uid=uid,
                device=device,
            )

    def _fault(
        self,
        batch: Batch,
        message: Received,
        uid: str,
        device: Device,
        *,
        event: FaultEvent,
        devices: dict[str, Device],
    ) -> None:
        subject = device if event.subject == uid else devices.get(event.subject)
        if subject is None:
            self._reject(
                batch,
                message,
                reason="unknown_subject",
                detail=f"fault {event.code} names subject {event.subject!r}, which "
                "is not in the registry; register the peripheral or report on the "
                "device",
                uid=uid,
                device=device,
            )
            return
        batch.faults.append(FaultRecord(device, subject, event, message.at, message))

    def subject_uids(self, messages: list[Received]) -> set[str]:
        """Uids named inside fault payloads, so the cache can resolve them too."""
        found = set()
        for message in messages:
            if message.topic.endswith("/event") and b'"subject"' in message.payload:
                try:
                    document = json.loads(message.payload)
                except ValueError:
                    continue
                subject = (
                    document.get("subject") if isinstance(document, dict) else None
                )
                if isinstance(subject, str):
                    found.add(subject)
        return found
