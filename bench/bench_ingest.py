"""Measure ingest end to end: publishers -> Mosquitto -> edufleet ingest -> PostgreSQL.

Creates a fresh database on the server named by EDUFLEET_DATABASE_URL, seeds
10,000 devices with plain INSERTs, and uses the broker of EDUFLEET_MQTT_URL
(``make bench-ingest`` starts private ones of both). Publisher processes
send single-sample telemetry messages (QoS 1, about 330 bytes, the publish
time as the sample's timestamp) for the registered devices, through the lean
wire publisher of ``wirepub.py`` so that load generation takes little of the
CPU that the broker, ingest and PostgreSQL share. Every count is of what
arrived: publishers count broker acknowledgements, ingest is counted in the
database.

Phases, all in one run:

1. raw COPY ceiling: the same rows COPYed straight into ``telemetry``, then
   ingest's own decode-and-write path on as many messages, in this process;
2. broker ceilings, with subscribers that discard everything through the
   same MQTT client and receive window as ingest: beside unpaced publishers,
   and emptying a backlog queued while they were offline;
3. ingest capacity: the broker queues a backlog for the stopped ingest
   sessions, then ``edufleet ingest`` (real subprocesses) empties it alone,
   counted in the database: the rate of catching up after an outage;
4. paced run: publishers at ``--rate`` for ``--seconds`` (at least 60 for the
   figures of record); sustained messages/s and samples/s counted in the
   database, CPU per 1,000 messages of ingest, broker, database and
   publishers, and latency: a tracer device publishes 50 messages/s and a
   poller records when each becomes visible (committed), and a fault tracer
   publishes 5 fault events/s on distinct devices and records when each
   ticket is committed.

    .venv/bin/python bench/bench_ingest.py [--rate 10000] [--seconds 60]
        [--publishers 2] [--ingest-procs 2] [--devices 10000] [--backlog 600000]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edufleet_collector.db.migrate import migrate
from edufleet_collector.ingest.wire import IngestClient
from edufleet_collector.settings import Settings
from wirepub import WirePublisher

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
PAYLOAD = (
    '{"v":1,"samples":[{"sid":"%s","seq":%d,"ts":"%s","metrics":{'
    '"host.cpu_pct":%.1f,"host.mem_pct":41.5,"host.disk_pct[/]":63.2,'
    '"host.uptime_s":%d,"host.load1":0.42,"net.rx_bps":120331,'
    '"net.tx_bps":20417,"host.temp_c":48.0,"host.procs":213}}]}'
)
TRACER_UID = "bench-tracer"
FAULT_DEVICES = 400
BATCH: int = Settings.model_fields["ingest_batch_size"].default
"""Rows per transaction in the ceilings: ingest's default batch size."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def mqtt_client(url: str, client_id: str) -> mqtt.Client:
    """A paho publisher for the low-rate probes (the tracers)."""
    parts = urlsplit(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(20000)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=60)
    return client


def payload(sid: str, seq: int, at: float) -> bytes:
    stamp = datetime.fromtimestamp(at, UTC).isoformat()
    return (PAYLOAD % (sid, seq, stamp, seq % 100, seq)).encode()


# --- database set-up ---


def seed(url: str, devices: int) -> None:
    """Schools of 100 devices each, the tracer and the fault tracer devices."""
    schools = max(1, devices // 100)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO regions (code, name_zh, level) VALUES ('469900', '基准省', "
            "'province')"
        )
        conn.execute(
            "INSERT INTO schools (code, name, region_code) "
            "SELECT 'B' || n, '基准学校 ' || n, '469900' FROM generate_series(1, %s) n",
            [schools + 1],
        )
        conn.execute(
            """
            INSERT INTO devices (uid, asset_tag, category, school_id)
            SELECT 'bench-' || n, 'BT-' || n, 'desktop', 1 + (n %% %s)
            FROM generate_series(0, %s - 1) n
            """,
            [schools, devices],
        )
        conn.execute(
            "INSERT INTO devices (uid, asset_tag, category, school_id) "
            "SELECT 'bench-f-' || n, 'BF-' || n, 'desktop', %s "
            "FROM generate_series(0, %s - 1) n",
            [schools + 1, FAULT_DEVICES],
        )
        conn.execute(
            "INSERT INTO devices (uid, asset_tag, category, school_id) "
            "VALUES (%s, 'BT-TRACER', 'desktop', 1)",
            [TRACER_UID],
        )


def device_id(url: str, uid: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM devices WHERE uid = %s", [uid]).fetchone()
        assert row is not None
        return int(row[0])


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        return int(row[0]) if row else 0


def copy_ceiling(url: str, rows: int, devices: int) -> float:
    """Rows/s of a raw COPY of telemetry rows in ingest's batches, then truncate."""
    now = time.time()
    received = datetime.fromtimestamp(now, UTC).isoformat()
    lines = []
    for n in range(rows):
        at = now - rows + n
        stamp = datetime.fromtimestamp(at, UTC).isoformat()
        metrics = payload("copyceiling", n, at).decode().split('"metrics":')[1][:-3]
        lines.append(
            f"{stamp}\t{1 + n % devices}\tcopyceiling\t{n + 1}\t"
            f"{metrics.replace(chr(92), chr(92) * 2)}\t{received}\n"
        )
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for offset in range(0, rows, BATCH):
            with conn.cursor().copy(
                "COPY telemetry (ts, device_id, sid, seq, metrics, received_at) "
                "FROM STDIN"
            ) as copy:
                copy.write("".join(lines[offset : offset + BATCH]))
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("TRUNCATE telemetry")
    return rows / elapsed


def write_path(url: str, rows: int, devices: int) -> tuple[float, float]:
    """Ingest's decode-and-write path alone, in this process: msg/s and CPU s/msg.

    The same batches as the ingest process writes by default, without
    the broker, so the figure isolates ingest's own work from MQTT delivery.
    """
    from edufleet_collector.calendar_store import CalendarCache  # noqa: PLC0415
    from edufleet_collector.ingest.decode import (  # noqa: PLC0415
        Decoder,
        Limits,
        Received,
        uid_of,
    )
    from edufleet_collector.ingest.devices import DeviceCache  # noqa: PLC0415
    from edufleet_collector.ingest.store import Writer  # noqa: PLC0415
    from edufleet_collector.tickets.model import DEFAULT_CONFIG  # noqa: PLC0415

    now = time.time()
    messages = [
        Received(
            n,
            1,
            f"edufleet/v1/bench-{n % devices}/telemetry",
            payload("writepath01", n + 1, now - rows / 1000 + n / 1000),
            now,
        )
        for n in range(rows)
    ]
    cache = DeviceCache()
    decoder = Decoder(Limits(256 * 1024, 300, 30 * 86400, 120))
    writer = Writer(
        calendars=CalendarCache(),
        devices_by_id=dict,
        config=DEFAULT_CONFIG,
        seen_resolution=10,
    )
    with psycopg.connect(url) as conn:
        cache.refresh(conn)
        conn.commit()
        cpu, wall = time.process_time(), time.perf_counter()
        for offset in range(0, rows, BATCH):
            chunk = messages[offset : offset + BATCH]
            with conn.transaction():
                devices_now = cache.resolve(
                    conn, {uid_of(m.topic) or "" for m in chunk}
                )
                result = writer.write(conn, decoder.decode(chunk, devices_now))
            writer.committed(result)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        conn.execute("TRUNCATE telemetry")
        conn.commit()
    return rows / wall, cpu / rows


# --- publishers and the discarding subscriber ---


@dataclass(frozen=True)
class PublishJob:
    url: str
    uids: list[str]
    rate: float | None
    """messages/s of this publisher, None for as fast as the broker takes them"""
    seconds: float
    count: int | None = None
    """stop after this many messages, if set"""


def publisher_main(job: PublishJob, sent: Any, go: Any) -> None:
    """Publish single-sample telemetry round-robin over the job's devices.

    Counts what the broker acknowledged, not what was written to the socket.
    """
    client_id = f"bench-pub-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    publisher = WirePublisher(job.url, client_id)
    rate = job.rate
    topics = [f"edufleet/v1/{u}/telemetry".encode() for u in job.uids]
    sid = f"bench{uuid.uuid4().hex[:12]}"
    go.wait()
    started = time.time()
    end = started + job.seconds
    n = 0

    def batch(room: int) -> list[tuple[bytes, bytes]]:
        nonlocal n
        at = time.time()
        if rate:
            room = min(room, int((at - started) * rate) - n)
        if job.count is not None:
            room = min(room, job.count - n)
        stamp = datetime.fromtimestamp(at, UTC).isoformat()
        first = n
        n += max(0, room)
        return [
            (
                topics[seq % len(topics)],
                (PAYLOAD % (sid, seq + 1, stamp, seq % 100, seq)).encode(),
            )
            for seq in range(first, n)
        ]

    while time.time() < end and (job.count is None or n < job.count):
        if not publisher.publish_many(batch):
            publisher.poll(0.002)
    publisher.drain(120)
    with sent.get_lock():
        sent.value += publisher.acked
    if publisher.refused or publisher.inflight:
        log(
            f"publisher {client_id}: {publisher.refused} refused, "
            f"{publisher.inflight} unacknowledged"
        )
    publisher.close()


def discard_main(
    url: str,
    received: Any,
    ready: Any,
    go: Any,
    done: Any,
    *,
    group: str,
    backlog: bool,
) -> None:
    """Subscribe like ingest does and throw every message away.

    The same client, receive window and batched acknowledgements as ingest,
    so the ceiling is the broker and the MQTT receive path, without the
    database. With ``backlog``, subscribe, go offline so the broker queues
    for the session, and come back to consume when ``go`` is set.
    """
    parts = urlsplit(url)
    client = IngestClient(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-discard-{os.getpid()}",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    acks: list[int] = []

    def on_fast_message(mid: int, topic: str, payload: bytes) -> None:
        acks.append(mid)

    client.on_fast_message = on_fast_message

    def connect(clean: bool) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = 20000
        # Only a backlog's session outlives its connection: a lingering
        # member of the shared subscription would take a share of later runs.
        properties.SessionExpiryInterval = 600 if backlog else 0
        client.connect(
            parts.hostname or "127.0.0.1",
            parts.port or 1883,
            clean_start=clean,
            properties=properties,
        )

    connect(True)
    client.subscribe(f"$share/{group}/edufleet/v1/+/telemetry", qos=1)
    if backlog:
        client.loop(0.5)
        client.disconnect()
        ready.set()
        go.wait()
        connect(False)
    else:
        ready.set()
    count = 0
    while not done.is_set():
        client.loop(timeout=0.0 if client.buffered() else 0.02)
        client.read_buffered(1000)
        if acks:
            count += len(acks)
            client.ack_many(acks)
            acks.clear()
        received.value = count
    client.disconnect()


def run_publishers(
    url: str,
    uids: list[str],
    procs: int,
    rate: float | None,
    seconds: float,
    *,
    count: int | None = None,
) -> tuple[list[mp.Process], Any, Any]:
    sent = mp.Value("q", 0)
    go = mp.Event()
    share = [uids[i::procs] for i in range(procs)]
    jobs = [
        PublishJob(
            url,
            share[i],
            rate / procs if rate else None,
            seconds,
            None if count is None else count // procs + (i < count % procs),
        )
        for i in range(procs)
    ]
    workers = [mp.Process(target=publisher_main, args=(job, sent, go)) for job in jobs]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    go.set()
    return workers, sent, go


def publish_backlog(url: str, uids: list[str], procs: int, count: int) -> int:
    """Publish ``count`` messages as fast as the broker takes them; returns acked."""
    workers, sent, _ = run_publishers(url, uids, procs, None, 600, count=count)
    join(workers)
    return int(sent.value)


def drain_rate(
    probe: Callable[[], int], start: int, count: int, *, poll: float = 0.05
) -> float:
    """Messages/s at which ``probe`` went from ``start`` to ``start + count``.

    Timed from the first message seen, so connecting is not counted.
    """
    deadline = time.monotonic() + 600
    while probe() == start and time.monotonic() < deadline:
        time.sleep(0.01)
    first, began = probe(), time.monotonic()
    while (now := probe()) < start + count and time.monotonic() < deadline:
        time.sleep(poll)
    return (now - first) / (time.monotonic() - began)


def join(workers: list[mp.Process]) -> None:
    for worker in workers:
        worker.join(180)


def rate_between(probe: Callable[[], int], warmup: float, window: float) -> float:
    time.sleep(warmup)
    first, started = probe(), time.monotonic()
    time.sleep(window)
    return (probe() - first) / (time.monotonic() - started)


class Sinks:
    """Discarding subscribers sharing one subscription, as ingest processes do."""

    def __init__(self, url: str, count: int, *, backlog: bool) -> None:
        self.counters = [mp.Value("q", 0) for _ in range(count)]
        self.go, self.done = mp.Event(), mp.Event()
        readies = [mp.Event() for _ in range(count)]
        group = f"discard{uuid.uuid4().hex[:8]}"
        self.processes = [
            mp.Process(
                target=discard_main,
                args=(url, counter, ready, self.go, self.done),
                kwargs={"group": group, "backlog": backlog},
            )
            for counter, ready in zip(self.counters, readies, strict=True)
        ]
        for process in self.processes:
            process.start()
        for ready in readies:
            ready.wait(10)
        self.ps = [psutil.Process(p.pid) for p in self.processes]

    def received(self) -> int:
        return sum(int(c.value) for c in self.counters)

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.ps)

    def stop(self) -> None:
        self.done.set()
        for process in self.processes:
            process.join(10)


def broker_ceiling(
    url: str, uids: list[str], procs: int, seconds: float, sinks: int
) -> tuple[float, float]:
    """Messages/s into discarding subscribers while publishers run unpaced.

    Also their CPU seconds per 1,000 messages.
    """
    sink = Sinks(url, sinks, backlog=False)
    workers, _, _ = run_publishers(url, uids, procs, None, seconds)
    time.sleep(3)
    cpu_start, count_start = sink.cpu(), sink.received()
    measured = rate_between(sink.received, 0, seconds - 5)
    used, count = sink.cpu() - cpu_start, sink.received() - count_start
    join(workers)
    time.sleep(1)
    sink.stop()
    return measured, used / max(1, count) * 1000


def broker_drain_ceiling(
    url: str, uids: list[str], procs: int, sinks: int, count: int
) -> float:
    """Messages/s of discarding subscribers emptying a queued backlog alone."""
    sink = Sinks(url, sinks, backlog=True)
    queued = publish_backlog(url, uids, procs, count)
    sink.go.set()
    rate = drain_rate(sink.received, 0, queued)
    sink.stop()
    return rate


# --- ingest ---


class IngestProcs:
    """``edufleet ingest`` subprocesses with stable client ids, restartable."""

    def __init__(self, db_url: str, mqtt_url: str, count: int, folder: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ps: list[psutil.Process] = []
        self.logs = [folder / f"ingest-{n}.log" for n in range(count)]
        self.env = dict(
            os.environ,
            EDUFLEET_DATABASE_URL=db_url,
            EDUFLEET_MQTT_URL=mqtt_url,
            EDUFLEET_LOG_LEVEL="INFO",
        )

    def start(self) -> None:
        def subscribed(path: Path) -> int:
            text = path.read_text() if path.exists() else ""
            return text.count("lane subscribed to")

        before = [subscribed(path) for path in self.logs]
        for n, path in enumerate(self.logs):
            with open(path, "ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "edufleet_collector.cli",
                            "ingest",
                            "--client-id",
                            f"bench-ingest-{n}",
                        ],
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        self.ps = [psutil.Process(p.pid) for p in self.procs]
        deadline = time.monotonic() + 60
        while any(
            # One line for each of ingest's two connections.
            subscribed(path) < n + 2
            for path, n in zip(self.logs, before, strict=True)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("ingest did not subscribe within 60 s")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs, self.ps = [], []


def listener_pid(port: int) -> int | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


class CpuMeter:
    """CPU seconds of the parts of the pipeline, between two readings.

    The broker and the database server are found by their listening ports;
    the database counts its postmaster and every backend alive at both
    readings.
    """

    def __init__(self, parts: dict[str, Callable[[], list[int]]]) -> None:
        self.parts = parts
        self.start: dict[str, dict[int, float]] = {}

    @staticmethod
    def _read(pids: list[int]) -> dict[int, float]:
        out = {}
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                out[pid] = sum(psutil.Process(pid).cpu_times()[:2])
        return out

    def begin(self) -> None:
        self.start = {name: self._read(pids()) for name, pids in self.parts.items()}

    def end(self) -> dict[str, float]:
        used = {}
        for name, pids in self.parts.items():
            now = self._read(pids())
            first = self.start[name]
            used[name] = sum(now[p] - first[p] for p in now if p in first)
        return used


def server_pids(url: str) -> list[int]:
    """The process listening on the URL's port, and its children."""
    parts = urlsplit(url)
    pid = listener_pid(parts.port or (5432 if "postgres" in parts.scheme else 1883))
    if pid is None:
        return []
    with contextlib.suppress(psutil.Error):
        return [pid, *(c.pid for c in psutil.Process(pid).children())]
    return []


class Probe(threading.Thread, ABC):
    """Publishes one message per ``period``; a poller notes when each is committed."""

    period = 0.02
    limit = 1_000_000

    def __init__(self, mqtt_url: str, db_url: str) -> None:
        super().__init__(daemon=True)
        self.mqtt_url, self.db_url = mqtt_url, db_url
        self.published: dict[Any, float] = {}
        self.seen: dict[Any, float] = {}
        self.stop = threading.Event()
        self.stop_poll = False

    @abstractmethod
    def message(self, n: int, at: float) -> tuple[Any, str, bytes]:
        """The key, topic and payload of the n-th message."""

    @abstractmethod
    def committed(self, conn: psycopg.Connection[Any]) -> list[Any]:
        """Keys of messages that are now visible in the database."""

    def run(self) -> None:
        client = mqtt_client(
            self.mqtt_url, f"bench-{type(self).__name__}-{os.getpid()}"
        )
        client.loop_start()
        poller = threading.Thread(target=self.poll, daemon=True)
        poller.start()
        n = 0
        while not self.stop.wait(self.period) and n < self.limit:
            at = time.time()
            key, topic, body = self.message(n, at)
            self.published[key] = at
            client.publish(topic, body, qos=1)
            n += 1
        time.sleep(3)
        self.stop_poll = True
        poller.join(5)
        client.disconnect()
        client.loop_stop()

    def poll(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stop_poll:
                keys = self.committed(conn)
                at = time.time()
                for key in keys:
                    self.seen.setdefault(key, at)
                time.sleep(0.01)

    def latencies(self) -> list[float]:
        return sorted(self.seen[k] - self.published[k] for k in self.seen)


class Tracer(Probe):
    """50 telemetry messages/s on one device, found by its index on (device, ts)."""

    def __init__(self, mqtt_url: str, db_url: str, tracer_id: int) -> None:
        super().__init__(mqtt_url, db_url)
        self.tracer_id = tracer_id
        self.last = 0

    def message(self, n: int, at: float) -> tuple[Any, str, bytes]:
        topic = f"edufleet/v1/{TRACER_UID}/telemetry"
        return n + 1, topic, payload("benchtracer01", n + 1, at)

    def committed(self, conn: psycopg.Connection[Any]) -> list[Any]:
        rows = conn.execute(
            "SELECT seq FROM telemetry WHERE device_id = %s AND "
            "sid = 'benchtracer01' AND ts > to_timestamp(%s)",
            [self.tracer_id, self.published.get(self.last, 0) - 0.001],
        ).fetchall()
        seqs = [int(seq) for (seq,) in rows]
        self.last = max([self.last, *seqs])
        return seqs


class FaultTracer(Probe):
    """5 fault events/s, each on a device of its own; found by its new ticket."""

    period = 0.2
    limit = FAULT_DEVICES

    def __init__(self, mqtt_url: str, db_url: str) -> None:
        super().__init__(mqtt_url, db_url)
        self.last_ticket = 0

    def message(self, n: int, at: float) -> tuple[Any, str, bytes]:
        uid = f"bench-f-{n}"
        stamp = datetime.fromtimestamp(at, UTC).isoformat()
        body = (
            '{"v":1,"kind":"fault","action":"opened","code":"DISK_FULL",'
            '"severity":"major","message":"disk / is 97% full",'
            f'"subject":"{uid}","sid":"benchfaults1","seq":1,"ts":"{stamp}"}}'
        )
        return uid, f"edufleet/v1/{uid}/event", body.encode()

    def committed(self, conn: psycopg.Connection[Any]) -> list[Any]:
        rows = conn.execute(
            "SELECT t.id, d.uid FROM tickets t JOIN devices d "
            "ON d.id = t.device_id WHERE t.id > %s",
            [self.last_ticket],
        ).fetchall()
        self.last_ticket = max([self.last_ticket, *(int(r[0]) for r in rows)])
        return [str(r[1]) for r in rows]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def wait_drained(url: str, expected: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    count = count_rows(url)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        count = count_rows(url)
    return count


# --- main ---


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="paced messages/s")
    parser.add_argument("--seconds", type=float, default=60, help="paced run length")
    parser.add_argument("--ceiling-seconds", type=float, default=15)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--backlog", type=int, default=600_000, help="messages queued for the drains"
    )
    parser.add_argument("--ingest-procs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    server = os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_SERVER
    mqtt_url = os.environ.get("EDUFLEET_MQTT_URL") or DEFAULT_MQTT
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = with_database(server, name)
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    uids = [f"bench-{n}" for n in range(args.devices)]
    try:
        with psycopg.connect(db_url) as conn:
            migrate(conn)
        seed(db_url, args.devices)
        log(f"database {name} seeded with {args.devices:,} devices")

        copy_rate = copy_ceiling(db_url, args.copy_rows, args.devices)
        log(f"raw COPY ceiling: {copy_rate:,.0f} rows/s")
        path_rate, path_cpu = write_path(db_url, args.copy_rows, args.devices)
        log(
            f"ingest write path alone: {path_rate:,.0f} msg/s, "
            f"{path_cpu * 1e6:,.0f} us CPU per message in Python"
        )

        discard_rate, discard_cpu = broker_ceiling(
            mqtt_url, uids, args.publishers, args.ceiling_seconds, args.ingest_procs
        )
        log(
            f"broker -> discard, publishers running: {discard_rate:,.0f} msg/s, "
            f"{discard_cpu * 1000:,.1f} ms CPU per 1,000 messages"
        )
        discard_drain = broker_drain_ceiling(
            mqtt_url, uids, args.publishers, args.ingest_procs, args.backlog
        )
        log(f"broker -> discard, draining a backlog: {discard_drain:,.0f} msg/s")

        # Ingest capacity: the broker queues a backlog for the stopped ingest
        # sessions, then ingest empties it with nothing else running.
        ingest = IngestProcs(db_url, mqtt_url, args.ingest_procs, folder)
        ingest.start()
        ingest.stop()
        queued = publish_backlog(mqtt_url, uids, args.publishers, args.backlog)
        before = count_rows(db_url)
        ingest.start()
        meter = CpuMeter(
            {
                "ingest": ingest.pids,
                "broker": lambda: server_pids(mqtt_url),
                "database": lambda: server_pids(server),
            }
        )
        meter.begin()
        metered_from = count_rows(db_url)
        capacity = drain_rate(lambda: count_rows(db_url), before, queued, poll=0.5)
        drain_cpu = meter.end()
        metered = max(1, count_rows(db_url) - metered_from)
        drained = wait_drained(db_url, before + queued) - before
        log(
            f"ingest capacity, draining a backlog: {capacity:,.0f} msg/s "
            f"({drained:,} of {queued:,} queued in the database)"
        )

        before_rows = count_rows(db_url)
        paced_started = time.time()
        tracer = Tracer(mqtt_url, db_url, device_id(db_url, TRACER_UID))
        faults = FaultTracer(mqtt_url, db_url)
        workers, sent, _ = run_publishers(
            mqtt_url, uids, args.publishers, args.rate, args.seconds
        )
        meter.parts["publishers"] = lambda: [w.pid for w in workers if w.pid]
        tracer.start()
        faults.start()
        time.sleep(2)
        meter.begin()
        rows_start, t_start = count_rows(db_url), time.monotonic()
        time.sleep(args.seconds - 4)
        rows_end, t_end = count_rows(db_url), time.monotonic()
        paced_cpu = meter.end()
        tracer.stop.set()
        faults.stop.set()
        join(workers)
        tracer.join(15)
        faults.join(15)
        expected = before_rows + int(sent.value) + len(tracer.published)
        final = wait_drained(db_url, expected)
        ingest.stop()

        sustained = (rows_end - rows_start) / (t_end - t_start)
        paced_rows = max(1, rows_end - rows_start)
        lat = tracer.latencies()
        fault_lat = faults.latencies()
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                """
                SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY x)
                FROM (SELECT extract(epoch FROM received_at - ts) AS x
                      FROM telemetry WHERE ts >= to_timestamp(%s)) s
                """,
                [paced_started],
            ).fetchone()
        assert row is not None

        def per_k(used: dict[str, float], count: int) -> str:
            return ", ".join(
                f"{name} {seconds / count * 1e6:,.1f}" for name, seconds in used.items()
            )

        print()
        print(
            f"ingest benchmark ({args.ingest_procs} ingest process(es), "
            f"{args.publishers} publishers, {args.devices:,} devices, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
            "at the end)"
        )
        print(
            f"  paced run: offered {args.rate:,.0f} msg/s for {args.seconds:.0f} s; "
            f"published {int(sent.value):,}"
        )
        print(
            f"  sustained (counted in the database): {sustained:,.0f} msg/s = "
            f"{sustained:,.0f} samples/s"
        )
        print(
            f"  all arrived: {final - before_rows:,} of "
            f"{expected - before_rows:,} published rows in the database"
        )
        print(
            f"  publish -> commit latency (tracer, n={len(lat)}): "
            f"p50 {percentile(lat, 50) * 1000:,.0f} ms, "
            f"p99 {percentile(lat, 99) * 1000:,.0f} ms"
        )
        print(
            f"  publish -> ingest receipt (all rows, received_at - ts): "
            f"p50 {float(row[0]) * 1000:,.0f} ms, p99 {float(row[1]) * 1000:,.0f} ms"
        )
        print(
            f"  fault event -> committed ticket (n={len(fault_lat)}): "
            f"p50 {percentile(fault_lat, 50) * 1000:,.0f} ms, "
            f"p99 {percentile(fault_lat, 99) * 1000:,.0f} ms"
        )
        print(
            f"  CPU ms per 1,000 messages, paced: {per_k(paced_cpu, paced_rows)} "
            f"(a discarding subscriber: {discard_cpu * 1000:,.1f})"
        )
        print(
            f"  ingest capacity (draining {queued:,} queued messages): "
            f"{capacity:,.0f} msg/s; CPU ms per 1,000: {per_k(drain_cpu, metered)}"
        )
        print(
            f"  ingest decode + write path alone (no broker): {path_rate:,.0f} msg/s, "
            f"{path_cpu * 1e6:,.0f} us Python CPU per message; "
            f"{path_rate / copy_rate:.0%} of raw COPY"
        )
        print(
            f"  ceilings: broker -> {args.ingest_procs} discarding subscriber(s) "
            f"{discard_drain:,.0f} msg/s draining a backlog, "
            f"{discard_rate:,.0f} msg/s beside unpaced publishers; "
            f"raw COPY {copy_rate:,.0f} rows/s"
        )
        print(
            f"  ratios: capacity / discard ceiling = {capacity / discard_drain:.0%}, "
            f"capacity / COPY ceiling = {capacity / copy_rate:.0%}, "
            f"sustained / offered = {sustained / args.rate:.0%}"
        )
        return 0
    finally:
        if not args.keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
