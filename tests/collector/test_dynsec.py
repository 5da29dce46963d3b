"""Device identities on a real Mosquitto running the dynamic security plugin."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from edufleet_collector.broker.dynsec import DynsecClient
from edufleet_collector.broker.identities import provision_device, revoke_device
from edufleet_collector.errors import Conflict, NotFound
from procs import DynsecBroker, MqttProbe


@pytest.fixture
def dynsec(dynsec_broker: DynsecBroker) -> Iterator[DynsecClient]:
    client = DynsecClient.from_url(dynsec_broker.url, *dynsec_broker.admin)
    with client:
        yield client


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def new_device_id() -> str:
    return "t" + uuid.uuid4().hex[:12]


def connected(
    probes: list[MqttProbe], url: str, username: str | None, password: str | None
) -> MqttProbe:
    probe = MqttProbe(url, username, password)
    code = probe.connect()
    assert not code.is_failure, f"{username!r} was refused: {code}"
    probes.append(probe)
    return probe


def test_device_cannot_publish_as_another_device(
    dynsec: DynsecClient,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    alice, bob = new_device_id(), new_device_id()
    alice_pw = provision_device(dynsec, alice)
    provision_device(dynsec, bob)
    ingest = connected(probes, dynsec_broker.url, *dynsec_broker.ingest)
    assert not ingest.subscribe("$share/edufleet/edufleet/v1/#").is_failure
    device = connected(probes, dynsec_broker.url, alice, alice_pw)

    forged = device.publish(f"edufleet/v1/{bob}/event", json.dumps({"v": 1}))
    own = device.publish(f"edufleet/v1/{alice}/event", json.dumps({"v": 1}))

    assert forged.is_failure and "authorized" in str(forged).lower()
    assert not own.is_failure
    # The broker is shared by the session: only these two devices' topics count.
    topics = [
        m.topic for m in ingest.received(0.5) if m.topic.split("/")[2] in (alice, bob)
    ]
    assert topics == [f"edufleet/v1/{alice}/event"]


def test_device_cannot_read_other_devices_topics(
    dynsec: DynsecClient,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    alice, bob = new_device_id(), new_device_id()
    alice_pw = provision_device(dynsec, alice)
    provision_device(dynsec, bob)
    device = connected(probes, dynsec_broker.url, alice, alice_pw)

    assert device.subscribe(f"edufleet/v1/{bob}/cmd/+").is_failure
    assert device.subscribe("edufleet/v1/#").is_failure
    assert device.subscribe("$share/edufleet/edufleet/v1/#").is_failure
    assert device.subscribe("$CONTROL/dynamic-security/#").is_failure
    assert not device.subscribe(f"edufleet/v1/{alice}/cmd/+").is_failure

    ingest = connected(probes, dynsec_broker.url, *dynsec_broker.ingest)
    assert not ingest.publish(f"edufleet/v1/{bob}/cmd/identify", "{}").is_failure
    assert not ingest.publish(f"edufleet/v1/{alice}/cmd/rebirth", "{}").is_failure
    topics = [m.topic for m in device.received(0.5)]
    assert topics == [f"edufleet/v1/{alice}/cmd/rebirth"]


def test_revoked_device_is_refused_and_disconnected(
    dynsec: DynsecClient,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    device_id = new_device_id()
    password = provision_device(dynsec, device_id)
    live = connected(probes, dynsec_broker.url, device_id, password)

    assert revoke_device(dynsec, device_id) is True

    retry = MqttProbe(dynsec_broker.url, device_id, password)
    probes.append(retry)
    assert retry.connect().is_failure
    for _ in range(100):
        if live.disconnected:
            break
        retry.received(0.02)
    assert live.disconnected
    assert dynsec.get_client(device_id) is None
    assert dynsec.get_role(f"device:{device_id}") is None
    assert revoke_device(dynsec, device_id) is False


def test_reprovisioning_replaces_the_password(
    dynsec: DynsecClient,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    device_id = new_device_id()
    first = provision_device(dynsec, device_id)
    second = provision_device(dynsec, device_id)

    stale = MqttProbe(dynsec_broker.url, device_id, first)
    probes.append(stale)
    assert first != second
    assert stale.connect().is_failure
    connected(probes, dynsec_broker.url, device_id, second)


def test_controller_may_publish_for_its_peripherals_only(
    dynsec: DynsecClient,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    controller, projector, stranger = new_device_id(), new_device_id(), new_device_id()
    password = provision_device(dynsec, controller, peripherals=[projector])
    device = connected(probes, dynsec_broker.url, controller, password)

    assert not device.publish(f"edufleet/v1/{projector}/event", "{}").is_failure
    assert device.publish(f"edufleet/v1/{stranger}/event", "{}").is_failure

    provision_device(dynsec, controller, peripherals=[], password=password)
    assert device.publish(f"edufleet/v1/{projector}/event", "{}").is_failure


def test_anonymous_client_is_refused(dynsec_broker: DynsecBroker) -> None:
    probe = MqttProbe(dynsec_broker.url, None, None)
    try:
        assert probe.connect().is_failure
    finally:
        probe.close()


def test_plugin_errors_become_our_errors(dynsec: DynsecClient) -> None:
    device_id = new_device_id()
    provision_device(dynsec, device_id)

    with pytest.raises(Conflict, match="already exists"):
        dynsec.create_client(device_id, "another-password")
    with pytest.raises(NotFound, match="not found"):
        dynsec.delete_client(new_device_id())
