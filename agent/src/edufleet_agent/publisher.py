"""The MQTT session of one device: state, birth, queued messages, commands.

``Publisher`` is used by the agent daemon and by the fleet simulator.

Construction::

    publisher = Publisher(
        "pc-101",
        url="mqtts://broker.example:8883",   # mqtt:// for plain TCP
        username="pc-101", password="...",   # from enrollment; None: anonymous
        ca_file=Path("/var/lib/edufleet/ca.pem"),  # pinned CA for mqtts://
        outbox=queue,                        # a Queue or a MemoryOutbox
        sid="18c2f0a1b2c3d4e5",              # the session id of this run
        birth=lambda: birth_payload_bytes,   # called on every connect
        on_command=handle,                   # (name, Command | None, error | None)
        settings=PublisherSettings(will_delay_s=60),
    )

Two ways to run it:

* ``start()`` runs the session on its own thread; ``stop()`` ends it.
* ``step(timeout)`` does one round on the caller's thread: connect when the
  backoff allows, network I/O (``timeout`` bounds the wait for the socket),
  and hand queued messages to the broker. A simulator drives many publishers
  by calling ``step(0)`` on each in turn; ``shutdown()`` then ends one.

What it does on the wire:

* connects with MQTT 5, ``clean_start=False`` and a session expiry, so
  commands sent while the device was away are delivered when it returns;
* registers a retained will ``state = lost`` with a will delay, so a short
  network blip publishes nothing;
* on every CONNACK publishes ``state = online`` and the birth (both retained,
  QoS 1), and subscribes to its own ``cmd/+``;
* sends queued messages with QoS 1, at most ``settings.inflight`` at a time;
  a message is acknowledged to the outbox (and so leaves the queue) only when
  its PUBACK arrived;
* treats a PUBACK saying "no matching subscribers" as not delivered: nobody
  consumes the topic yet (after a broker restart the collector's shared
  subscription returns only when ingest reconnects), so it holds the outbox
  for a backed-off moment and then sends again, in order, what is still
  unacknowledged;
* reconnects through one ``Backoff`` (exponential, full jitter, capped);
* on a graceful stop publishes ``state = sleeping``, drains the outbox for a
  moment, and sends a normal DISCONNECT, which cancels the will.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edufleet_agent.backoff import Backoff
from edufleet_agent.queue import Outbox, Outgoing
from edufleet_protocol import topics
from edufleet_protocol.errors import ProtocolError
from edufleet_protocol.models import (
    Command,
    State,
    StatePayload,
    dump_payload,
    parse_payload,
)

log = logging.getLogger("edufleet.agent.mqtt")

NO_MATCHING_SUBSCRIBERS = 0x10
"""PUBACK reason code: accepted, but no subscription matched (MQTT 5, 3.4.2.1)."""

CommandHandler = Callable[[str, Command | None, ProtocolError | None], None]


@dataclass(frozen=True)
class PublisherSettings:
    keepalive_s: int = 60
    will_delay_s: int = 60
    session_expiry_s: int = 86400
    inflight: int = 20
    backoff_initial_s: float = 1.0
    backoff_cap_s: float = 300.0
    connack_timeout_s: float = 15.0
    drain_s: float = 3.0


@dataclass
class PublisherStats:
    connects: int = 0
    disconnects: int = 0
    sent: int = 0
    acked: int = 0
    refused: int = 0
    unrouted: int = 0
    commands: int = 0


def broker_address(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of an ``mqtt://`` or ``mqtts://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"broker URL {url!r} must look like mqtt://host:1883 or mqtts://host:8883"
        )
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


class Publisher:
    """The MQTT 5 session of one device. See the module docstring."""

    def __init__(
        self,
        device_id: str,
        *,
        url: str,
        outbox: Outbox,
        sid: str,
        birth: Callable[[], bytes],
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        on_command: CommandHandler | None = None,
        settings: PublisherSettings | None = None,
        client_id: str | None = None,
    ) -> None:
        self.device_id = topics.check_device_id(device_id)
        self.host, self.port, self.tls = broker_address(url)
        self.outbox = outbox
        self.sid = sid
        self.birth = birth
        self.on_command = on_command
        self.settings = settings or PublisherSettings()
        self.stats = PublisherStats()
        self.backoff = Backoff(
            initial_s=self.settings.backoff_initial_s, cap_s=self.settings.backoff_cap_s
        )

        self._state_topic = topics.state_topic(device_id)
        self._inflight: dict[int, Outgoing] = {}
        self._lock = threading.Lock()
        self._connected = False
        self._socket_open = False
        self._connect_started = 0.0
        self._next_attempt = 0.0
        self._stopping = threading.Event()
        self._closing = False
        self._graceful = True
        self._thread: threading.Thread | None = None
        self._rebirth = threading.Event()
        # Set when the broker answered "no matching subscribers": nothing will
        # be taken from the outbox until ``_hold_until`` passes.
        self._unrouted = False
        self._hold_until = 0.0
        # Capped at 30 s: after a broker restart a whole province retries
        # spread over that window instead of together.
        self.unrouted_backoff = Backoff(initial_s=0.5, cap_s=30.0)

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edufleet-{device_id}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(self.settings.inflight)
        if username is not None:
            self.client.username_pw_set(username, password)
        if self.tls:
            self.client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # --- public API ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def start(self) -> None:
        """Run the session on a thread of its own until ``stop()``."""
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-{self.device_id}", daemon=True
        )
        self._thread.start()

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """End the session started by ``start()``; graceful publishes sleeping."""
        self._graceful = graceful
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.shutdown(graceful=graceful)

    def rebirth(self) -> None:
        """Publish the birth again at the next step."""
        self._rebirth.set()

    def step(self, timeout: float = 0.0) -> None:
        """One round: connect when due, network I/O, send queued messages."""
        now = time.monotonic()
        if not self._socket_open:
            if now >= self._next_attempt:
                self._connect()
            else:
                time.sleep(min(timeout, self._next_attempt - now))
            return

        rc = self.client.loop(timeout=timeout)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self._socket_open:
            self._lost(f"network error ({mqtt.error_string(rc)})")
            return
        if (
            not self._connected
            and now - self._connect_started > self.settings.connack_timeout_s
        ):
            self.client.disconnect()
            self._lost(f"no CONNACK within {self.settings.connack_timeout_s:g} s")
            return
        if self._connected:
            if self._rebirth.is_set():
                self._rebirth.clear()
                self._publish_birth()
            self._pump()

    def shutdown(self, *, graceful: bool = True) -> None:
        """End the session from the caller's thread (the ``step()`` way).

        Graceful: drain the outbox for up to ``settings.drain_s``, publish
        ``sleeping`` and disconnect normally. Otherwise disconnect with reason
        "with will message", so the broker publishes ``lost`` after the delay.
        """
        self._closing = True
        if self._connected and graceful:
            deadline = time.monotonic() + self.settings.drain_s
            while self._connected and time.monotonic() < deadline:
                taken = self._pump()
                if taken == 0 and self.inflight == 0:
                    break
                self.client.loop(timeout=0.1)
            sleeping = self._say("sleeping")
            while self._connected and not sleeping.is_published():
                if time.monotonic() > deadline + 2.0:
                    log.warning("device %r: no PUBACK for sleeping", self.device_id)
                    break
                self.client.loop(timeout=0.1)
            self._disconnect("Normal disconnection")
        elif self._connected:
            self._disconnect("Disconnect with will message")
        self._connected = False
        self._socket_open = False

    # --- internals -------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.step(timeout=0.5)
        self.shutdown(graceful=self._graceful)

    def _state_payload(self, state: State) -> bytes:
        return dump_payload(
            StatePayload(state=state, ts=datetime.now(UTC), sid=self.sid)
        )

    def _connect(self) -> None:
        will_properties = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will_properties.WillDelayInterval = self.settings.will_delay_s
        self.client.will_set(
            self._state_topic,
            self._state_payload("lost"),
            qos=1,
            retain=True,
            properties=will_properties,
        )
        connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_properties.SessionExpiryInterval = self.settings.session_expiry_s
        try:
            self.client.connect(
                self.host,
                self.port,
                keepalive=self.settings.keepalive_s,
                clean_start=False,
                properties=connect_properties,
            )
        except (OSError, ValueError) as exc:
            self._schedule_retry(f"cannot reach {self.host}:{self.port}: {exc}")
            return
        self._socket_open = True
        self._connect_started = time.monotonic()

    def _schedule_retry(self, why: str) -> None:
        delay = self.backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        log.warning(
            "device %r: %s; retrying in %.1f s (attempt %d)",
            self.device_id,
            why,
            delay,
            self.backoff.failures,
        )

    def _lost(self, why: str) -> None:
        self._connected = False
        self._socket_open = False
        self._schedule_retry(why)

    def _disconnect(self, reason: str) -> None:
        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, reason))
        deadline = time.monotonic() + 1.0
        while self._socket_open and time.monotonic() < deadline:
            self.client.loop(timeout=0.1)

    def _say(self, state: State) -> mqtt.MQTTMessageInfo:
        return self.client.publish(
            self._state_topic, self._state_payload(state), qos=1, retain=True
        )

    def _publish_birth(self) -> None:
        self.client.publish(
            topics.birth_topic(self.device_id), self.birth(), qos=1, retain=True
        )

    def _pump(self) -> int:
        with self._lock:
            room = self.settings.inflight - len(self._inflight)
            if self._unrouted:
                if self._inflight or time.monotonic() < self._hold_until:
                    return 0
                # Offer again, in order, everything not acknowledged yet.
                self._unrouted = False
                self.outbox.rewind()
        if room <= 0:
            return 0
        items = self.outbox.take(room)
        for item in items:
            info = self.client.publish(
                item.topic, item.payload, qos=item.qos, retain=item.retain
            )
            with self._lock:
                self._inflight[info.mid] = item
            self.stats.sent += 1
        return len(items)

    # --- paho callbacks (run inside client.loop) ----------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "device %r: broker refused the connection: %s",
                self.device_id,
                reason_code,
            )
            return
        self._connected = True
        self.stats.connects += 1
        self.backoff.reset()
        log.info(
            "device %r connected to %s:%d (session present: %s)",
            self.device_id,
            self.host,
            self.port,
            flags.session_present,
        )
        self._say("online")
        self._publish_birth()
        client.subscribe(topics.command_filter(self.device_id), qos=1)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        self.stats.disconnects += 1
        if self._closing:
            self._socket_open = False
            return
        if self._socket_open:
            self._lost(
                f"disconnected ({reason_code})"
                if was_connected
                else f"refused ({reason_code})"
            )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            item = self._inflight.pop(mid, None)
        if item is None:
            return
        if reason_code.value == NO_MATCHING_SUBSCRIBERS and not item.retain:
            # Nobody consumes the topic yet (the collector's subscription is
            # not back after a broker restart, say). The message would be
            # lost, so it stays in the outbox and is sent again later.
            self.stats.unrouted += 1
            with self._lock:
                if not self._unrouted:
                    self._unrouted = True
                    first = self.unrouted_backoff.failures == 0
                    delay = self.unrouted_backoff.next_delay()
                    self._hold_until = time.monotonic() + delay
                    # Once per outage at WARNING; the retries after it at DEBUG.
                    log.log(
                        logging.WARNING if first else logging.DEBUG,
                        "device %r: no subscriber for %r yet; holding the queue "
                        "and sending again in %.1f s",
                        self.device_id,
                        item.topic,
                        delay,
                    )
            return
        if not reason_code.is_failure:
            self.unrouted_backoff.reset()
        if reason_code.is_failure:
            self.stats.refused += 1
            log.warning(
                "device %r: broker refused a message on %r (%s); dropped it",
                self.device_id,
                item.topic,
                reason_code,
            )
        else:
            self.stats.acked += 1
        self.outbox.ack(item)

    def _on_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        self.stats.commands += 1
        try:
            device_id, kind, name = topics.parse_topic(message.topic)
            if device_id != self.device_id or kind != "cmd" or name is None:
                raise ProtocolError(
                    f"not a command for {self.device_id!r}: {message.topic!r}"
                )
        except ProtocolError as exc:
            log.warning("ignored a message on %r: %s", message.topic, exc)
            return
        try:
            command = parse_payload("cmd", bytes(message.payload))
        except ProtocolError as exc:
            log.warning("refused command %r: %s", name, exc)
            if self.on_command:
                self.on_command(name, None, exc)
            return
        if self.on_command:
            self.on_command(name, command, None)
