"""The shipped broker configuration and ``edufleet broker init``, on Mosquitto."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from edufleet_collector.broker import roles
from edufleet_collector.broker.dynsec import DynsecClient
from edufleet_collector.cli import main
from procs import REPO, MosquittoProcess, MqttProbe, dynsec_plugin, free_port

SHIPPED = REPO / "provisioning/mosquitto"


def test_broker_init_writes_roles_and_hashed_passwords(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "dynamic-security.json"
    monkeypatch.setenv("EDUFLEET_BROKER_ADMIN_PASSWORD", "admin-password-123")

    args = ["broker", "init", "--admin-user", "boss", "--file", str(target)]
    code = main([*args, "--simulator-user", "sim"])

    assert code == 0
    out = capsys.readouterr().out
    assert "admin-password-123" not in out  # given, so not printed
    generated = dict(re.findall(r"^  (\w+): (\S+)$", out, re.MULTILINE))
    assert set(generated) == {"ingest", "sim"}
    assert target.stat().st_mode & 0o777 == 0o600
    config = json.loads(target.read_text())
    assert {r["rolename"] for r in config["roles"]} == set(roles.fixed_roles())
    assert config["defaultACLAccess"]["publishClientSend"] is False
    clients = {c["username"]: c for c in config["clients"]}
    boss = clients["boss"]
    digest = hashlib.pbkdf2_hmac(
        "sha512",
        b"admin-password-123",
        base64.b64decode(boss["salt"]),
        boss["iterations"],
    )
    assert base64.b64encode(digest).decode() == boss["password"]
    assert boss["roles"] == [{"rolename": "collector-admin"}]

    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_broker_init_refuses_a_short_password(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EDUFLEET_BROKER_INGEST_PASSWORD", "short")
    args = ["broker", "init", "--admin-user", "boss"]

    assert main([*args, "--file", str(tmp_path / "d.json")]) == 2
    assert "EDUFLEET_BROKER_INGEST_PASSWORD" in capsys.readouterr().err
    assert not (tmp_path / "d.json").exists()


def _localised(conf: str, root: Path, plain: int, tls: int) -> str:
    """The shipped file with its paths and ports moved under ``root``."""
    plugin = dynsec_plugin()
    assert plugin is not None
    replacements = {
        "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so": plugin,
        "/var/lib/mosquitto/dynamic-security.json": str(root / "dynsec.json"),
        "/var/lib/mosquitto/": f"{root}/",
        "/etc/mosquitto/certs": str(root / "certs"),
        "/etc/mosquitto/edufleet.d": str(root / "edufleet.d"),
        "listener 1883 127.0.0.1": f"listener {plain} 127.0.0.1",
        "listener 8883": f"listener {tls} 127.0.0.1",
        "log_dest syslog": "log_dest stderr",
    }
    for old, new in replacements.items():
        assert old in conf, f"{old!r} is no longer in the shipped mosquitto.conf"
        conf = conf.replace(old, new)
    return conf


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_shipped_configuration_starts_and_admits_no_anonymous_client() -> None:
    if dynsec_plugin() is None:
        pytest.skip("the Mosquitto dynamic security plugin is not installed")
    # Not pytest's tmp_path: the broker's own user must reach the folder.
    tmp_path = Path(tempfile.mkdtemp(prefix="edufleet-shipped-"))
    os.chmod(tmp_path, 0o755)
    try:
        _start_shipped(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _start_shipped(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(certs / "broker.key"),
            "-out", str(certs / "broker.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.copy(certs / "broker.crt", certs / "ca.crt")
    (tmp_path / "edufleet.d").mkdir()
    shutil.copy(SHIPPED / "queues.conf", tmp_path / "edufleet.d/queues.conf")
    admin_password = roles.new_password()
    roles.write_config(
        tmp_path / "dynsec.json", {"boss": (admin_password, roles.ADMIN_ROLE)}
    )
    plain, tls = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        _localised((SHIPPED / "mosquitto.conf").read_text(), tmp_path, plain, tls)
    )
    if os.geteuid() == 0:
        # Mosquitto drops root for its own user, which must read all of this.
        for path in [tmp_path, *tmp_path.rglob("*")]:
            shutil.chown(path, "mosquitto", "mosquitto")

    broker = MosquittoProcess(tmp_path / "run", port=plain)
    broker.config = conf.read_text  # type: ignore[method-assign]
    broker.start()
    try:
        anonymous = MqttProbe(broker.url, None, None)
        assert anonymous.connect().is_failure
        anonymous.close()
        with DynsecClient.from_url(broker.url, "boss", admin_password) as dynsec:
            assert dynsec.get_role(roles.INGEST_ROLE) is not None
        log = broker.log_text
        assert f"port {tls}" in log and "Error" not in log
    finally:
        broker.stop()


def test_offline_ingest_session_keeps_more_than_the_default_queue(
    private_broker: MosquittoProcess,
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    # Mosquitto's default max_queued_messages is 1,000, with which only about
    # that many would arrive; the shipped limits hold far more for a shared
    # subscription whose consumer is away.
    count = 5000
    received: list[bytes] = []

    def session(connected: list[bool]) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="ingest-0", protocol=mqtt.MQTTv5
        )
        client.on_connect = lambda c, u, f, rc, p: connected.append(True)
        client.on_message = lambda c, u, m: received.append(m.payload)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(
            "127.0.0.1", private_broker.port, clean_start=False, properties=props
        )
        client.loop_start()
        deadline = time.monotonic() + 5
        while not connected and time.monotonic() < deadline:
            time.sleep(0.01)
        return client

    ingest = session([])
    ingest.subscribe("$share/edufleet/edufleet/v1/#", qos=1)
    time.sleep(0.3)
    ingest.disconnect()
    ingest.loop_stop()

    device = MqttProbe(private_broker.url, None, None)
    device.connect()
    infos = [
        device.client.publish("edufleet/v1/dq1/telemetry", str(n), qos=1)
        for n in range(count)
    ]
    for info in infos:
        info.wait_for_publish(10)
    device.close()

    ingest = session([])
    deadline = time.monotonic() + 20
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    ingest.disconnect()
    ingest.loop_stop()

    assert len(received) == count
    assert [int(p) for p in received] == list(range(count))
