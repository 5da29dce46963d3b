"""``edufleet demo``: the whole system on loopback with a simulated fleet.

Migrates the database, loads a sample province, then runs the web server,
ingest, the worker and the fleet simulator as child processes, prints where
to look and what to try, and stops all of them on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from .settings import Settings

log = logging.getLogger("edufleet.collector.demo")

DEMO_SCHOOLS = 30
DEMO_DEVICES_PER_SCHOOL = 50
DEMO_CITIES = 3


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free TCP port on 127.0.0.1")


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the process serving {url} exited with {proc.returncode}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Supervisor:
    """Child processes started in order and stopped in reverse, whatever happens."""

    env: dict[str, str]
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def run(self, name: str, args: Sequence[str]) -> None:
        """Run a preparation step to completion; fail loudly if it fails."""
        log.info("%s: %s", name, " ".join(args))
        result = subprocess.run(
            [sys.executable, "-m", "edufleet_collector.cli", *args],
            env=self.env,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed with exit status {result.returncode}")

    def start(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edufleet_collector.cli", *args],
            env=self.env,
            start_new_session=True,
        )
        self.children.append((name, proc))
        log.info("started %s (pid %d)", name, proc.pid)
        return proc

    def failed(self) -> str | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return f"{name} exited with status {proc.returncode}"
        return None

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within 15 s; killing it", name)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.children.clear()


def _walkthrough(settings: Settings, web: str, metrics: str) -> str:
    with psycopg.connect(settings.database_url) as conn:
        label = conn.execute(
            """
            SELECT c.code, s.name, COALESCE(r.name, ''), d.asset_tag, cat.name_zh
            FROM device_codes c
            JOIN devices d ON d.id = c.device_id
            JOIN schools s ON s.id = d.school_id
            JOIN device_categories cat ON cat.code = d.category
            LEFT JOIN rooms r ON r.id = d.room_id
            WHERE c.retired_at IS NULL AND d.category = 'projector'
            ORDER BY s.id, d.id LIMIT 1
            """
        ).fetchone()
        engineer = conn.execute(
            """
            SELECT u.name, e.name, s.name FROM users u
            JOIN engineers e ON e.id = u.engineer_id
            JOIN school_engineers se ON se.engineer_id = e.id AND se.role = 'primary'
            JOIN schools s ON s.id = se.school_id
            WHERE u.role = 'engineer' ORDER BY s.id LIMIT 1
            """
        ).fetchone()
        admin = conn.execute(
            "SELECT name FROM users WHERE role = 'province_admin' ORDER BY id LIMIT 1"
        ).fetchone()
    password = os.environ.get("EDUFLEET_DEMO_PASSWORD", "edufleet-demo")
    lines = [
        "",
        "edufleet demo is running  /  演示系统已启动",
        "",
        f"  web pages     {web}/",
        f"  API docs      {web}/docs   (OpenAPI at {web}/openapi.json)",
        f"  metrics       {metrics}/metrics  (ingest)",
        "",
        "Walk-through / 体验步骤:",
    ]
    if label:
        code, school, room, tag, category = label
        lines += [
            f"  1. Scan as a teacher: open {web}/r/{code}",
            f"     ({category} {tag}, {school} {room}) and report a fault.",
        ]
    if engineer:
        lines += [
            f"  2. Accept as the engineer: log in at {web}/login as {engineer[0]!r}",
            f"     ({engineer[1]}, primary engineer of {engineer[2]}),",
            f"     password {password!r}.",
        ]
    if admin:
        lines.append(
            f"  3. Admin pages: log in as {admin[0]!r} with the same password."
        )
    lines += [
        "  The simulated fleet raises faults by itself; they appear in the queue too.",
        "",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(lines)


def run_demo(settings: Settings, *, port: int = 8000, fault_rate: float = 0.05) -> int:
    env = dict(os.environ)
    env.setdefault("EDUFLEET_DEMO_PASSWORD", "edufleet-demo")
    env["EDUFLEET_SECRET_KEY"] = settings.secret_key.get_secret_value()
    web_port = _free_port(port)
    metrics_port = _free_port(9100)
    web = f"http://127.0.0.1:{web_port}"
    env["EDUFLEET_PUBLIC_URL"] = web
    supervisor = Supervisor(env)

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        supervisor.run("migrate", ["migrate"])
        supervisor.run(
            "seed",
            [
                "seed",
                "--schools",
                str(DEMO_SCHOOLS),
                "--devices-per-school",
                str(DEMO_DEVICES_PER_SCHOOL),
                "--cities",
                str(DEMO_CITIES),
                "--if-empty",
            ],
        )
        server = supervisor.start(
            "web", ["serve", "--host", "127.0.0.1", "--port", str(web_port)]
        )
        supervisor.start("ingest", ["ingest", "--metrics-port", str(metrics_port)])
        supervisor.start("worker", ["worker"])
        supervisor.start(
            "simulator",
            [
                "simulate",
                "--schools",
                str(DEMO_SCHOOLS),
                "--devices-per-school",
                str(DEMO_DEVICES_PER_SCHOOL),
                "--interval",
                "30",
                "--fault-rate",
                str(fault_rate),
                "--use-registry",
            ],
        )
        _wait_http(f"{web}/healthz", 60, server)
        print(
            _walkthrough(settings, web, f"http://127.0.0.1:{metrics_port}"), flush=True
        )
        while (problem := supervisor.failed()) is None:
            time.sleep(1)
        log.error("stopping the demo: %s", problem)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the demo…", flush=True)
        return 0
    finally:
        supervisor.stop()
