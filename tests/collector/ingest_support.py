"""Helpers of the ingest tests: a seeded fleet, publishers, ingest runners."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from edufleet_protocol import topics
from edufleet_protocol.models import (
    Birth,
    FaultEvent,
    Inventory,
    OsInfo,
    ProbeInfo,
    StatePayload,
    Telemetry,
    TelemetrySample,
    dump_payload,
)

REPO = Path(__file__).resolve().parents[2]
SID = "testsession01"


@dataclass
class Fleet:
    school_id: int
    uids: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)


def seed_fleet(
    conn: psycopg.Connection[Any],
    *,
    pcs: int = 5,
    controllers: int = 0,
    school: str = "T01",
    calendar_id: int | None = None,
) -> Fleet:
    """One school with desktop PCs ``pc-<n>`` and controllers ``ctl-<n>``."""
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) VALUES ('469900', '测试省', "
        "'province') ON CONFLICT DO NOTHING"
    )
    row = conn.execute(
        "INSERT INTO schools (code, name, region_code, calendar_id) "
        "VALUES (%s, %s, '469900', %s) RETURNING id",
        [school, f"测试学校 {school}", calendar_id],
    ).fetchone()
    assert row is not None
    fleet = Fleet(int(row[0]))
    prefix = school.lower()
    names = [(f"{prefix}-pc-{i}", "desktop") for i in range(pcs)]
    names += [(f"{prefix}-ctl-{i}", "controller") for i in range(controllers)]
    for uid, category in names:
        row = conn.execute(
            "INSERT INTO devices (uid, asset_tag, category, school_id) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            [uid, f"TAG-{uid}", category, fleet.school_id],
        ).fetchone()
        assert row is not None
        fleet.uids.append(uid)
        fleet.ids[uid] = int(row[0])
    conn.commit()
    return fleet


def now() -> datetime:
    return datetime.now(UTC)


def telemetry(
    uid: str, seq: int, *, ts: datetime | None = None, sid: str = SID
) -> tuple[str, bytes]:
    sample = TelemetrySample(
        sid=sid, seq=seq, ts=ts or now(), metrics={"host.cpu_pct": seq % 100 + 0.5}
    )
    return topics.telemetry_topic(uid), dump_payload(Telemetry(samples=[sample]))


def state(uid: str, value: str, *, ts: datetime | None = None) -> tuple[str, bytes]:
    payload = StatePayload(state=value, ts=ts or now(), sid=SID)  # type: ignore[arg-type]
    return topics.state_topic(uid), dump_payload(payload)


def birth(
    uid: str,
    *,
    ram_gib: int = 8,
    disk_gb: int = 256,
    serial: str | None = "SN-1",
    ts: datetime | None = None,
) -> tuple[str, bytes]:
    payload = Birth(
        agent_version="1.0.0",
        sid=SID,
        ts=ts or now(),
        inventory=Inventory(
            hostname=uid,
            ram_bytes=ram_gib * 2**30,
            disks=[
                {"device": "/dev/sda", "mount": "/", "total_bytes": disk_gb * 10**9}
            ],  # type: ignore[list-item]
            serial=serial,
            os=OsInfo(system="Linux"),
        ),
        probes=[ProbeInfo(name="host", interval_s=60, timeout_s=5)],
    )
    return topics.birth_topic(uid), dump_payload(payload)


def fault(
    uid: str,
    seq: int,
    *,
    action: str = "opened",
    code: str = "DISK_FULL",
    subject: str | None = None,
) -> tuple[str, bytes]:
    payload = FaultEvent(
        action=action,  # type: ignore[arg-type]
        code=code,
        severity="major",
        message="disk / is 97% full",
        evidence={"host.disk_pct[/]": 97.0},
        subject=subject or uid,
        sid=SID,
        seq=seq,
        ts=now(),
    )
    return topics.event_topic(uid), dump_payload(payload)


class Publisher:
    """A QoS 1 publisher that waits until the broker acknowledged everything."""

    def __init__(self, url: str, client_id: str | None = None) -> None:
        parts = urlsplit(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-pub-{os.urandom(4).hex()}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()

    def send(
        self,
        messages: list[tuple[str, bytes]],
        timeout: float = 30.0,
        rate: float | None = None,
    ) -> None:
        """Publish at QoS 1, at most ``rate`` a second, and wait for the PUBACKs."""
        infos = []
        started = time.monotonic()
        for n, (topic, payload) in enumerate(messages):
            infos.append(self.client.publish(topic, payload, qos=1))
            if rate and n % 100 == 99:
                ahead = started + (n + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def publisher(url: str) -> Iterator[Publisher]:
    pub = Publisher(url)
    try:
        yield pub
    finally:
        pub.close()


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def scalar(url: str, query: str, params: list[object] | None = None) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params or []).fetchone()
        return row[0] if row else None


@contextlib.contextmanager
def ingest_thread(
    settings: Any, client_id: str = "test-ingest", **kwargs: Any
) -> Iterator[Any]:
    """Ingest running in this process, with the real tickets service."""
    from edufleet_collector.ingest.consumer import Ingest, IngestOptions

    options = IngestOptions.from_settings(settings, client_id=client_id, **kwargs)
    ingest = Ingest(settings, options)
    thread = threading.Thread(target=ingest.run, daemon=True)
    thread.start()
    try:
        wait_for(ingest.ready, 10, "ingest to connect and subscribe")
        yield ingest
    finally:
        ingest.stop.set()
        thread.join(20)


class IngestProcess:
    """``edufleet ingest`` as a real subprocess, which a test may kill -9."""

    def __init__(
        self, env: dict[str, str], client_id: str, log_path: Path, *args: str
    ) -> None:
        self.env = env
        self.client_id = client_id
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self._subscribed_before = 0

    def start(self, wait: bool = True) -> None:
        """Start the process; by default wait until its subscriptions are in place."""
        self._subscribed_before = self._subscriptions()
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edufleet_collector.cli",
                "ingest",
                "--client-id",
                self.client_id,
                *self.args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_subscribed()

    def _subscriptions(self) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text().count("lane subscribed to")

    def wait_subscribed(self) -> None:
        """Wait until both of ingest's connections (lanes) have subscribed."""
        wait_for(
            lambda: self._subscriptions() >= self._subscribed_before + 2,
            timeout=30,
            what=f"ingest {self.client_id!r} to subscribe",
        )

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
