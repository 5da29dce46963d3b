"""Helpers for tests that run the real agent against a real Mosquitto."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "agent" / "schemas"
AGENT = [sys.executable, "-m", "edufleet_agent.cli"]

SCHEMA_FOR_TOPIC = {
    "state": "state.json",
    "birth": "birth.json",
    "telemetry": "telemetry.json",
    "event": "event.json",
    "cmd-result": "command-result.json",
}


def new_device_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def validate(kind: str, payload: dict[str, Any]) -> None:
    """Check a payload against the checked-in JSON Schema of its kind."""
    schema = json.loads((SCHEMAS / SCHEMA_FOR_TOPIC[kind]).read_text())
    jsonschema.validate(payload, schema, format_checker=jsonschema.FormatChecker())


@dataclass(frozen=True)
class Received:
    topic: str
    payload: dict[str, Any]
    retain: bool
    at: float

    @property
    def kind(self) -> str:
        return self.topic.split("/")[3]


class Recorder:
    """A test subscriber that keeps every message it receives, in order."""

    def __init__(
        self,
        url: str,
        topic_filter: str,
        *,
        session: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.filter = topic_filter
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"rec-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.reconnect_delay_set(0.1, 0.5)
        if username is not None:
            self.client.username_pw_set(username, password)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300 if session else 0
        self.client.connect(
            parts.hostname or "127.0.0.1",
            parts.port or 1883,
            clean_start=session is None,
            properties=properties,
        )
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"could not subscribe to {topic_filter!r}")

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(self.filter, qos=1)

    def _on_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        payload = json.loads(message.payload) if message.payload else {}
        with self._lock:
            self.messages.append(
                Received(message.topic, payload, bool(message.retain), time.monotonic())
            )

    def of(self, kind: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.kind == kind]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.messages)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        with self._lock:
            shown = [
                (m.topic, m.payload.get("state") or m.payload.get("action"))
                for m in self.messages
            ]
        raise AssertionError(f"condition not met within {timeout} s; received {shown}")

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def states(messages: list[Received]) -> list[str]:
    return [m.payload["state"] for m in messages if m.kind == "state"]


class Peripheral:
    """A TCP service a test can switch off (refused) and on again, same port."""

    def __init__(self) -> None:
        self.port = 0
        self._listener: socket.socket | None = None
        self.on()

    def on(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop = threading.Event()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    def off(self) -> None:
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None


def write_config(
    folder: Path,
    *,
    device_id: str,
    mqtt_url: str,
    interval_s: float = 0.5,
    will_delay_s: int = 2,
    peripheral_port: int | None = None,
    ca_file: Path | None = None,
    extra: str = "",
) -> Path:
    targets = ""
    if peripheral_port is not None:
        targets = (
            f'targets = [{{ device_id = "{device_id}-proj", host = "127.0.0.1", '
            f"port = {peripheral_port} }}]\n"
        )
    text = f"""\
[agent]
device_id = "{device_id}"
state_dir = "{folder}"
credentials_file = "{folder}/agent.json"
interval_s = {interval_s}
log_level = "debug"

[mqtt]
url = "{mqtt_url}"
{f'ca_file = "{ca_file}"' if ca_file else ""}
will_delay_s = {will_delay_s}
keepalive_s = 5
backoff_initial_s = 0.2
backoff_cap_s = 1.0

[probes.reachability]
gateway = ""
collector = false
connect_timeout_s = 0.5
{targets}
{extra}
"""
    path = folder / "agent.toml"
    path.write_text(text)
    return path


class AgentProcess:
    """``edufleet-agent run`` as a child process."""

    def __init__(self, config: Path) -> None:
        self.log = config.parent / "agent.log"
        self._logfile = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*AGENT, "run", "--config", str(config)],
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._logfile.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")
