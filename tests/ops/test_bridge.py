"""A city broker bridged to the central one: agents publish to the city, ingest
subscribes at the centre. The link between them is cut and restored while
agents keep publishing; every message must reach the centre.

The bridge configuration is the one shipped in provisioning/mosquitto/.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from procs import MosquittoProcess, TcpProxy

ROOT = Path(__file__).resolve().parents[2]
BRIDGE_TEMPLATE = ROOT / "provisioning/mosquitto/bridge-city.conf.example"
DEVICES = 20
MESSAGES_PER_DEVICE = 60


def _bridge_config(central_port: int) -> str:
    text = BRIDGE_TEMPLATE.read_text()
    text = text.replace("central.example.edu.cn:8883", f"127.0.0.1:{central_port}")
    # The test link is plain TCP on loopback; production bridges use TLS.
    kept = [
        line
        for line in text.splitlines()
        if not line.strip().startswith(
            ("bridge_cafile", "bridge_certfile", "bridge_keyfile")
        )
    ]
    return "\n".join(kept).replace("CITY_CODE", "460100")


class CentralSubscriber:
    """Stands in for ingest: a persistent MQTT 5 session on a shared subscription."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="central-ingest",
            protocol=mqtt.MQTTv5,
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            "$share/edufleet/edufleet/v1/+/telemetry", qos=1
        )
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(
        self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage
    ) -> None:
        device = msg.topic.split("/")[2]
        with self._lock:
            self.received.append((device, int(msg.payload)))

    def unique(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(port: int, device: str, sent: list) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    for seq in range(MESSAGES_PER_DEVICE):
        info = client.publish(f"edufleet/v1/{device}/telemetry", str(seq), qos=1)
        info.wait_for_publish(10)
        sent.append((device, seq))
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()


@pytest.mark.slow
def test_bridge_link_cut_and_restored_loses_nothing(tmp_path):
    if not BRIDGE_TEMPLATE.exists():
        pytest.fail(f"{BRIDGE_TEMPLATE} is missing")
    central = MosquittoProcess(
        tmp_path / "central", extra_config="allow_anonymous true"
    )
    central.start()
    proxy = TcpProxy(central.port)
    proxy.start()
    city = MosquittoProcess(
        tmp_path / "city",
        extra_config="allow_anonymous true\n" + _bridge_config(proxy.port),
    )
    city.start()
    subscriber = CentralSubscriber(central.port)
    try:
        time.sleep(1.0)  # the bridge connects and subscribes
        sent: list[tuple[str, int]] = []
        publishers = [
            threading.Thread(target=_publish, args=(city.port, f"dev{i:03d}", sent))
            for i in range(DEVICES)
        ]
        for thread in publishers:
            thread.start()

        time.sleep(0.8)
        proxy.cut()
        time.sleep(0.5)  # what the centre already had drains to the subscriber
        during_cut = len(subscriber.unique())
        time.sleep(3.0)
        assert len(subscriber.unique()) == during_cut, "messages crossed a cut link"
        proxy.restore()

        for thread in publishers:
            thread.join(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(subscriber.unique()) < len(sent):
            time.sleep(0.2)

        expected = {
            (f"dev{i:03d}", s)
            for i in range(DEVICES)
            for s in range(MESSAGES_PER_DEVICE)
        }
        got = subscriber.unique()
        duplicates = len(subscriber.received) - len(got)
        print(
            f"bridge drill: sent {len(sent)}, arrived {len(got)} unique, "
            f"{duplicates} duplicates, {during_cut} before the cut"
        )
        assert set(sent) == expected
        assert got == expected, f"missing {len(expected - got)} messages"
        assert 0 < during_cut < len(expected), "the cut did not fall mid-stream"
    finally:
        subscriber.close()
        city.stop()
        proxy.close()
        central.stop()
