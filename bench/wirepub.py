"""A lean MQTT 5 QoS 1 publisher for load generation, written straight to a socket.

paho spends tens of microseconds of Python on every publish; on a 2-core
machine that shares its cores with the broker and the system under test, a
paho publisher would take more CPU than the ingest it is meant to load. This
one encodes each PUBLISH with a few byte operations, writes many in one
system call, and keeps at most the broker's Receive Maximum in flight, so
every message it counts as sent was acknowledged by the broker.

It speaks only what load generation needs: CONNECT without credentials,
PUBLISH at QoS 1, PUBACK, and DISCONNECT. It is not a client for the agent
or the collector, which use paho.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

CONNECT, CONNACK, PUBLISH_QOS1, PUBACK, DISCONNECT = 0x10, 0x20, 0x32, 0x40, 0xE0
RECEIVE_MAXIMUM = 0x21
ACCEPTED = (0x00, 0x10)
"""PUBACK reason codes that mean the broker took the message (0x10: no subscriber)."""


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """The value and the position after it, or None when more bytes are needed."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ValueError("malformed remaining length from the broker")
    return None


class WirePublisher:
    """One connection; :meth:`publish_many` sends, :meth:`drain` waits for acks."""

    def __init__(self, url: str, client_id: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 1883), timeout=10
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ident = client_id.encode()
        body = (
            b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + struct.pack("!H", len(ident)) + ident
        )
        self.sock.sendall(bytes([CONNECT]) + varint(len(body)) + body)
        self._buffer = bytearray()
        kind, packet = self._read_packet()
        if kind != CONNACK or packet[1] != 0:
            raise ConnectionError(f"broker refused the connection: {packet.hex()}")
        self.window = self._receive_maximum(packet)
        self.sock.setblocking(False)
        self.inflight = 0
        self.acked = 0
        self.refused = 0
        self._next_id = 0

    def _read_packet(self) -> tuple[int, bytes]:
        while True:
            parsed = self._parse_one()
            if parsed is not None:
                return parsed
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self._buffer += chunk

    def _parse_one(self) -> tuple[int, bytes] | None:
        data = self._buffer
        if len(data) < 2:
            return None
        header = read_varint(data, 1)
        if header is None:
            return None
        length, start = header
        if len(data) < start + length:
            return None
        packet = bytes(data[start : start + length])
        kind = data[0] & 0xF0
        del data[: start + length]
        return kind, packet

    @staticmethod
    def _receive_maximum(connack: bytes) -> int:
        props = read_varint(connack, 2)
        if props is None:
            return 65535
        length, pos = props
        end = pos + length
        while pos < end:
            ident = connack[pos]
            if ident == RECEIVE_MAXIMUM:
                return int(struct.unpack_from("!H", connack, pos + 1)[0])
            # Walk over the other CONNACK properties by their types.
            pos += 1
            if ident in (0x24, 0x25, 0x28, 0x29, 0x2A):  # byte
                pos += 1
            elif ident in (0x13, 0x22):  # two-byte integer
                pos += 2
            elif ident in (0x11, 0x27):  # four-byte integer
                pos += 4
            elif ident == 0x26:  # user property: two strings
                for _ in range(2):
                    pos += 2 + struct.unpack_from("!H", connack, pos)[0]
            else:  # UTF-8 string or binary data
                pos += 2 + struct.unpack_from("!H", connack, pos)[0]
        return 65535

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        self._next_id = self._next_id % 65535 + 1
        body_length = 2 + len(topic) + 2 + 1 + len(payload)
        return b"".join(
            (
                bytes([PUBLISH_QOS1]),
                varint(body_length),
                struct.pack("!H", len(topic)),
                topic,
                struct.pack("!HB", self._next_id, 0),
                payload,
            )
        )

    def publish_many(self, messages: Callable[[int], list[tuple[bytes, bytes]]]) -> int:
        """Send as many messages as the window allows; returns how many were sent.

        ``messages(n)`` gives up to ``n`` (topic, payload) pairs to send now.
        """
        self.poll(0)
        room = self.window - self.inflight
        if room <= 0:
            return 0
        batch = messages(room)
        if not batch:
            return 0
        data = b"".join(self.packet(topic, payload) for topic, payload in batch)
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)
        self.inflight += len(batch)
        return len(batch)

    def poll(self, timeout: float) -> None:
        """Read the acknowledgements that have arrived, waiting up to ``timeout``."""
        if timeout and not select.select([self.sock], [], [], timeout)[0]:
            return
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self._buffer += chunk
        while (parsed := self._parse_one()) is not None:
            kind, packet = parsed
            if kind == PUBACK:
                self.inflight -= 1
                if len(packet) > 2 and packet[2] not in ACCEPTED:
                    self.refused += 1
                else:
                    self.acked += 1
            elif kind == DISCONNECT:
                reason = packet[0] if packet else 0
                raise ConnectionError(f"the broker disconnected: reason {reason:#x}")

    def drain(self, timeout: float = 60) -> None:
        """Wait until every sent message is acknowledged."""
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            self.poll(0.05)

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(bytes([DISCONNECT, 0]))
        finally:
            self.sock.close()
