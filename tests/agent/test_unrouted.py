"""A message nobody subscribes to yet is kept and sent again, not lost.

After a broker restart Mosquitto does not restore shared subscriptions, so
until ingest reconnects the broker acknowledges agents' messages with "no
matching subscribers" and drops them. The publisher must keep them.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edufleet_agent.publisher import Publisher, PublisherSettings
from edufleet_agent.queue import MemoryOutbox
from procs import MosquittoProcess


def test_publisher_holds_unrouted_messages_until_a_subscriber_appears(tmp_path):
    # A broker of its own: a subscription left by another test would route
    # the messages and hide what is tested here.
    broker = MosquittoProcess(tmp_path / "broker")
    broker.start()
    mqtt_url = broker.url
    device = f"unrouted-{int(time.time() * 1000) % 10**9}"
    outbox = MemoryOutbox()
    publisher = Publisher(
        device,
        url=mqtt_url,
        outbox=outbox,
        sid="session-unrouted-1",
        birth=lambda: b'{"v":1}',
        settings=PublisherSettings(inflight=5),
    )
    publisher.start()
    try:
        for seq in range(20):
            outbox.put(f"edufleet/v1/{device}/telemetry", str(seq).encode())
        deadline = time.monotonic() + 10
        while publisher.stats.unrouted == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.stats.unrouted > 0
        assert len(outbox) == 20, "an unrouted message left the outbox"

        got: list[int] = []
        subscribed = threading.Event()
        parts = urlsplit(mqtt_url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = lambda c, u, m: got.append(int(m.payload))
        client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        client.subscribe(f"$share/test/edufleet/v1/{device}/telemetry", qos=1)
        assert subscribed.wait(5)

        deadline = time.monotonic() + 40
        while len(outbox) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        client.disconnect()
        client.loop_stop()
        assert len(outbox) == 0
        assert sorted(set(got)) == list(range(20))
        assert got == sorted(got), "messages were resent out of order"
    finally:
        publisher.stop(graceful=False)
        broker.stop()
