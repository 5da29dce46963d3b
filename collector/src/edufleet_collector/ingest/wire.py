"""paho's MQTT client with a receive path sized for ingest's message rate.

At province scale one ingest process reads thousands of PUBLISH packets a
second. Stock paho (2.2) spends most of its time per packet on three things:
a system call for every few bytes (the fixed header is read one byte at a
time), an MQTT 5 ``Properties`` object built and cleared for every message
even when it carries none, and the ``MQTTMessage`` and callback dispatch
around it. :class:`IngestClient` keeps paho for everything else (connecting,
TLS, keepalive, subscriptions, reconnecting) and changes only that path:

- reads from the socket in large chunks and serves paho's small reads from
  them (:meth:`IngestClient.buffered` tells the loop not to wait in
  ``select`` while a chunk still holds packets);
- with manual acknowledgement, hands a QoS 1 PUBLISH without properties,
  the form every agent sends, straight to ``on_fast_message(mid, topic,
  payload)``; anything else (QoS 0 or 2, properties, a malformed packet)
  goes through paho's own handler and ``on_message`` as before;
- reads all buffered packets per turn (:meth:`IngestClient.read_buffered`);
  paho's ``loop_read`` reads one whatever it is asked for;
- acknowledges a batch of QoS 1 messages in one write
  (:meth:`IngestClient.ack_many`); paho writes each PUBACK with a system
  call of its own.

The overrides rely on paho's private ``_sock_recv``, ``_handle_publish``,
``_in_packet``, ``_packet_read`` and ``_packet_queue``. They are used only with the paho
releases in :data:`PAHO_VERSIONS`, which the ingest tests run every message
through; with any other release the client logs a warning and behaves as
stock paho, slower but the same.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

log = logging.getLogger("edufleet.collector.ingest")

PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")
"""A PUBACK with reason success and no properties: the 4-byte form."""
CHUNK = 256 * 1024
"""Bytes asked of the socket per read."""

PAHO_VERSIONS = frozenset({"2.2.0"})
"""paho releases whose private receive path the overrides were checked against."""
FastMessage = Callable[[int, str, bytes], None]
_warned = False


def _ignore(mid: int, topic: str, payload: bytes) -> None:
    raise RuntimeError("IngestClient.on_fast_message is not set")


class IngestClient(mqtt.Client):
    """An MQTT 5 client for consuming QoS 1 streams; see the module's notes."""

    def __init__(self, *args: Any, fast: bool | None = None, **kwargs: Any) -> None:
        """Takes paho's arguments; ``fast=False`` keeps paho's own receive path."""
        super().__init__(*args, **kwargs)
        if fast is None:
            fast = paho.mqtt.__version__ in PAHO_VERSIONS
            global _warned  # noqa: PLW0603
            if not fast and not _warned:
                _warned = True
                log.warning(
                    "paho-mqtt %s is not a release the fast receive path was "
                    "checked against (%s); using paho's own, slower receive path",
                    paho.mqtt.__version__,
                    ", ".join(sorted(PAHO_VERSIONS)),
                )
        self.fast = fast
        self.on_fast_message: FastMessage = _ignore
        self._chunk = b""
        self._chunk_pos = 0
        self._chunk_sock: object = None

    def buffered(self) -> bool:
        """Whether received bytes are waiting that ``select`` would not report."""
        return (
            self.fast
            and self._chunk_pos < len(self._chunk)
            and self._chunk_sock is self._sock
        )

    def read_buffered(self, max_packets: int) -> MQTTErrorCode:
        """Handle up to ``max_packets`` packets already received or readable now."""
        if not self.fast:
            return self.loop_read()
        for _ in range(max_packets):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc > 0:
                return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge received QoS 1 messages (manual acknowledgement)."""
        if not self.fast:
            for mid in mids:
                self.ack(mid, 1)
            return
        packets = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids)
        if packets:
            # One queued write, through the queue paho writes from.
            self._packet_queue(PUBACK, packets, 0, 0)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self.fast:
            return super()._sock_recv(bufsize)
        if self._chunk_sock is not self._sock:
            # A new connection: bytes of the old one are void.
            self._chunk_sock, self._chunk, self._chunk_pos = self._sock, b"", 0
        if self._chunk_pos >= len(self._chunk):
            # Raises BlockingIOError when nothing is there, as paho expects.
            self._chunk, self._chunk_pos = super()._sock_recv(CHUNK), 0
            if not self._chunk:
                return b""  # the broker closed the connection
        start = self._chunk_pos
        self._chunk_pos = min(start + bufsize, len(self._chunk))
        return self._chunk[start : self._chunk_pos]

    def _handle_publish(self) -> MQTTErrorCode:
        header: int = self._in_packet["command"]
        packet: bytearray = self._in_packet["packet"]
        fast = self.fast and self._manual_ack and self._protocol == mqtt.MQTTv5
        if not fast or (header & 0x06) != 0x02:
            return super()._handle_publish()
        topic_end = 2 + int.from_bytes(packet[0:2], "big")
        # Packet id (2 bytes), then the property length: 0 means no properties.
        if len(packet) < topic_end + 3 or packet[topic_end + 2] != 0:
            return super()._handle_publish()
        try:
            topic = packet[2:topic_end].decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = int.from_bytes(packet[topic_end : topic_end + 2], "big")
        self.on_fast_message(mid, topic, bytes(packet[topic_end + 3 :]))
        return MQTTErrorCode.MQTT_ERR_SUCCESS
