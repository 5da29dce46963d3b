"""The whole system as real processes, for failure drills.

A ``Stack`` owns a private PostgreSQL and a private Mosquitto (both restartable)
and runs ``edufleet`` sub-commands against them as child processes: ingest,
the worker, the web server and the fleet simulator. Drills break one part and
count what was sent against what arrived.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from procs import MosquittoProcess
from services import PrivatePostgres, free_port

SUMMARY_FIELDS = {
    "devices": r"(\d+) devices on",
    "telemetry": r"(\d+) telemetry \(",
    "events": r"(\d+) events \(",
    "opened": r"(\d+) opened",
    "cleared": r"(\d+) cleared",
    "acked": r"broker acknowledged (\d+)",
    "sent": r"of (\d+) sent",
    "refused": r"refused (\d+)",
    "dropped": r"dropped before sending (\d+)",
}


@dataclass
class SimulatorReport:
    devices: int
    telemetry: int
    events: int
    opened: int
    cleared: int
    acked: int
    sent: int
    refused: int
    dropped: int

    @classmethod
    def parse(cls, text: str) -> SimulatorReport:
        lines = [line for line in text.splitlines() if "devices on" in line]
        if not lines:
            raise AssertionError(f"the simulator printed no summary:\n{text[-3000:]}")
        found = {}
        for name, pattern in SUMMARY_FIELDS.items():
            match = re.search(pattern, lines[-1])
            if match is None:
                raise AssertionError(
                    f"no {name!r} in the simulator's summary: {lines[-1]}"
                )
            found[name] = int(match.group(1))
        return cls(**found)


@dataclass
class Stack:
    root: Path
    pg: PrivatePostgres = field(init=False)
    broker: MosquittoProcess = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "pg").mkdir(parents=True)
        os.chmod(self.root, 0o755)
        self.pg = PrivatePostgres(self.root / "pg")
        self.broker = MosquittoProcess(self.root / "mqtt")
        server = self.pg.start()
        self.broker.start()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE DATABASE edufleet")
        self.database_url = server.rsplit("/", 1)[0] + "/edufleet"
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "EDUFLEET_DATABASE_URL": self.database_url,
            "EDUFLEET_MQTT_URL": self.broker.url,
            "EDUFLEET_ENVIRONMENT": "test",
            "EDUFLEET_SECRET_KEY": "drill-secret-key-long-enough-0123456789abcdef",
            "EDUFLEET_PUBLIC_URL": f"http://127.0.0.1:{self.web_port}",
            "EDUFLEET_WORKER_INTERVAL_SECONDS": "0.5",
            # The drills load the QR pages from one address on purpose.
            "EDUFLEET_QR_RATE_PER_MINUTE": "1000000",
        }

    # -- processes ---------------------------------------------------------

    def _command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "edufleet_collector.cli", *args]

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run a sub-command to completion and return its output."""
        result = subprocess.run(
            self._command(args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"edufleet {' '.join(args)}:\n{result.stderr[-3000:]}"
        )
        return result.stdout + result.stderr

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            self._command(args),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """Kill a process with SIGKILL, as a crash or an out-of-memory kill would."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def stop(self, name: str, timeout: float = 60) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name} did not stop within {timeout} s") from None

    def assert_running(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.broker.stop()
        self.pg.stop()

    # -- the system --------------------------------------------------------

    def prepare(self, *, schools: int, devices_per_school: int) -> None:
        self.cli("migrate")
        self.cli(
            "seed",
            "--schools",
            str(schools),
            "--devices-per-school",
            str(devices_per_school),
            "--cities",
            "3",
        )

    def start_collector(self) -> None:
        self.start("ingest", "ingest", "--metrics-port", str(free_port()))
        self.start("worker", "worker")
        self.start("web", "serve", "--port", str(self.web_port))

    def simulate(
        self, *, devices: int, interval: float, duration: float, fault_rate: float
    ):
        # The simulator takes at most 1,000 devices a school; with
        # --use-registry it simulates the first schools x devices of them.
        schools = -(-devices // 1000)
        return self.start(
            "simulator",
            "simulate",
            "--schools",
            str(schools),
            "--devices-per-school",
            str(-(-devices // schools)),
            "--interval",
            str(interval),
            "--duration",
            str(duration),
            "--fault-rate",
            str(fault_rate),
            "--use-registry",
        )

    def finish_simulation(self, timeout: float = 120) -> SimulatorReport:
        proc = self.procs.pop("simulator")
        proc.wait(timeout)
        return SimulatorReport.parse(self.log("simulator"))

    def scalar(self, sql: str, *params: object) -> int:
        """One number from the database, retrying while it restarts."""
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                    row = conn.execute(sql, params).fetchone()
                    return int(row[0]) if row and row[0] is not None else 0
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_count(
        self, sql: str, expected: int, *, settle: float = 45.0, timeout: float = 240
    ) -> int:
        """Wait until a count reaches ``expected``, or stops changing for
        ``settle`` seconds (something was lost), or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        value, since = self.scalar(sql), time.monotonic()
        while value < expected and time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.scalar(sql)
            if current != value:
                value, since = current, time.monotonic()
            elif time.monotonic() - since >= settle:
                break
        time.sleep(1.0)  # late duplicates would show now
        return self.scalar(sql)

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}"
                )
            time.sleep(0.5)
