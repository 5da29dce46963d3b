"""A PJLink projector for tests, written from the PJLink class 1 / class 2 spec.

It listens on a loopback port, greets with ``PJLINK 0`` or ``PJLINK 1
<random>``, checks the MD5 digest on the first command, and answers queries
from a table. ``behaviour`` makes it misbehave: ``drop`` closes the
connection after ``drop_after`` answers, ``garbage`` answers noise, ``silent``
never greets.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ProjectorState:
    password: str | None = None
    pjclass: int = 1
    power: str = "1"
    input: str = "31"
    lamps: str = "1200 1"
    errors: str = "000000"
    name: str = "Room 101"
    manufacturer: str = "ACME"
    model: str = "PJ-9000"
    info: str = "test projector"
    serial: str = "SN12345"
    software: str = "1.2.3"
    filter_hours: str = "321"
    unavailable: set[str] = field(default_factory=set)  # answer ERR3
    broken: set[str] = field(default_factory=set)  # answer ERR4
    behaviour: str = "normal"  # normal, drop, garbage, silent
    drop_after: int = 2
    connections: int = 0


class PjlinkServer:
    def __init__(self, state: ProjectorState) -> None:
        self.state = state
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(2)

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.state.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _answers(self) -> dict[str, str]:
        s = self.state
        table = {
            "POWR": s.power,
            "INPT": s.input,
            "LAMP": s.lamps,
            "ERST": s.errors,
            "NAME": s.name,
            "INF1": s.manufacturer,
            "INF2": s.model,
            "INFO": s.info,
            "CLSS": str(s.pjclass),
        }
        if s.pjclass >= 2:
            table.update({"SNUM": s.serial, "SVER": s.software, "FILT": s.filter_hours})
        return table

    def _session(self, conn: socket.socket) -> None:
        s = self.state
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            if s.behaviour == "silent":
                self._closed.wait(10)
                return
            if s.behaviour == "garbage":
                conn.sendall(b"\x00\xffHELLO? %%%%\r")
                conn.recv(256)
                conn.sendall(b"%1POWR=banana\r")
                return
            random = secrets.token_hex(4) if s.password is not None else None
            conn.sendall(f"PJLINK 1 {random}\r".encode() if random else b"PJLINK 0\r")
            authenticated = random is None
            for answered, received in enumerate(_lines(conn)):
                line = received
                if not authenticated:
                    digest, line = received[:32], received[32:]
                    expected = hashlib.md5(
                        (random + (s.password or "")).encode()
                    ).hexdigest()
                    if digest != expected:
                        conn.sendall(b"PJLINK ERRA\r")
                        return
                    authenticated = True
                if s.behaviour == "drop" and answered >= s.drop_after:
                    return
                conn.sendall(self._reply(line).encode() + b"\r")

    def _reply(self, line: str) -> str:
        if len(line) < 7 or line[0] != "%" or line[6:] != " ?":
            return "%1XXXX=ERR2"
        pjclass, command = line[1], line[2:6]
        head = f"%{pjclass}{command}="
        if command in self.state.unavailable:
            return head + "ERR3"
        if command in self.state.broken:
            return head + "ERR4"
        answers = self._answers()
        if command not in answers or int(pjclass) > self.state.pjclass:
            return head + "ERR1"
        return head + answers[command]


def _lines(conn: socket.socket) -> Iterator[str]:
    buffer = b""
    while True:
        chunk = conn.recv(256)
        if not chunk:
            return
        buffer += chunk
        while b"\r" in buffer:
            line, _, buffer = buffer.partition(b"\r")
            yield line.decode()


@contextlib.contextmanager
def projector(**kwargs: object) -> Iterator[PjlinkServer]:
    server = PjlinkServer(ProjectorState(**kwargs))  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()
