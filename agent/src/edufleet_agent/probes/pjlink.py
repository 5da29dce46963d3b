"""The PJLink probe: a thin client for projectors on TCP 4352.

PJLink in brief: on connect the projector greets with ``PJLINK 0`` (no
authentication) or ``PJLINK 1 <random>``; in the second case the first command
is prefixed with ``md5(random + password)`` as 32 lowercase hex digits. A query
is ``%<class><CMD> ?`` ended by CR; the answer is ``%<class><CMD>=<value>``, or
``=ERR1`` (undefined command), ``ERR2`` (out of parameter), ``ERR3``
(unavailable now), ``ERR4`` (projector failure). ``PJLINK ERRA`` means the
password was wrong. Class 2 projectors also answer serial number, software
version and filter hours.

Reading (sockets) is split from parsing (pure functions on strings), so the
parsers are tested on literal replies.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edufleet_agent.probes.base import (
    Metrics,
    ProbeOptions,
    ProbeSpec,
    label,
)
from edufleet_protocol.topics import DEVICE_ID_PATTERN

log = logging.getLogger("edufleet.agent.probes.pjlink")

DEFAULT_PORT: Final = 4352
MAX_LINE: Final = 136  # the spec's longest reply, with its CR
ERST_PARTS: Final = ("fan", "lamp", "temp", "cover", "filter", "other")
POWER_STATES: Final = {"0": "off", "1": "on", "2": "cooling", "3": "warming"}
ERROR_CODES: Final = {
    "ERR1": "undefined command",
    "ERR2": "out of parameter",
    "ERR3": "unavailable time",
    "ERR4": "projector failure",
}
CLASS1_QUERIES: Final = ("POWR", "INPT", "LAMP", "ERST", "NAME", "INF1", "INF2", "INFO")
CLASS2_QUERIES: Final = ("SNUM", "SVER", "FILT")


class PjlinkError(Exception):
    """The projector refused, failed, dropped the connection or spoke garbage.

    ``kind`` is one of auth, closed, garbage, timeout, connect.
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class CommandError(Exception):
    """The projector answered a query with ERR1..ERR4."""

    def __init__(self, command: str, code: str) -> None:
        super().__init__(f"{command}: {code} ({ERROR_CODES.get(code, 'error')})")
        self.command = command
        self.code = code


# --- parsing -----------------------------------------------------------------


def parse_greeting(line: str) -> str | None:
    """The random number to hash when authentication is asked, else None."""
    if line == "PJLINK 0":
        return None
    if line == "PJLINK ERRA":
        raise PjlinkError("projector refused the password (ERRA)", kind="auth")
    parts = line.split(" ")
    if len(parts) == 3 and parts[0] == "PJLINK" and parts[1] == "1" and parts[2]:
        if len(parts[2]) > 32 or not parts[2].isalnum():
            raise PjlinkError(f"bad random number in greeting {line!r}", kind="garbage")
        return parts[2]
    raise PjlinkError(f"not a PJLink greeting: {line[:60]!r}", kind="garbage")


def auth_digest(random: str, password: str) -> str:
    return hashlib.md5((random + password).encode("utf-8")).hexdigest()


def parse_reply(line: str, pjclass: int, command: str) -> str:
    """The value of a reply to ``%<class><command> ?``; raises on ERRn."""
    if line == "PJLINK ERRA":
        raise PjlinkError("projector refused the password (ERRA)", kind="auth")
    prefix = f"%{pjclass}{command}="
    if not line.startswith(prefix):
        raise PjlinkError(
            f"reply to {command} is not {prefix}...: {line[:60]!r}", kind="garbage"
        )
    value = line[len(prefix) :]
    if value in ERROR_CODES:
        raise CommandError(command, value)
    if value == "ERRA":
        raise PjlinkError("projector refused the password (ERRA)", kind="auth")
    return value


def parse_power(value: str) -> str:
    if value not in POWER_STATES:
        raise PjlinkError(f"unknown power state {value!r}", kind="garbage")
    return POWER_STATES[value]


def parse_lamps(value: str) -> list[tuple[int, bool]]:
    """``"1234 1 88 0"`` -> ``[(1234, True), (88, False)]``."""
    fields = value.split()
    if not fields or len(fields) % 2 or len(fields) > 16:
        raise PjlinkError(f"bad lamp reply {value!r}", kind="garbage")
    lamps = []
    for hours, lit in zip(fields[::2], fields[1::2], strict=True):
        if not hours.isdigit() or lit not in ("0", "1") or len(hours) > 5:
            raise PjlinkError(f"bad lamp reply {value!r}", kind="garbage")
        lamps.append((int(hours), lit == "1"))
    return lamps


def parse_errors(value: str) -> dict[str, int]:
    """``"002000"`` -> {fan: 0, lamp: 0, temp: 2, ...}; 0 ok, 1 warning, 2 error."""
    if len(value) != 6 or any(ch not in "012" for ch in value):
        raise PjlinkError(f"bad error status {value!r}", kind="garbage")
    return {part: int(ch) for part, ch in zip(ERST_PARTS, value, strict=True)}


def parse_class(value: str) -> int:
    if value not in ("1", "2"):
        raise PjlinkError(f"unknown PJLink class {value!r}", kind="garbage")
    return int(value)


def printable(value: str) -> str:
    return "".join(ch for ch in value if ch.isprintable())[:100]


# --- reading -----------------------------------------------------------------


@dataclass
class Report:
    """What one session with a projector learned."""

    pjclass: int = 1
    answers: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # command -> ERRn


class _Lines:
    """Reads CR-terminated lines of bounded length from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> str:
        while b"\r" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise PjlinkError(
                    f"reply longer than {MAX_LINE} bytes without CR", kind="garbage"
                )
            chunk = self.sock.recv(256)
            if not chunk:
                raise PjlinkError("projector closed the connection", kind="closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r")
        self.buffer = self.buffer.lstrip(b"\n")
        try:
            return line.decode("utf-8").strip("\n")
        except UnicodeDecodeError as exc:
            raise PjlinkError("reply is not text", kind="garbage") from exc


def query_projector(host: str, port: int, password: str, timeout: float) -> Report:
    """Connect, authenticate, and ask every query the projector's class offers."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError as exc:
        raise PjlinkError(f"no answer from {host}:{port}", kind="timeout") from exc
    except OSError as exc:
        raise PjlinkError(
            f"cannot connect to {host}:{port}: {exc}", kind="connect"
        ) from exc

    with sock:
        try:
            return _converse(_Lines(sock), sock, password)
        except TimeoutError as exc:
            raise PjlinkError(
                f"{host}:{port} stopped answering within {timeout:g} s", kind="timeout"
            ) from exc
        except ConnectionError as exc:
            raise PjlinkError(f"connection lost: {exc}", kind="closed") from exc


def _converse(lines: _Lines, sock: socket.socket, password: str) -> Report:
    random = parse_greeting(lines.read())
    digest = auth_digest(random, password) if random is not None else ""
    report = Report()

    def ask(pjclass: int, command: str) -> None:
        nonlocal digest
        sock.sendall(f"{digest}%{pjclass}{command} ?\r".encode())
        digest = ""
        try:
            report.answers[command] = parse_reply(lines.read(), pjclass, command)
        except CommandError as exc:
            report.refused[command] = exc.code

    ask(1, "CLSS")
    if "CLSS" in report.answers:
        report.pjclass = parse_class(report.answers["CLSS"])
    for command in CLASS1_QUERIES:
        ask(1, command)
    if report.pjclass >= 2:
        for command in CLASS2_QUERIES:
            ask(2, command)
    return report


def report_metrics(report: Report, who: str, rated_lamp_hours: int | None) -> Metrics:
    """Turn a report into metrics labelled with the projector's device id."""
    metrics: Metrics = {
        f"pjlink.ok[{who}]": True,
        f"pjlink.class[{who}]": report.pjclass,
    }
    answers = report.answers
    if "POWR" in answers:
        metrics[f"pjlink.power[{who}]"] = parse_power(answers["POWR"])
    if "INPT" in answers:
        metrics[f"pjlink.input[{who}]"] = printable(answers["INPT"])
    if "LAMP" in answers:
        lamps = parse_lamps(answers["LAMP"])
        hours = max(h for h, _ in lamps)
        metrics[f"pjlink.lamp_hours[{who}]"] = hours
        metrics[f"pjlink.lamp_on[{who}]"] = any(lit for _, lit in lamps)
        metrics[f"pjlink.lamp_count[{who}]"] = len(lamps)
        if rated_lamp_hours:
            metrics[f"pjlink.lamp_life_pct[{who}]"] = round(
                100.0 * hours / rated_lamp_hours, 1
            )
    if "ERST" in answers:
        for part, level in parse_errors(answers["ERST"]).items():
            metrics[f"pjlink.erst_{part}[{who}]"] = level
    for command, name in (
        ("NAME", "name"),
        ("INF1", "manufacturer"),
        ("INF2", "model"),
        ("INFO", "info"),
        ("SNUM", "serial"),
        ("SVER", "software"),
    ):
        if command in answers:
            metrics[f"pjlink.{name}[{who}]"] = printable(answers[command])
    if "FILT" in answers and answers["FILT"].isdigit():
        metrics[f"pjlink.filter_hours[{who}]"] = int(answers["FILT"])
    if report.refused.get("ERST") == "ERR4" or report.refused.get("POWR") == "ERR4":
        metrics[f"pjlink.failure[{who}]"] = True
    return metrics


# --- the probe -----------------------------------------------------------------


class Projector(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_PORT
    password: Annotated[str, StringConstraints(max_length=32)] = ""
    rated_lamp_hours: Annotated[int, Field(ge=1, le=100_000)] | None = None


class PjlinkOptions(ProbeOptions):
    projectors: list[Projector] = Field(default_factory=list, max_length=32)
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0

    def peripherals(self) -> list[tuple[str, str, str]]:
        return [
            (p.device_id, "projector", f"{p.host}:{p.port}") for p in self.projectors
        ]


Query = Callable[[str, int, str, float], Report]


class PjlinkProbe:
    def __init__(self, options: PjlinkOptions, query: Query = query_projector) -> None:
        self.options = options
        self.query = query

    def collect(self) -> Metrics:
        metrics: Metrics = {}
        for projector in self.options.projectors:
            metrics.update(self._one(projector))
        return metrics

    def _one(self, projector: Projector) -> Metrics:
        who = label(projector.device_id)
        try:
            report = self.query(
                projector.host,
                projector.port,
                projector.password,
                self.options.connect_timeout_s,
            )
            metrics = report_metrics(report, who, projector.rated_lamp_hours)
        except PjlinkError as exc:
            log.debug("projector %r: %s", projector.device_id, exc)
            reached = exc.kind not in ("connect", "timeout")
            return {
                f"pjlink.up[{who}]": reached,
                f"pjlink.ok[{who}]": False,
                f"pjlink.error[{who}]": exc.kind,
            }
        metrics[f"pjlink.up[{who}]"] = True
        return metrics


SPEC = ProbeSpec(
    name="pjlink",
    default_enabled=False,
    options=PjlinkOptions,
    factory=lambda options, context: PjlinkProbe(options),
    summary="projector power, input, lamp and error status over PJLink",
)
