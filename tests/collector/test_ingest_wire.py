"""Ingest's MQTT receive path (IngestClient) against a real Mosquitto.

Every PUBLISH form must come out whole and in order: the fast path for QoS 1
without properties, paho's own path for the rest, packets that straddle the
chunks read from the socket, and redelivery after a reconnect.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from ingest_support import (
    ingest_thread,
    publisher,
    scalar,
    seed_fleet,
    telemetry,
    wait_for,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edufleet_collector.ingest.wire import CHUNK, PAHO_VERSIONS, IngestClient
from procs import tls_broker

Got = list[tuple[str, int, str, bytes]]


class Receiver:
    """An IngestClient on a persistent session, driven like ingest drives it."""

    def __init__(
        self,
        address: tuple[str, int],
        client_id: str,
        topic: str,
        *,
        ack: bool,
        fast: bool = True,
    ) -> None:
        self.address, self.topic, self.ack = address, topic, ack
        self.got: Got = []
        self.client = IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            fast=fast,
        )
        self.client.on_fast_message = self._fast
        self.client.on_message = self._slow
        self.unacked: list[tuple[int, int]] = []

    def _fast(self, mid: int, topic: str, payload: bytes) -> None:
        self.got.append(("fast", 1, topic, payload))
        self.unacked.append((mid, 1))

    def _slow(
        self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage
    ) -> None:
        self.got.append(("paho", msg.qos, msg.topic, msg.payload))
        if msg.qos:
            self.unacked.append((msg.mid, msg.qos))

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        props.ReceiveMaximum = 5000
        self.client.connect(*self.address, clean_start=False, properties=props)
        self.client.subscribe(self.topic, qos=1)
        self.turn(0.5)

    def turn(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.client.loop(timeout=0.0 if self.client.buffered() else 0.01)
            self.client.read_buffered(1000)
            if self.ack and self.unacked:
                self.client.ack_many(mid for mid, qos in self.unacked if qos == 1)
                self.unacked.clear()

    def wait_for(self, count: int, *, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < end:
            self.turn(0.05)


@pytest.fixture
def topic_base() -> str:
    return f"wiretest/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def paho_publisher(mqtt_address: tuple[str, int]) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(50)
    client.connect(*mqtt_address)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def receiver(
    mqtt_address: tuple[str, int], topic_base: str
) -> Iterator[Callable[..., Receiver]]:
    """Makes receivers on one session; ``ack`` says whether they acknowledge."""
    made: list[Receiver] = []
    client_id = f"wiretest-{uuid.uuid4().hex[:8]}"

    def make(ack: bool, fast: bool = True) -> Receiver:
        made.append(
            Receiver(mqtt_address, client_id, f"{topic_base}/#", ack=ack, fast=fast)
        )
        made[-1].connect()
        return made[-1]

    yield make
    for r in made:
        r.client.disconnect()


def publish_all(
    client: mqtt.Client, items: list[tuple[str, bytes, int, Properties | None]]
) -> None:
    infos = [client.publish(t, p, qos=q, properties=props) for t, p, q, props in items]
    for info in infos:
        info.wait_for_publish(10)


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "paho's path"])
def test_every_form_arrives_whole_and_in_order(
    paho_publisher: mqtt.Client,
    receiver: Callable[..., Receiver],
    topic_base: str,
    fast: bool,
) -> None:
    user = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    user.UserProperty = ("origin", "test")
    # Sizes around the remaining-length encodings (1-4 bytes) and a payload
    # larger than a socket chunk, so packets straddle chunk boundaries.
    sizes = [0, 1, 100, 127, 128, 16_383, 16_384, 70_000, CHUNK + 12_345]
    items: list[tuple[str, bytes, int, Properties | None]] = []
    for n in range(600):
        size = sizes[n % len(sizes)] if n % 7 == 0 else 40 + n % 300
        body = struct.pack("!I", n) + bytes((n + i) % 251 for i in range(size))
        qos = 0 if n % 50 == 3 else 1
        props = user if n % 50 == 5 else None
        items.append((f"{topic_base}/d{n % 9}/telemetry", body, qos, props))
    r = receiver(True, fast)
    publish_all(paho_publisher, items)
    r.wait_for(len(items))

    # MQTT keeps order within a QoS level; the publisher may send QoS 0 ahead.
    for qos in (0, 1):
        got = [(t, p) for _, q, t, p in r.got if q == qos]
        assert got == [(t, p) for t, p, q, _ in items if q == qos]
    paths = {(path, qos) for path, qos, _, _ in r.got}
    if not fast:
        assert paths == {("paho", 0), ("paho", 1)}
        return
    assert paths == {("fast", 1), ("paho", 0), ("paho", 1)}
    taken_fast = sum(1 for path, *_ in r.got if path == "fast")
    assert taken_fast == sum(1 for _, _, q, props in items if q == 1 and props is None)


def test_the_pinned_paho_is_a_release_the_fast_path_was_checked_against() -> None:
    """A paho upgrade turns the fast path off until it is checked again."""
    import paho.mqtt

    client = IngestClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert paho.mqtt.__version__ in PAHO_VERSIONS
    assert client.fast


def test_unacknowledged_messages_come_again_after_a_reconnect(
    paho_publisher: mqtt.Client, receiver: Callable[..., Receiver], topic_base: str
) -> None:
    first = receiver(False)
    items: list[tuple[str, bytes, int, Properties | None]] = [
        (f"{topic_base}/d/telemetry", f"m{n}".encode(), 1, None) for n in range(200)
    ]
    publish_all(paho_publisher, items)
    first.wait_for(200)  # received, none acknowledged
    assert len(first.got) == 200
    first.client.disconnect()

    again = receiver(True)
    again.wait_for(200)
    assert [p for *_, p in again.got] == [p for _, p, _, _ in items]
    again.client.disconnect()

    # Everything was acknowledged this time: a third connection gets nothing.
    third = receiver(False)
    third.turn(1.0)
    assert third.got == []


def test_ingest_over_tls_stores_every_message_of_a_burst(
    tmp_path: Path, settings: Any, database_url: str
) -> None:
    """TLS sockets hand over decrypted records, not the byte stream select sees."""
    with tls_broker(tmp_path) as (broker, tls_url):
        with psycopg.connect(database_url) as conn:
            fleet = seed_fleet(conn, pcs=10)
        tls = settings.model_copy(
            update={
                "mqtt_url": tls_url,
                "mqtt_ca_file": str(tmp_path / "certs" / "ca.pem"),
                "ingest_batch_ms": 50,
            }
        )
        burst = [telemetry(u, seq) for seq in range(1, 501) for u in fleet.uids]
        with ingest_thread(tls), publisher(broker.url) as pub:
            pub.send(burst)
            wait_for(
                lambda: (
                    scalar(database_url, "SELECT count(*) FROM telemetry") == len(burst)
                ),
                30,
                "every sample of the burst",
            )
