"""The shipped broker configurations start a real Mosquitto.

The paths of the container (or of the Debian host) are rewritten to a
temporary folder, TLS gets a throw-away certificate, and the broker must
come up with the dynamic security plugin and both listeners.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from procs import dynsec_plugin, free_port

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = ROOT / "provisioning/mosquitto"


def _certificates(folder: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=edufleet-test", "-keyout", str(folder / "server.key"),
            "-out", str(folder / "server.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.copy(folder / "server.crt", folder / "ca.crt")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("name", ["docker.conf", "mosquitto.conf"])
def test_shipped_broker_config_starts_mosquitto(tmp_path, name):
    plugin = dynsec_plugin()
    if plugin is None or shutil.which("openssl") is None:
        pytest.skip("needs the dynamic security plugin and openssl")
    _certificates(tmp_path)
    plain, tls = free_port(), free_port()
    (tmp_path / "edufleet.d").mkdir()
    shutil.copy(MOSQUITTO / "queues.conf", tmp_path / "edufleet.d/queues.conf")
    text = (MOSQUITTO / name).read_text()
    for old, new in {
        # Host paths first: the container's are suffixes of some of them.
        "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so": plugin,
        "/var/lib/mosquitto/": f"{tmp_path}/",
        "/etc/mosquitto/certs/broker": f"{tmp_path}/server",
        "/etc/mosquitto/certs/ca.crt": f"{tmp_path}/ca.crt",
        "/etc/mosquitto/edufleet.d": f"{tmp_path}/edufleet.d",
        "/usr/lib/mosquitto_dynamic_security.so": plugin,
        "/mosquitto/data/": f"{tmp_path}/",
        "/mosquitto/certs/server": f"{tmp_path}/server",
        "/mosquitto/certs/ca.crt": f"{tmp_path}/ca.crt",
        "/mosquitto/config/edufleet.d": f"{tmp_path}/edufleet.d",
        "listener 1883 127.0.0.1": f"listener {plain} 127.0.0.1",
        "listener 1883\n": f"listener {plain} 127.0.0.1\n",
        "listener 8883": f"listener {tls} 127.0.0.1",
        "log_dest syslog": "log_dest stdout",
    }.items():
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text = "user root\n" + text
    conf = tmp_path / "broker.conf"
    conf.write_text(text)
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(tmp_path / "dynamic-security.json"),
         "admin", "admin-password-0123"],
        check=True,
        capture_output=True,
    )  # fmt: skip

    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while not (_listening(plain) and _listening(tls)):
            assert proc.poll() is None, (
                proc.stdout.read().decode() if proc.stdout else ""
            )
            assert time.monotonic() < deadline, "the broker did not open both listeners"
            time.sleep(0.1)
        anonymous = subprocess.run(
            ["mosquitto_pub", "-p", str(plain), "-t", "x", "-m", "y", "-q", "1"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        assert anonymous.returncode != 0, "an anonymous client was let in"
        admin = subprocess.run(
            ["mosquitto_pub", "-p", str(plain), "-u", "admin",
             "-P", "admin-password-0123", "-t", "x", "-m", "y", "-q", "1"],
            capture_output=True,
            check=False,
            timeout=10,
        )  # fmt: skip
        assert admin.returncode == 0, admin.stderr
    finally:
        proc.terminate()
        proc.wait(10)
