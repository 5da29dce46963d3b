"""Drive a fleet of virtual devices over a few MQTT connections, in one thread.

Thousands of devices cannot each have a thread or a socket in one process,
so devices are grouped: each group shares one MQTT session, run by the
agent's own ``Publisher``. The first device of a group owns the session: its
state, birth and will are exactly a real agent's (graceful stop publishes
``sleeping``; a crash leaves ``lost`` after the will delay). The other
devices of the group ride on it: their births, states, telemetry and events
go through the same publisher, but the broker knows no will for them, and
commands sent to them are not received.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edufleet_agent.publisher import Publisher, PublisherSettings
from edufleet_agent.queue import EVENT, TELEMETRY, MemoryOutbox

from .fleet import VirtualDevice

log = logging.getLogger("edufleet.collector.simulator")

_MAX_ROUNDS = 200


@dataclass(frozen=True)
class SimulationConfig:
    mqtt_url: str
    interval_s: float = 60.0
    fault_rate: float = 0.02
    """Faults opened per device per hour."""
    duration_s: float | None = None
    """Stop after this many seconds; None runs until stopped."""
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    devices_per_connection: int = 500
    seed: int = 1


@dataclass
class SimulationReport:
    devices: int
    connections: int
    interval_s: float
    elapsed_s: float = 0.0
    telemetry: int = 0
    events: int = 0
    states: int = 0
    births: int = 0
    sent: int = 0
    acked: int = 0
    refused: int = 0
    unrouted: int = 0
    """Held back because the broker had no subscriber (ingest not running)."""
    dropped: int = 0
    faults_opened: int = 0
    faults_cleared: int = 0
    connected: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def target_per_s(self) -> float:
        return self.devices / self.interval_s

    def summary(self) -> str:
        rate = self.telemetry / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"{self.devices} devices on {self.connections} connections for "
            f"{self.elapsed_s:.0f} s: {self.telemetry} telemetry ({rate:.1f}/s, "
            f"target {self.target_per_s:.1f}/s), {self.events} events "
            f"({self.faults_opened} opened, {self.faults_cleared} cleared), "
            f"{self.births} births, {self.states} states; broker acknowledged "
            f"{self.acked} of {self.sent} sent, refused {self.refused}, "
            f"held for want of a subscriber {self.unrouted}, "
            f"dropped before sending {self.dropped}"
        )


@dataclass
class _Group:
    publisher: Publisher
    outbox: MemoryOutbox
    devices: list[VirtualDevice]


def _now() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """Run virtual devices until the duration ends or ``stop`` is set."""

    def __init__(self, devices: list[VirtualDevice], config: SimulationConfig):
        if not devices:
            raise ValueError("a simulation needs at least one device")
        if config.interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {config.interval_s}")
        self.devices = devices
        self.config = config
        self.rng = random.Random(config.seed)
        size = max(1, config.devices_per_connection)
        self.groups = [
            self._group(devices[start : start + size])
            for start in range(0, len(devices), size)
        ]
        self.report = SimulationReport(
            devices=len(devices),
            connections=len(self.groups),
            interval_s=config.interval_s,
        )
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._final: SimulationReport | None = None
        self._unborn: set[int] = set()

    def _group(self, members: list[VirtualDevice]) -> _Group:
        owner = members[0]
        outbox = MemoryOutbox(maxlen=max(10_000, 20 * len(members)))
        publisher = Publisher(
            owner.device_id,
            url=self.config.mqtt_url,
            outbox=outbox,
            sid=owner.sid,
            birth=lambda: owner.birth(_now()),
            username=self.config.username,
            password=self.config.password,
            ca_file=self.config.ca_file,
            settings=PublisherSettings(inflight=100, drain_s=10.0),
            client_id=f"edufleet-sim-{owner.device_id}",
        )
        return _Group(publisher=publisher, outbox=outbox, devices=members)

    def stop(self) -> None:
        self.stop_event.set()

    def start(self) -> None:
        """Run in a background thread; ``join()`` stops it and returns the report."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._thread = threading.Thread(
            target=self._run_in_thread, name="simulator", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float = 60.0) -> SimulationReport:
        """Stop a simulator started with ``start()`` and wait for its last words."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        return self._final or self.report

    def _run_in_thread(self) -> None:
        self._final = self.run()

    def run(
        self, *, on_tick: Callable[[SimulationReport], None] | None = None
    ) -> SimulationReport:
        """Simulate until the configured duration passes or ``stop()`` is called."""
        report = self.report
        start = time.monotonic()
        deadline = (
            None if self.config.duration_s is None else start + self.config.duration_s
        )
        # The first device of each connection is born when it connects; the
        # others when their first report is due, as agents booting at
        # different moments would be.
        self._unborn = {id(d) for group in self.groups for d in group.devices[1:]}
        report.states += len(self.groups)
        report.births += len(self.groups)

        # Spread the first reports over one interval, as agents booting at
        # different moments would.
        schedule = [
            (start + self.rng.uniform(0, self.config.interval_s), gi, di)
            for gi, group in enumerate(self.groups)
            for di in range(len(group.devices))
        ]
        heapq.heapify(schedule)
        open_probability = self.config.fault_rate * self.config.interval_s / 3600
        last_tick = start
        log.info(
            "simulating %d devices over %d connections to %s",
            report.devices,
            report.connections,
            self.config.mqtt_url,
        )

        while not self.stop_event.is_set():
            clock = time.monotonic()
            if deadline is not None and clock >= deadline:
                break
            now = _now()
            while schedule and schedule[0][0] <= clock:
                due, gi, di = heapq.heappop(schedule)
                self._report_once(
                    self.groups[gi],
                    self.groups[gi].devices[di],
                    clock,
                    now,
                    open_probability,
                )
                heapq.heappush(schedule, (due + self.config.interval_s, gi, di))
            for group in self.groups:
                self._drive(group)
            if on_tick is not None and clock - last_tick >= 1.0:
                last_tick = clock
                on_tick(self._collect(start))
            wait = (schedule[0][0] - time.monotonic()) if schedule else 0.05
            self.stop_event.wait(min(0.02, max(0.0, wait)))

        self._shutdown()
        return self._collect(start)

    @staticmethod
    def _drive(group: _Group) -> None:
        """Network rounds for one connection while it has messages in hand.

        One round reads at most one packet (one PUBACK), so a connection
        carrying hundreds of devices needs several rounds per loop.
        """
        publisher = group.publisher
        publisher.step(0)
        for _ in range(_MAX_ROUNDS):
            if not publisher.connected or len(group.outbox) == 0:
                return
            publisher.step(0)

    def _report_once(
        self,
        group: _Group,
        device: VirtualDevice,
        clock: float,
        now: datetime,
        open_probability: float,
    ) -> None:
        topics = device.topics()
        if id(device) in self._unborn:
            self._unborn.discard(id(device))
            group.outbox.put(topics["state"], device.state("online", now), retain=True)
            group.outbox.put(topics["birth"], device.birth(now), retain=True)
            self.report.states += 1
            self.report.births += 1
        group.outbox.put(topics["telemetry"], device.telemetry(now), priority=TELEMETRY)
        self.report.telemetry += 1
        for event in device.step_faults(clock, now, open_probability):
            group.outbox.put(topics["event"], event, priority=EVENT)
            self.report.events += 1

    def _shutdown(self) -> None:
        """Say ``sleeping`` for every device, drain, and disconnect cleanly."""
        now = _now()
        for group in self.groups:
            for device in group.devices[1:]:
                if id(device) in self._unborn:
                    continue
                group.outbox.put(
                    device.topics()["state"], device.state("sleeping", now), retain=True
                )
                self.report.states += 1
        for group in self.groups:
            group.publisher.shutdown(graceful=True)
        self.report.states += len(self.groups)

    def _collect(self, start: float) -> SimulationReport:
        report = self.report
        report.elapsed_s = time.monotonic() - start
        report.sent = sum(g.publisher.stats.sent for g in self.groups)
        report.acked = sum(g.publisher.stats.acked for g in self.groups)
        report.refused = sum(g.publisher.stats.refused for g in self.groups)
        report.unrouted = sum(g.publisher.stats.unrouted for g in self.groups)
        report.dropped = sum(g.outbox.dropped for g in self.groups)
        report.connected = sum(g.publisher.connected for g in self.groups)
        report.faults_opened = sum(d.opened for d in self.devices)
        report.faults_cleared = sum(d.cleared for d in self.devices)
        return report
