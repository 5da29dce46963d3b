"""The agent daemon: schedule probes, apply rules, queue, publish, obey commands.

One main thread schedules the probes by their intervals and runs the due ones
together (each in a worker thread, see ``probes.runner``). Each cycle becomes
one telemetry sample; the rules turn it into fault events; both are stored in
the queue in one transaction, with the rules' state. The publisher runs on
its own thread and drains the queue to the broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue as threadqueue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import ValidationError

import edufleet_agent
from edufleet_agent.config import Config
from edufleet_agent.errors import CredentialsError
from edufleet_agent.inventory import collect_inventory, inventory_changes
from edufleet_agent.probes import AnySpec, Metrics, ProbeContext
from edufleet_agent.probes.runner import Outcome, ProbeRunner
from edufleet_agent.publisher import Publisher, PublisherSettings, broker_address
from edufleet_agent.queue import EVENT, TELEMETRY, Priority, Queue
from edufleet_agent.rules import RuleEngine, Transition, build_rules
from edufleet_protocol import topics
from edufleet_protocol.errors import ProtocolError
from edufleet_protocol.models import (
    Birth,
    Command,
    CommandResult,
    EnrollResponse,
    FaultEvent,
    Inventory,
    InventoryChange,
    InventoryDiff,
    Peripheral,
    ProbeInfo,
    TelemetrySample,
    dump_payload,
)

log = logging.getLogger("edufleet.agent")

COMMANDS = ("rebirth", "collect-now", "identify")


def new_session_id() -> str:
    """A session id: the start time in hex and random bits, 16 characters."""
    return f"{int(time.time()):08x}{secrets.token_hex(4)}"


def load_credentials(path: Path) -> EnrollResponse | None:
    """The enrollment result, or None when the agent was never enrolled."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc}") from exc
    try:
        return EnrollResponse.model_validate_json(text)
    except ValidationError as exc:
        raise CredentialsError(
            f"credentials file {path} is not a valid enrollment result "
            f"({exc.error_count()} problems); enroll again with: "
            "edufleet-agent enroll --url URL --token TOKEN"
        ) from exc


@dataclass(frozen=True)
class Connection:
    """Where and as whom the agent connects."""

    device_id: str
    url: str
    username: str | None
    password: str | None
    ca_file: Path | None


def resolve_connection(
    config: Config, credentials: EnrollResponse | None
) -> Connection:
    """Combine the config and the enrollment result; the config wins."""
    device_id = config.agent.device_id or (
        credentials.device_id if credentials else None
    )
    url = config.mqtt.url or (credentials.mqtt_url if credentials else None)
    if not device_id or not url:
        raise CredentialsError(
            f"no device identity: {config.agent.credentials_file} does not exist. "
            "Enroll first (edufleet-agent enroll --url URL --token TOKEN), or set "
            "agent.device_id and mqtt.url in the config"
        )
    username = config.mqtt.username
    password = config.mqtt.password
    if username is None and credentials is not None:
        username, password = credentials.username, credentials.password
    ca_file = config.mqtt.ca_file
    if ca_file is None and credentials is not None and credentials.ca_pem:
        ca_file = config.agent.state_dir / "ca.pem"
        if not ca_file.exists() or ca_file.read_text() != credentials.ca_pem:
            ca_file.parent.mkdir(parents=True, exist_ok=True)
            ca_file.write_text(credentials.ca_pem)
    return Connection(
        topics.check_device_id(device_id), url, username, password, ca_file
    )


class SelfMonitor:
    """The agent's own footprint: resident memory and CPU since the last read."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(interval=None)

    def read(self) -> Metrics:
        return {
            "agent.rss_bytes": int(self._process.memory_info().rss),
            "agent.cpu_pct": round(self._process.cpu_percent(interval=None), 2),
            "agent.threads": self._process.num_threads(),
        }


def cycle_metrics(outcomes: list[Outcome]) -> Metrics:
    """Merge probe outcomes into one sample, with each probe's success and time."""
    metrics: Metrics = {}
    for outcome in outcomes:
        metrics.update(outcome.metrics)
        metrics[f"probe.ok[{outcome.name}]"] = outcome.ok
        metrics[f"probe.duration_ms[{outcome.name}]"] = round(
            outcome.duration_s * 1000.0, 1
        )
    return metrics


class Agent:
    """One running agent. ``run()`` blocks until ``request_stop()``."""

    def __init__(
        self,
        config: Config,
        specs: Mapping[str, AnySpec],
        connection: Connection,
        *,
        inventory_reader: Callable[[], Inventory] | None = None,
    ) -> None:
        self.config = config
        self.connection = connection
        self.device_id = connection.device_id
        self.sid = new_session_id()
        self._stop = threading.Event()
        self._commands: threadqueue.Queue[
            tuple[str, Command | None, ProtocolError | None]
        ] = threadqueue.Queue()
        self._read_inventory = inventory_reader or (
            lambda: collect_inventory(config.agent.sys_root)
        )

        host, port, _ = broker_address(connection.url)
        context = ProbeContext(
            device_id=self.device_id,
            collector_host=host,
            collector_port=port,
            sys_root=config.agent.sys_root,
        )
        self.probe_info: list[ProbeInfo] = []
        self.peripherals: list[Peripheral] = []
        entries = []
        for spec, options in config.enabled_probes(specs):
            entries.append(
                (spec.name, spec.create(options, context), options.timeout_s)
            )
            self.probe_info.append(
                ProbeInfo(
                    name=spec.name,
                    interval_s=config.interval_of(options),
                    timeout_s=options.timeout_s,
                )
            )
            for device_id, kind, address in options.peripherals():
                self.peripherals.append(
                    Peripheral(
                        device_id=device_id, kind=kind[:40], address=address[:200]
                    )
                )
        self.runner = ProbeRunner(entries)
        self.intervals = {info.name: info.interval_s for info in self.probe_info}

        quota = int(config.agent.queue_quota_mb * 1024 * 1024)
        self.queue = Queue(
            config.agent.state_dir / "queue.sqlite3",
            quota_bytes=quota,
            sid=self.sid,
            batch=config.mqtt.telemetry_batch,
        )
        self.queue.forget_old_sessions()
        self.rules = RuleEngine(
            build_rules(config.rules), self.device_id, self.queue.fault_states()
        )
        self.monitor = SelfMonitor()
        self.inventory = self._read_inventory()
        self._birth = self._make_birth()
        self._check_inventory_since_last_run()

        mqtt = config.mqtt
        self.publisher = Publisher(
            self.device_id,
            url=connection.url,
            outbox=self.queue,
            sid=self.sid,
            birth=lambda: self._birth,
            username=connection.username,
            password=connection.password,
            ca_file=connection.ca_file,
            on_command=self._on_command,
            settings=PublisherSettings(
                keepalive_s=mqtt.keepalive_s,
                will_delay_s=mqtt.will_delay_s,
                session_expiry_s=mqtt.session_expiry_s,
                inflight=mqtt.inflight,
                backoff_initial_s=mqtt.backoff_initial_s,
                backoff_cap_s=mqtt.backoff_cap_s,
            ),
        )

    # --- lifecycle -------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: object) -> None:
            log.info("received signal %d; stopping", signum)
            self.request_stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        if sys.platform == "win32" and hasattr(signal, "SIGBREAK"):
            signal.signal(signal.SIGBREAK, handle)

    def run(self) -> None:
        log.info(
            "agent %s starting as %r (session %s) with probes %s",
            edufleet_agent.__version__,
            self.device_id,
            self.sid,
            ", ".join(self.intervals) or "none",
        )
        self.publisher.start()
        due = dict.fromkeys(self.intervals, time.monotonic())
        next_inventory = time.monotonic() + self.config.agent.inventory_interval_s
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                ready = [name for name, at in due.items() if at <= now]
                if ready:
                    self.collect(ready)
                    for name in ready:
                        due[name] = max(due[name] + self.intervals[name], now)
                if now >= next_inventory:
                    self.recheck_inventory()
                    next_inventory = now + self.config.agent.inventory_interval_s
                wait = min([*due.values(), next_inventory]) - time.monotonic()
                self._wait_for_command(max(0.0, wait))
        finally:
            self.publisher.stop(graceful=True)
            self.queue.close()
            log.info("agent stopped")

    def _wait_for_command(self, timeout: float) -> None:
        """Carry out commands as they arrive, for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    name, command, error = self._commands.get_nowait()
                else:
                    name, command, error = self._commands.get(
                        timeout=min(remaining, 0.5)
                    )
            except threadqueue.Empty:
                if remaining <= 0:
                    return
                continue
            self.handle_command(name, command, error)

    # --- collection ------------------------------------------------------------

    def collect(self, names: list[str] | None = None) -> int:
        """Run probes, apply rules, queue the sample and events; return its seq."""
        outcomes = self.runner.run(names)
        metrics = cycle_metrics(outcomes)
        metrics.update(self.monitor.read())
        metrics["agent.queue_bytes"] = self.queue.used_bytes
        now = time.monotonic()
        transitions, changed = self.rules.evaluate(metrics, now)
        ts = datetime.now(UTC)

        def sample(seq: int) -> bytes:
            model = TelemetrySample(sid=self.sid, seq=seq, ts=ts, metrics=metrics)
            return model.model_dump_json().encode()

        items: list[tuple[Priority, str, Callable[[int], bytes]]] = [
            (TELEMETRY, topics.telemetry_topic(self.device_id), sample)
        ]
        for transition in transitions:
            items.append(
                (EVENT, topics.event_topic(self.device_id), self._fault(transition, ts))
            )
        seqs = self.queue.put(items, faults=dict(changed))
        return seqs[0]

    def _fault(self, transition: Transition, ts: datetime) -> Callable[[int], bytes]:
        def make(seq: int) -> bytes:
            return dump_payload(
                FaultEvent(
                    action=transition.action,
                    code=transition.rule.code,
                    severity=transition.rule.severity,
                    message=transition.message,
                    evidence=transition.evidence,
                    subject=transition.subject,
                    sid=self.sid,
                    seq=seq,
                    ts=ts,
                )
            )

        return make

    # --- inventory and birth -----------------------------------------------------

    def _make_birth(self) -> bytes:
        return dump_payload(
            Birth(
                agent_version=edufleet_agent.__version__,
                sid=self.sid,
                ts=datetime.now(UTC),
                inventory=self.inventory,
                probes=self.probe_info,
                peripherals=self.peripherals,
            )
        )

    def _check_inventory_since_last_run(self) -> None:
        previous = self.queue.get_meta("inventory")
        current = self.inventory.model_dump_json()
        if previous is not None and previous != current:
            with contextlib.suppress(ValidationError):
                self._queue_inventory_change(Inventory.model_validate_json(previous))
        self.queue.set_meta("inventory", current)

    def recheck_inventory(self) -> bool:
        """Read the inventory again; on a change queue an event and re-birth."""
        fresh = self._read_inventory()
        before = self.inventory
        self.inventory = fresh
        self._birth = self._make_birth()
        changed = self._queue_inventory_change(before)
        if changed:
            self.publisher.rebirth()
        self.queue.set_meta("inventory", fresh.model_dump_json())
        return changed

    def _queue_inventory_change(self, before: Inventory) -> bool:
        changes = inventory_changes(before, self.inventory)
        if not changes:
            return False
        ts = datetime.now(UTC)
        diffs = [
            InventoryDiff(path=path, before=old, after=new)
            for path, old, new in changes
        ]
        log.info("inventory changed: %s", ", ".join(path for path, _, _ in changes))

        def make(seq: int) -> bytes:
            return dump_payload(
                InventoryChange(
                    changes=diffs,
                    inventory=self.inventory,
                    sid=self.sid,
                    seq=seq,
                    ts=ts,
                )
            )

        self.queue.put([(EVENT, topics.event_topic(self.device_id), make)])
        return True

    # --- commands ------------------------------------------------------------------

    def _on_command(
        self, name: str, command: Command | None, error: ProtocolError | None
    ) -> None:
        self._commands.put((name, command, error))

    def handle_command(
        self, name: str, command: Command | None, error: ProtocolError | None
    ) -> CommandResult:
        """Carry out a command and queue its result on ``cmd-result/<name>``."""
        data: dict[str, Any] = {}
        if command is None:
            status, message, request_id = "bad_request", str(error)[:2000], "invalid"
        else:
            request_id = command.id
            status, message = "ok", ""
            if name == "rebirth":
                self.recheck_inventory()
                self.publisher.rebirth()
                message = "birth published again"
            elif name == "collect-now":
                data["sample_seq"] = self.collect()
                message = "collected every probe"
            elif name == "identify":
                data.update(identify(self.device_id, self.inventory))
                message = "identified; see the agent log on the device"
            else:
                status = "unknown_command"
                message = (
                    f"unknown command {name!r}; this agent knows {', '.join(COMMANDS)}"
                )
        result = CommandResult(
            id=request_id,
            name=name,
            status=status,
            message=message,
            data=data,
            sid=self.sid,
            ts=datetime.now(UTC),
        )
        payload = dump_payload(result)
        self.queue.put(
            [
                (
                    EVENT,
                    topics.command_result_topic(self.device_id, name),
                    lambda _: payload,
                )
            ]
        )
        return result


def identify(device_id: str, inventory: Inventory) -> dict[str, Any]:
    """Make the device noticeable to a technician standing next to it."""
    log.warning(
        "IDENTIFY: this is device %r (host %s, serial %s, addresses %s)",
        device_id,
        inventory.hostname,
        inventory.serial or "unknown",
        ", ".join(inventory.ips) or "none",
    )
    beeped = False
    if sys.platform == "win32":
        try:
            import winsound  # noqa: PLC0415 - exists on Windows only

            for _ in range(3):
                winsound.Beep(880, 300)
            beeped = True
        except (ImportError, RuntimeError):
            beeped = False
    else:
        for console in ("/dev/console", "/dev/tty0"):
            try:
                with open(console, "w") as tty:
                    tty.write("\a\a\a")
                beeped = True
                break
            except OSError:
                continue
    return {"hostname": inventory.hostname, "beeped": beeped}


def check(
    config: Config, specs: Mapping[str, AnySpec], device_id: str = "check"
) -> dict[str, Any]:
    """One collection cycle with no broker: the inventory and every reading."""
    host = port = None
    if config.mqtt.url:
        host, port, _ = broker_address(config.mqtt.url)
    context = ProbeContext(
        device_id=device_id,
        collector_host=host,
        collector_port=port,
        sys_root=config.agent.sys_root,
    )
    entries = [
        (spec.name, spec.create(options, context), options.timeout_s)
        for spec, options in config.enabled_probes(specs)
    ]
    outcomes = ProbeRunner(entries).run()
    inventory = collect_inventory(config.agent.sys_root)
    return {
        "agent_version": edufleet_agent.__version__,
        "inventory": json.loads(inventory.model_dump_json(exclude_none=True)),
        "probes": {
            o.name: {
                "ok": o.ok,
                "duration_ms": round(o.duration_s * 1000.0, 1),
                "error": o.error,
                "metrics": o.metrics,
            }
            for o in outcomes
        },
    }
