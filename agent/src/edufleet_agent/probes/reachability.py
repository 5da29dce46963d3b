"""The reachability probe: TCP connect time to the gateway, the collector and
the listed peripherals.

For the gateway and the collector a refused connection still proves the host
answered, so it counts as up; only a timeout or an unreachable network counts
as down. A peripheral is checked on the port of the service it offers (4352
for a PJLink projector), so there a refused connection counts as down.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edufleet_agent.probes.base import (
    Metrics,
    ProbeContext,
    ProbeOptions,
    ProbeSpec,
    label,
)
from edufleet_protocol.topics import DEVICE_ID_PATTERN

log = logging.getLogger("edufleet.agent.probes.reachability")

Host = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
    host: Host
    port: Port
    kind: Annotated[str, StringConstraints(max_length=40)] = "peripheral"


class ReachabilityOptions(ProbeOptions):
    # "auto" reads the default route (Linux); "" skips the gateway.
    gateway: Annotated[str, StringConstraints(max_length=253)] = "auto"
    gateway_port: Port = 53
    collector: bool = True
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    targets: list[Target] = Field(default_factory=list, max_length=64)

    def peripherals(self) -> list[tuple[str, str, str]]:
        return [(t.device_id, t.kind, f"{t.host}:{t.port}") for t in self.targets]


def tcp_check(
    host: str, port: int, timeout: float, *, refused_is_up: bool = True
) -> float | None:
    """Milliseconds until the host answered, None if it did not.

    With ``refused_is_up`` a refused connection counts as an answer.
    """
    started = time.perf_counter()
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        refused = (
            isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED
        )
        if not (refused and refused_is_up):
            log.debug("%s:%d did not answer: %s", host, port, exc)
            return None
    return round((time.perf_counter() - started) * 1000.0, 2)


def parse_default_gateway(route_table: str) -> str | None:
    """The default gateway from the text of Linux's /proc/net/route."""
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[1] != "00000000":
            continue
        flags = int(fields[3], 16)
        if not flags & 0x2:  # RTF_GATEWAY
            continue
        packed = struct.pack("<L", int(fields[2], 16))
        return socket.inet_ntoa(packed)
    return None


def default_gateway(sys_root: Path) -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return parse_default_gateway((sys_root / "proc/net/route").read_text())
    except OSError:
        return None


class ReachabilityProbe:
    def __init__(self, options: ReachabilityOptions, context: ProbeContext) -> None:
        self.options = options
        self.context = context

    def collect(self) -> Metrics:
        metrics: Metrics = {}
        timeout = self.options.connect_timeout_s
        for name, host, port in self._infrastructure():
            latency = tcp_check(host, port, timeout)
            metrics[f"net.up[{name}]"] = latency is not None
            if latency is not None:
                metrics[f"net.latency_ms[{name}]"] = latency
        for target in self.options.targets:
            latency = tcp_check(target.host, target.port, timeout, refused_is_up=False)
            metrics[f"peripheral.up[{label(target.device_id)}]"] = latency is not None
            if latency is not None:
                metrics[f"peripheral.latency_ms[{label(target.device_id)}]"] = latency
        return metrics

    def _infrastructure(self) -> list[tuple[str, str, int]]:
        checks = []
        gateway = self.options.gateway
        if gateway == "auto":
            gateway = default_gateway(self.context.sys_root) or ""
        if gateway:
            checks.append(("gateway", gateway, self.options.gateway_port))
        if self.options.collector and self.context.collector_host:
            checks.append(
                (
                    "collector",
                    self.context.collector_host,
                    self.context.collector_port or 1883,
                )
            )
        return checks


SPEC = ProbeSpec(
    name="reachability",
    default_enabled=True,
    options=ReachabilityOptions,
    factory=ReachabilityProbe,
    summary="TCP reachability and latency of gateway, collector and peripherals",
)
