"""Server processes that tests start for themselves, on free loopback ports.

Use these when a test needs a broker configured its own way (dynamic
security, ACLs) or one it can stop and restart; everything else uses the
shared servers of ``conftest.py``.

``MosquittoProcess`` runs one Mosquitto under a temporary folder (it is
``scripts/services.py``'s broker), with the shipped
``provisioning/mosquitto/queues.conf`` included so tests run with the
production queue limits. ``dynsec_broker`` is a session fixture: a broker
running the dynamic security plugin, with edufleet's roles and an admin, an
ingest and a simulator identity already created.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from services import PrivateMosquitto, free_port  # noqa: E402

DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


def dynsec_plugin() -> str | None:
    return next((p for p in DYNSEC_PLUGINS if Path(p).exists()), None)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> Path:
    """A self-signed CA for one day: ``<name>.pem`` and ``<name>.key``."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-subj",
        f"/CN={name}",
        cwd=folder,
    )
    return folder / f"{name}.pem"


def make_server_cert(folder: Path, ca: str) -> None:
    """``server.pem``/``server.key`` for 127.0.0.1, signed by the CA ``ca``."""
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=folder,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
        cwd=folder,
    )


class MosquittoProcess(PrivateMosquitto):
    """One Mosquitto with its own config, data and log under ``root``.

    ``extra_config`` is appended to the shipped queue sizing; ``anonymous``
    False refuses clients without credentials.
    """

    def __init__(
        self,
        root: Path,
        extra_config: str = "",
        port: int | None = None,
        *,
        anonymous: bool = True,
    ) -> None:
        super().__init__(root, port=port, extra=extra_config, anonymous=anonymous)
        self.root = root

    def start(self) -> str:
        if os.geteuid() == 0:
            # Files the broker rewrites (dynamic security) must be its own.
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam("mosquitto")
                for path in self.root.iterdir():
                    os.chown(path, entry.pw_uid, entry.pw_gid)
        return super().start()

    def kill(self) -> None:
        """Stop at once, as a crash would: no final save of the persistence file."""
        self.stop(kill=True)

    def log_tail(self, size: int = 3000) -> str:
        return self.log_text[-size:]


@contextlib.contextmanager
def tls_broker(folder: Path, ca: str = "ca") -> Iterator[tuple[MosquittoProcess, str]]:
    """A Mosquitto with a plain listener and a TLS one signed by ``folder/<ca>``.

    The CA (``<ca>.pem``) must exist in ``folder/certs`` or is made there.
    Yields the broker (its ``url`` is the plain listener) and the TLS URL.
    """
    certs = folder / "certs"
    certs.mkdir(exist_ok=True)
    if not (certs / f"{ca}.pem").exists():
        make_ca(certs, ca)
    make_server_cert(certs, ca)
    tls_port = free_port()
    broker = MosquittoProcess(
        folder / "broker",
        extra_config="\n".join(
            [
                f"listener {tls_port} 127.0.0.1",
                f"cafile {certs / f'{ca}.pem'}",
                f"certfile {certs / 'server.pem'}",
                f"keyfile {certs / 'server.key'}",
            ]
        ),
    )
    broker.start()
    try:
        yield broker, f"mqtts://127.0.0.1:{tls_port}"
    finally:
        broker.stop()


@dataclass(frozen=True)
class DynsecBroker:
    """A running broker with the dynamic security plugin and edufleet's roles."""

    process: MosquittoProcess
    admin: tuple[str, str]
    ingest: tuple[str, str]
    simulator: tuple[str, str]

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port


@pytest.fixture(scope="session")
def dynsec_broker() -> Iterator[DynsecBroker]:
    """A private broker running dynamic security; no anonymous access."""
    from edufleet_collector.broker import roles

    plugin = dynsec_plugin()
    if plugin is None:
        pytest.skip("the Mosquitto dynamic security plugin is not installed")
    root = Path(tempfile.mkdtemp(prefix="edufleet-dynsec-"))
    os.chmod(root, 0o755)
    admin = ("test-admin", roles.new_password())
    ingest = ("test-ingest", roles.new_password())
    simulator = ("test-simulator", roles.new_password())
    dynsec_file = root / "dynamic-security.json"
    roles.write_config(
        dynsec_file,
        {
            admin[0]: (admin[1], roles.ADMIN_ROLE),
            ingest[0]: (ingest[1], roles.INGEST_ROLE),
            simulator[0]: (simulator[1], roles.SIMULATOR_ROLE),
        },
    )
    process = MosquittoProcess(
        root,
        extra_config="\n".join(
            [f"plugin {plugin}", f"plugin_opt_config_file {dynsec_file}"]
        ),
        anonymous=False,
    )
    process.start()
    try:
        yield DynsecBroker(process, admin, ingest, simulator)
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)


class MqttProbe:
    """A test's own MQTT 5 client that reports reason codes instead of hiding them."""

    def __init__(self, url: str, username: str | None, password: str | None):
        import queue
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{os.urandom(6).hex()}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: queue.Queue[object] = queue.Queue()
        self.acks: dict[int, object] = {}
        self.subacks: dict[int, list[object]] = {}
        self.messages: queue.Queue[object] = queue.Queue()
        self.disconnected = False
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.__setitem__(
            mid, rcs
        )
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_disconnect = lambda c, u, f, rc, p: setattr(
            self, "disconnected", True
        )

    def connect(self, timeout: float = 5.0) -> object:
        """Connect and return the CONNACK reason code."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self.connack.get(timeout=timeout)

    def publish(self, topic: str, payload: bytes | str, timeout: float = 5.0) -> object:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        return self._wait(self.acks, info.mid, timeout)

    def subscribe(self, topic: str, timeout: float = 5.0) -> object:
        """Subscribe at QoS 1 and return the SUBACK reason code."""
        _, mid = self.client.subscribe(topic, qos=1)
        codes = self._wait(self.subacks, mid, timeout)
        return codes[0]  # type: ignore[index]

    def received(self, timeout: float) -> list[object]:
        """Messages arriving within ``timeout`` seconds."""
        import queue

        found = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    @staticmethod
    def _wait(table: dict[int, object], mid: int, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while mid not in table:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no acknowledgement for message id {mid}")
            time.sleep(0.01)
        return table.pop(mid)


class TcpProxy:
    """A TCP forwarder on a free loopback port whose link can be cut and restored.

    ``cut`` drops every open connection and refuses new ones, as a severed
    WAN link between two sites would; ``restore`` accepts again.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        import threading

        self.target_port = target_port
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._threading = threading

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._threading.Thread(
            target=self._accept, args=(listener,), daemon=True
        ).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                self._threading.Thread(
                    target=self._pump, args=(src, dst), daemon=True
                ).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone
            # would leave it accepting.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A broker of this test's own, anonymous, with the shipped queue sizing."""
    broker = MosquittoProcess(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def restartable_postgres() -> Iterator[object]:
    """A private PostgreSQL cluster that a test may stop and start again.

    Yields ``scripts/services.py``'s ``PrivatePostgres``; ``.url`` names its
    maintenance database, ``.stop()`` and ``.start()`` restart it.
    """
    from services import PrivatePostgres

    root = Path(tempfile.mkdtemp(prefix="edufleet-pg-"))
    os.chmod(root, 0o755)
    server = PrivatePostgres(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
