"""Virtual devices: synthetic readings, injected faults, and their messages.

Each device produces what a real agent would publish, encoded by the wire
contract's own models (``edufleet_protocol``) and the agent's telemetry
framing: a birth when it comes online, one telemetry sample per interval,
fault events that open and later clear (some of them flapping), and its
state. Readings follow the school day: PCs work harder during lessons,
projector lamps age while they are on.
"""

from __future__ import annotations

import math
import random
import secrets
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from edufleet_agent.queue import telemetry_message
from edufleet_protocol import topics
from edufleet_protocol.models import (
    Birth,
    Disk,
    FaultEvent,
    Inventory,
    OsInfo,
    Peripheral,
    ProbeInfo,
    StatePayload,
    TelemetrySample,
    dump_payload,
)

AGENT_VERSION = "sim-0.1"
LOCAL_OFFSET = timedelta(hours=8)  # Asia/Shanghai, no daylight saving
GIB = 1024**3

Kind = Literal["pc", "controller", "projector"]


@dataclass(frozen=True)
class FaultKind:
    code: str
    severity: Literal["critical", "major", "minor", "warning"]
    message: str
    metric: str
    opened_value: float = 1
    cleared_value: float = 0


PC_FAULTS = (
    FaultKind("DISK_FULL", "major", "disk / is 97% full", "host.disk_pct[/]", 97, 88),
    FaultKind(
        "PROCESS_NOT_RUNNING",
        "minor",
        "process seewo is not running",
        "process.count[seewo]",
        0,
        1,
    ),
)
CONTROLLER_FAULTS = (
    FaultKind(
        "PERIPHERAL_UNREACHABLE",
        "major",
        "peripheral {subject} did not answer 3 checks in a row",
        "peripheral.up",
        0,
        1,
    ),
    FaultKind(
        "PROJECTOR_FAULT",
        "major",
        "projector {subject} reports a lamp error",
        "pjlink.error",
    ),
)


@dataclass
class OpenFault:
    kind: FaultKind
    subject: str
    clears_at: float
    flaps_left: int


@dataclass
class VirtualDevice:
    """One simulated agent: a classroom PC or a multimedia controller.

    A controller reports for the projector registered below it (its
    ``peripheral``), as the real agent on a controller does.
    """

    device_id: str
    kind: Kind = "pc"
    peripheral: str | None = None
    serial: str | None = None
    seed: int = 0
    sid: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    lamp_hours: float = 0.0
    disk_pct: float = 40.0
    faults: dict[str, OpenFault] = field(default_factory=dict)
    opened: int = 0
    cleared: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed or zlib.crc32(self.device_id.encode()))
        self._rng = rng
        self.lamp_hours = rng.uniform(200, 4500)
        self.disk_pct = rng.uniform(25, 80)
        self._ram = rng.choice([4, 8, 8, 16]) * GIB
        self._cores = rng.choice([2, 4, 4, 6])
        self._load_bias = rng.uniform(0.7, 1.3)

    # --- messages ------------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def state(self, state: Literal["online", "sleeping"], now: datetime) -> bytes:
        return dump_payload(StatePayload(state=state, ts=now, sid=self.sid))

    def birth(self, now: datetime) -> bytes:
        number = int(self.device_id.encode().hex()[-12:], 16) & 0xFFFFFFFFFFFF
        mac = ":".join(f"{(number >> s) & 0xFF:02x}" for s in range(40, -8, -8))
        mac = "00" + mac[2:]
        inventory = Inventory(
            hostname=self.device_id,
            cpu_model="Intel(R) Core(TM) i5-7500 CPU @ 3.40GHz",
            cpu_cores=self._cores,
            cpu_threads=self._cores,
            ram_bytes=self._ram,
            disks=[Disk(device="/dev/sda1", mount="/", total_bytes=256 * GIB)],
            macs=[mac],
            serial=self.serial or f"SIM{number:012d}",
            os=OsInfo(system="Linux", release="6.1.0", distribution="UOS 20"),
        )
        peripherals = (
            [Peripheral(device_id=self.peripheral, kind="projector", address="pjlink")]
            if self.peripheral
            else []
        )
        return dump_payload(
            Birth(
                agent_version=AGENT_VERSION,
                sid=self.sid,
                ts=now,
                inventory=inventory,
                probes=[ProbeInfo(name="host", interval_s=60, timeout_s=10)],
                peripherals=peripherals,
            )
        )

    def telemetry(self, now: datetime) -> bytes:
        sample = TelemetrySample(
            sid=self.sid, seq=self._next_seq(), ts=now, metrics=self.readings(now)
        )
        return telemetry_message([dump_payload(sample)])

    def fault_event(
        self,
        fault: OpenFault,
        action: Literal["opened", "cleared"],
        now: datetime,
    ) -> bytes:
        kind = fault.kind
        value = kind.opened_value if action == "opened" else kind.cleared_value
        return dump_payload(
            FaultEvent(
                action=action,
                code=kind.code,
                severity=kind.severity,
                message=kind.message.format(subject=fault.subject),
                evidence={kind.metric: value},
                subject=fault.subject,
                sid=self.sid,
                seq=self._next_seq(),
                ts=now,
            )
        )

    # --- readings ------------------------------------------------------------------

    def readings(self, now: datetime) -> dict[str, float | int | bool | str]:
        busy = lesson_load(now)
        rng = self._rng
        cpu = min(100.0, max(0.5, (5 + 55 * busy) * self._load_bias + rng.gauss(0, 4)))
        self.disk_pct = min(99.0, self.disk_pct + rng.uniform(0, 0.002))
        if "DISK_FULL" in self.faults:
            self.disk_pct = max(self.disk_pct, 96.5)
        elif self.disk_pct > 94:
            self.disk_pct = 60.0  # the school cleaned the disk up
        metrics: dict[str, float | int | bool | str] = {
            "host.cpu_pct": round(cpu, 1),
            "host.load1": round(cpu / 100 * self._cores, 2),
            "host.mem_pct": round(min(98.0, 35 + 40 * busy + rng.gauss(0, 3)), 1),
            "host.swap_pct": round(max(0.0, 10 * busy + rng.gauss(0, 2)), 1),
            "host.disk_pct[/]": round(self.disk_pct, 1),
            "host.temp_c[cpu]": round(38 + 30 * cpu / 100 + rng.gauss(0, 1.5), 1),
            "host.uptime_s": int(3600 + (now.timestamp() % 36000)),
            "agent.rss_bytes": 28_000_000 + rng.randrange(2_000_000),
            "agent.cpu_pct": round(abs(rng.gauss(0.2, 0.1)), 2),
        }
        if self.kind == "controller" and self.peripheral:
            who = self.peripheral
            on = busy > 0.2
            if on:
                self.lamp_hours += 1 / 60
            metrics[f"pjlink.power[{who}]"] = "on" if on else "standby"
            metrics[f"pjlink.lamp_hours[{who}]"] = int(self.lamp_hours)
            metrics[f"pjlink.lamp_life_pct[{who}]"] = round(self.lamp_hours / 60, 1)
            metrics[f"peripheral.up[{who}]"] = (
                0 if "PERIPHERAL_UNREACHABLE" in self.faults else 1
            )
        return metrics

    # --- faults --------------------------------------------------------------------

    def step_faults(
        self, clock: float, now: datetime, open_probability: float
    ) -> list[bytes]:
        """Open, clear or flap faults; return the events to publish."""
        events = []
        rng = self._rng
        for code, fault in list(self.faults.items()):
            if clock < fault.clears_at:
                continue
            events.append(self.fault_event(fault, "cleared", now))
            self.cleared += 1
            if fault.flaps_left > 0:
                # A flapping fault comes straight back a few times.
                fault.flaps_left -= 1
                fault.clears_at = clock + rng.uniform(30, 120)
                events.append(self.fault_event(fault, "opened", now))
                self.opened += 1
            else:
                del self.faults[code]

        if rng.random() < open_probability:
            kinds = CONTROLLER_FAULTS if self.kind == "controller" else PC_FAULTS
            kind = rng.choice(kinds)
            if kind.code not in self.faults:
                subject = self.peripheral if kind in CONTROLLER_FAULTS else None
                fault = OpenFault(
                    kind=kind,
                    subject=subject or self.device_id,
                    clears_at=clock + rng.expovariate(1 / 600),
                    flaps_left=rng.choice([0, 0, 0, 0, 2, 3]),
                )
                self.faults[kind.code] = fault
                events.append(self.fault_event(fault, "opened", now))
                self.opened += 1
        return events

    def topics(self) -> dict[str, str]:
        return {
            "state": topics.state_topic(self.device_id),
            "birth": topics.birth_topic(self.device_id),
            "telemetry": topics.telemetry_topic(self.device_id),
            "event": topics.event_topic(self.device_id),
        }


def lesson_load(now: datetime) -> float:
    """How busy a classroom is, 0..1, by local time of day and weekday."""
    local = now.astimezone(UTC) + LOCAL_OFFSET
    if local.weekday() >= 5:
        return 0.05
    hour = local.hour + local.minute / 60
    morning = math.exp(-(((hour - 10.0) / 1.6) ** 2))
    afternoon = math.exp(-(((hour - 15.5) / 1.4) ** 2))
    return max(0.02, min(1.0, morning + 0.9 * afternoon))
