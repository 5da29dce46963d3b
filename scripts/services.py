"""Provide a PostgreSQL server and a Mosquitto broker for `make test` and `make demo`.

    python scripts/services.py run [--keep] -- COMMAND [ARG ...]

The services come from, in order of preference:

1. the URLs in ``EDUFLEET_DATABASE_URL`` and ``EDUFLEET_MQTT_URL``, when set;
2. private servers started from the system's binaries, on free loopback ports,
   with their data under a temporary folder that is removed afterwards;
3. Debian packages installed with apt-get, when running as root;
4. otherwise the script stops and names the package to install.

COMMAND runs with both variables exported, pointing at the chosen services, and
its exit status becomes this script's. Only the standard library is used, so
this runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PACKAGES = {
    "venv": "python3-venv",
    "postgres": "postgresql",
    "mosquitto": "mosquitto",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "docker-compose": "docker-compose",
    "wrk": "wrk",
    "cjkfont": "fonts-wqy-microhei",
}


class ServiceError(RuntimeError):
    """A service could not be provided; the message says what to install or fix."""


def log(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"process exited with status {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.1)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise ServiceError(
            f"the Debian package {package!r} is not installed; "
            f"install it with: sudo apt-get install {package}"
        )
    log(f"installing {package} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
    )


def find_postgres_bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).parent / "postgres").exists():
        return Path(initdb).parent
    return None


def ensure_binary(name: str) -> Path:
    """Return the path of a server binary, installing its package if allowed."""
    if name == "venv":
        probe = subprocess.run(
            [sys.executable, "-c", "import ensurepip, venv"],
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            apt_install(PACKAGES[name])
        return Path(sys.executable)
    if name == "cjkfont":
        # Labels need a font with Chinese glyphs.
        for attempt in range(2):
            fonts = sorted(
                glob.glob("/usr/share/fonts/**/wqy-*.tt[cf]", recursive=True)
                + glob.glob("/usr/share/fonts/**/*CJK*", recursive=True)
            )
            if fonts:
                return Path(fonts[0])
            if attempt == 0:
                apt_install(PACKAGES[name])
        raise ServiceError(f"{PACKAGES[name]} installed but no CJK font was found")
    if name == "postgres":
        bindir = find_postgres_bindir()
        if bindir is None:
            apt_install(PACKAGES[name])
            bindir = find_postgres_bindir()
        if bindir is None:
            raise ServiceError("postgresql installed but no postgres binary was found")
        return bindir
    for attempt in range(2):
        found = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()),
            None,
        )
        if found:
            return Path(found)
        if attempt == 0:
            apt_install(PACKAGES[name])
    raise ServiceError(f"{PACKAGES[name]} installed but {name!r} was not found")


def _demote_to(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


class PrivatePostgres:
    """A PostgreSQL cluster under ``root``, owned by a non-root user when we are root.

    ``start`` and ``stop`` may be called repeatedly, so tests can restart it.
    """

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.bindir = ensure_binary("postgres")
        self.datadir = root / "pgdata"
        self.sockdir = root / "pgsock"
        self.port = port or free_port()
        self.owner = "edufleet"
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, object] = {}
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; the Debian package's system
            # user owns the private cluster instead.
            try:
                uid, gid = _demote_to("postgres")
            except KeyError as exc:
                raise ServiceError(
                    "running as root needs the 'postgres' system user "
                    "(created by the Debian package postgresql)"
                ) from exc
            os.chown(root, uid, gid)
            os.chown(self.sockdir, uid, gid)
            self._user = {"user": uid, "group": gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return f"postgresql://{self.owner}@127.0.0.1:{self.port}/postgres"

    def _initdb(self) -> None:
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.owner,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **self._user,  # type: ignore[arg-type]
        )

    def start(self) -> str:
        if not self.datadir.exists():
            self._initdb()
        logfile = open(self.root / "postgres.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.sockdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._user,  # type: ignore[arg-type]
        )
        logfile.close()
        try:
            wait_for_port(self.port, 30, self.proc)
        except ServiceError as exc:
            tail = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
            raise ServiceError(
                f"private PostgreSQL failed to start: {exc}\n{tail}"
            ) from exc
        return self.url

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server: fast shutdown by default, or an immediate one."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT if fast else signal.SIGQUIT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def private_postgres(root: Path) -> Iterator[str]:
    server = PrivatePostgres(root)
    try:
        url = server.start()
        log(f"private PostgreSQL on 127.0.0.1:{server.port} (data in {server.datadir})")
        yield url
    finally:
        server.stop()


SHIPPED_QUEUES = (
    Path(__file__).resolve().parent.parent / "provisioning/mosquitto/queues.conf"
)


class PrivateMosquitto:
    """A Mosquitto broker under ``folder``, with the shipped queue sizing.

    ``extra`` is appended to the configuration (a bridge, a plugin, ACLs).
    ``start`` and ``stop`` may be called repeatedly; persistence survives.
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        extra: str = "",
        anonymous: bool = True,
    ) -> None:
        self.binary = ensure_binary("mosquitto")
        self.folder = folder
        self.port = port or free_port()
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Mosquitto drops root privileges to its own user and must still
            # be able to write its persistence file.
            with contextlib.suppress(KeyError):
                uid, gid = _demote_to("mosquitto")
                os.chown(folder, uid, gid)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_text(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def config(self) -> str:
        lines = [
            # Started as root, Mosquitto would switch to its own user, which
            # cannot reach a private temporary folder; this broker stays as
            # the user that started it.
            "user root" if os.geteuid() == 0 else "",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.folder}/",
        ]
        if SHIPPED_QUEUES.exists():
            lines.append(SHIPPED_QUEUES.read_text())
        lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def start(self) -> str:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(self.config())
        logfile = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(conf)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        try:
            wait_for_port(self.port, 15, self.proc)
        except ServiceError as exc:
            raise ServiceError(
                f"private Mosquitto failed to start: {exc}\n{self.log_text[-2000:]}"
            ) from exc
        return self.url

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def private_mosquitto(root: Path) -> Iterator[str]:
    broker = PrivateMosquitto(root / "mosquitto")
    try:
        url = broker.start()
        log(f"private Mosquitto on 127.0.0.1:{broker.port}")
        yield url
    finally:
        broker.stop()


def run(command: list[str], keep: bool) -> int:
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="edufleet-services-"))
        os.chmod(root, 0o755)
        if not keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        env = dict(os.environ)
        if not env.get("EDUFLEET_DATABASE_URL"):
            env["EDUFLEET_DATABASE_URL"] = stack.enter_context(private_postgres(root))
        else:
            log("using EDUFLEET_DATABASE_URL from the environment")
        if not env.get("EDUFLEET_MQTT_URL"):
            env["EDUFLEET_MQTT_URL"] = stack.enter_context(private_mosquitto(root))
        else:
            log("using EDUFLEET_MQTT_URL from the environment")
        env["EDUFLEET_SERVICES_DIR"] = str(root)

        child = subprocess.Popen(command, env=env)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            try:
                return child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run a command with both services")
    run_parser.add_argument("--keep", action="store_true", help="keep the data folder")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    ensure_parser = sub.add_parser(
        "ensure", help="install a binary's package if missing"
    )
    ensure_parser.add_argument("binary", choices=sorted(PACKAGES))
    args = parser.parse_args(argv)

    try:
        if args.action == "ensure":
            print(ensure_binary(args.binary))
            return 0
        # A SIGTERM (from CI or a process manager) cleans up like Ctrl-C: the
        # command is stopped, then the private servers and their data.
        signal.signal(signal.SIGTERM, _interrupt)
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run needs a command after --")
        return run(command, keep=args.keep)
    except ServiceError as exc:
        log(f"error: {exc}")
        return 2
    except subprocess.CalledProcessError as exc:
        log(f"error: {' '.join(map(str, exc.cmd))} failed with status {exc.returncode}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
