"""The ingest process: MQTT in, batches to PostgreSQL, acknowledgements out.

Ingest holds two MQTT connections, each with a session of its own (lanes):

- the telemetry lane carries the bulk, device telemetry;
- the control lane carries everything else: state, births, fault events and
  command results.

The broker queues each session separately, so when ingest falls behind (a
burst, or catching up after an outage) a fault event waits behind other
events only, never behind thousands of telemetry messages; the writer also
commits waiting control messages before the next telemetry batch.

Threads share the work:

- each lane's MQTT thread runs paho's network loop: it appends each message
  to the lane's in-memory inbox, and sends the acknowledgements the writer
  queued (paho's socket is written from that thread only);
- the writer takes batches from the inboxes (by size or age), decodes them,
  writes each in one transaction and, once committed, queues the
  acknowledgement of every message of the batch on its lane;
- the silence detector runs periodically under an advisory lock, so only
  one of several ingest processes does it at a time.

Each inbox is bounded by the MQTT 5 Receive Maximum that its lane announces:
the broker sends no more unacknowledged messages than that and queues the
rest. When the database is down the writer retries the same batch with
backoff, nothing is acknowledged, and the broker keeps everything else.

Acknowledgements go out only on the connection that received the message.
After a reconnect the broker resends what was not acknowledged, so
messages of an older connection are dropped from the inbox, and a batch
committed across a reconnect is acknowledged by its redelivered copies.

Several processes with different ``--client-id`` share the load through
one shared subscription per lane. Keep each id stable: a restarted process
resumes its sessions (``<id>`` and ``<id>.control``), and the broker keeps
queueing a stopped one's share for it until the sessions expire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg import errors as pg_errors

from edufleet_protocol.topics import INGEST_SHARE_GROUP, ingest_filters, wildcard_filter

from ..backoff import Backoff, Stopped, retry
from ..calendar_store import CalendarCache
from ..db import Conn
from ..errors import EdufleetError
from ..settings import Settings
from ..tickets.model import TicketConfig
from . import metrics
from .decode import Decoder, Limits, Received, uid_of
from .devices import Device, DeviceCache
from .silence import detect_silence, prune_rejected
from .store import Writer, WriteResult
from .wire import IngestClient

log = logging.getLogger("edufleet.collector.ingest")

TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
)
DB_BACKOFF = Backoff(initial=0.2, maximum=5.0)
MQTT_BACKOFF = Backoff(initial=0.5, maximum=30.0)
READ_BURST = 1000
"""Packets read from the socket per turn of the MQTT loop at most."""
RETIRE_QUIET_SECONDS = 5.0
"""When retiring, how long without a message means the sessions are empty."""
CONTROL_RECEIVE_MAXIMUM = 1000
"""Unacknowledged control messages (state, events, ...) per process at most."""
TELEMETRY_FILTER = f"$share/{INGEST_SHARE_GROUP}/{wildcard_filter('telemetry')}"


@dataclass(eq=False)
class Lane:
    """One of ingest's MQTT connections: a session, its filters and its inbox."""

    name: str
    client_id: str
    filters: list[str]
    receive_maximum: int
    client: IngestClient
    inbox: deque[tuple[Received, int]] = field(default_factory=deque)
    """Messages received and not yet taken, with the connection they came on."""
    acks: deque[tuple[int, int, int]] = field(default_factory=deque)
    """(mid, qos, connection) of committed messages, for the MQTT thread."""
    generation: int = 0
    """Counts connections; acknowledgements of older ones are void."""
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class IngestOptions:
    client_id: str
    batch_size: int
    batch_ms: int
    max_pending: int
    retire: bool = False
    """Drain this client id's sessions, remove them from the broker, and stop."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client_id: str,
        batch_size: int | None = None,
        batch_ms: int | None = None,
        retire: bool = False,
    ) -> IngestOptions:
        return cls(
            client_id=client_id,
            batch_size=batch_size or settings.ingest_batch_size,
            batch_ms=batch_ms or settings.ingest_batch_ms,
            max_pending=settings.ingest_max_pending,
            retire=retire,
        )


class Ingest:
    """One ingest process; :meth:`run` blocks until ``stop`` is set."""

    def __init__(self, settings: Settings, options: IngestOptions) -> None:
        self.settings = settings
        self.options = options
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._stop_at: float | None = None
        self._last_batch = time.monotonic()
        """When the writer last took a batch (or a lane connected)."""
        self._conn: Conn | None = None
        self.committed = 0
        """Messages this process committed (and acknowledged), for logs and tests."""
        self.devices = DeviceCache(max_age=settings.ingest_device_cache_seconds)
        self.calendars = CalendarCache()
        self.decoder = Decoder(
            Limits(
                max_payload_bytes=settings.ingest_max_payload_bytes,
                max_clock_ahead=settings.ingest_max_clock_ahead_seconds,
                max_sample_age=settings.ingest_max_sample_age_days * 86400,
                clock_suspect=settings.ingest_clock_suspect_seconds,
            )
        )
        self.ticket_config = TicketConfig.from_settings(settings)
        self.writer = Writer(
            calendars=self.calendars,
            devices_by_id=self._devices_by_id,
            config=self.ticket_config,
            seen_resolution=settings.ingest_last_seen_resolution_seconds,
        )
        self._by_id: dict[int, Device] = {}
        control = [f for f in ingest_filters() if f != TELEMETRY_FILTER]
        self.lanes = [
            self._lane(
                "control",
                f"{options.client_id}.control",
                control,
                min(CONTROL_RECEIVE_MAXIMUM, options.max_pending),
            ),
            self._lane(
                "telemetry", options.client_id, [TELEMETRY_FILTER], options.max_pending
            ),
        ]
        """In the order the writer takes from them."""
        metrics.pending.set_function(self._pending)

    def ready(self) -> bool:
        """Whether every lane is connected and subscribed."""
        return all(lane.subscribed.is_set() for lane in self.lanes)

    def _pending(self) -> int:
        return sum(len(lane.inbox) for lane in self.lanes)

    # --- MQTT -----------------------------------------------------------------

    def _lane(
        self, name: str, client_id: str, filters: list[str], receive_maximum: int
    ) -> Lane:
        settings = self.settings
        client = IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if settings.mqtt_username:
            password = settings.mqtt_password
            client.username_pw_set(
                settings.mqtt_username,
                password.get_secret_value() if password else None,
            )
        if settings.mqtt_url.startswith("mqtts://"):
            client.tls_set(ca_certs=settings.mqtt_ca_file)
        lane = Lane(name, client_id, filters, receive_maximum, client)
        client.user_data_set(lane)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

        def on_fast_message(mid: int, topic: str, payload: bytes) -> None:
            self._receive(lane, mid, 1, topic, payload)

        client.on_fast_message = on_fast_message
        return lane

    def _connect_properties(self, lane: Lane) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.ingest_session_expiry_seconds
        props.ReceiveMaximum = lane.receive_maximum
        return props

    def _on_connect(
        self,
        client: mqtt.Client,
        lane: Lane,
        flags: Any,
        reason: Any,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            log.error(
                "broker %s refused ingest client %r: %s; check EDUFLEET_MQTT_USERNAME "
                "and EDUFLEET_MQTT_PASSWORD",
                self.settings.mqtt_url,
                lane.client_id,
                reason,
            )
            return
        lane.generation += 1
        self._last_batch = time.monotonic()  # queued messages come next
        log.info(
            "connected to %s as %r (session %s)",
            self.settings.mqtt_url,
            lane.client_id,
            "resumed" if flags.session_present else "new",
        )
        if self.options.retire:
            # No new messages for this session; what it holds still comes.
            client.unsubscribe(ingest_filters())
            log.info("retiring %r: draining what its session holds", lane.client_id)
            lane.subscribed.set()
        else:
            client.subscribe([(f, 1) for f in lane.filters])
            others = [f for f in ingest_filters() if f not in lane.filters]
            if flags.session_present:
                # A session from before the lanes were split may still hold them.
                client.unsubscribe(others)
        lane.connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        lane: Lane,
        mid: int,
        reasons: list[Any],
        properties: Any,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error(
                "broker refused %d of the ingest subscriptions of %r (%s); check "
                "the ingest identity's ACL",
                len(refused),
                lane.client_id,
                ", ".join(refused),
            )
        elif lane.filters and len(reasons) == len(lane.filters):
            lane.subscribed.set()
            log.info("%s lane subscribed to %d topic filters", lane.name, len(reasons))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        lane: Lane,
        flags: Any,
        reason: Any,
        properties: Any,
    ) -> None:
        lane.connected.clear()
        lane.subscribed.clear()
        if not self.stop.is_set():
            log.warning("%s lane disconnected from the broker: %s", lane.name, reason)

    def _on_message(
        self, client: mqtt.Client, lane: Lane, message: mqtt.MQTTMessage
    ) -> None:
        self._receive(
            lane, message.mid, message.qos, message.topic, bytes(message.payload)
        )

    def _receive(
        self, lane: Lane, mid: int, qos: int, topic: str, payload: bytes
    ) -> None:
        inbox = lane.inbox
        inbox.append((Received(mid, qos, topic, payload, time.time()), lane.generation))
        count = len(inbox)
        # Wake the writer for a full batch, or for a first message it may not
        # be timing yet.
        if count == 1 or count >= self.options.batch_size:
            self._wake.set()

    def _mqtt_loop(self, lane: Lane) -> None:
        parts = urlsplit(self.settings.mqtt_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        client = lane.client

        def connect() -> None:
            client.connect(
                host,
                port,
                keepalive=30,
                clean_start=False,
                properties=self._connect_properties(lane),
            )
            deadline = time.monotonic() + 10
            while not lane.connected.is_set():
                code = client.loop(timeout=0.2)
                if code != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    raise ConnectionError(f"the broker closed the connection ({code})")
                if time.monotonic() > deadline:
                    client.disconnect()
                    raise ConnectionError("no CONNACK from the broker within 10 s")

        while not self._closing.is_set():
            try:
                retry(
                    connect,
                    retry_on=(OSError,),
                    backoff=MQTT_BACKOFF,
                    what=f"connecting the {lane.name} lane to the broker at "
                    f"{host}:{port}",
                    logger=log,
                    stop=self._closing,
                )
            except Stopped:
                return
            code = MQTTErrorCode.MQTT_ERR_SUCCESS
            while code == MQTTErrorCode.MQTT_ERR_SUCCESS and not self._closing.is_set():
                # loop() waits for the socket, then reads one packet, writes and
                # keeps the connection alive; the rest is read in a burst.
                code = client.loop(timeout=0.0 if client.buffered() else 0.02)
                if code == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    code = client.read_buffered(READ_BURST)
                self._send_acks(lane)
            if not self._closing.is_set():
                log.warning(
                    "%s lane lost the broker connection (%s); reconnecting",
                    lane.name,
                    code,
                )
        self._send_acks(lane)
        if self.options.retire:
            # Ending the session now removes it from the broker.
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            client.disconnect(properties=props)
            log.info("session %r removed from the broker", lane.client_id)
        else:
            client.disconnect()

    def _send_acks(self, lane: Lane) -> None:
        """Acknowledge committed messages; only the lane's thread writes its socket."""
        acks = lane.acks
        if not acks:
            return
        generation = lane.generation
        batched = []
        while acks:
            mid, qos, gen = acks.popleft()
            if gen != generation:
                continue
            if qos == 1:
                batched.append(mid)
            else:
                lane.client.ack(mid, qos)
        lane.client.ack_many(batched)

    # --- database ---------------------------------------------------------------

    def _connection(self) -> Conn:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = psycopg.connect(
            self.settings.database_url,
            connect_timeout=5,
            options="-c statement_timeout=60000",
        )
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _devices_by_id(self) -> dict[int, Device]:
        return self._by_id

    def _write(self, messages: list[Received]) -> WriteResult:
        """Decode and write one batch in a transaction; retried as a whole."""
        started = time.monotonic()
        try:
            conn = self._connection()
            uids = {u for m in messages if (u := uid_of(m.topic))}
            uids |= self.decoder.subject_uids(messages)
            with conn.transaction():
                devices = self.devices.resolve(conn, uids)
                self._by_id = {devices[u].id: devices[u] for u in uids if u in devices}
                batch = self.decoder.decode(messages, devices)
                result = self.writer.write(conn, batch)
        except TRANSIENT_DB_ERRORS as exc:
            metrics.database_errors.labels(type(exc).__name__).inc()
            if isinstance(exc, psycopg.OperationalError):
                self._drop_connection()
            raise
        self.writer.committed(result)
        committed = time.time()
        metrics.commit_seconds.observe(time.monotonic() - started)
        for kind, count in batch.kinds.items():
            metrics.messages.labels(kind).inc(count)
        for rejection in result.rejections:
            metrics.rejected.labels(rejection.reason).inc()
        metrics.samples.inc(result.samples)
        metrics.duplicate_samples.inc(result.duplicates)
        metrics.tickets_opened.labels("agent").inc(result.tickets_opened)
        for ts in batch.sample_times[:: max(1, len(batch.sample_times) // 100)]:
            metrics.sample_lag_seconds.observe(committed - ts)
        return result

    # --- the batch loop -----------------------------------------------------------

    def _take(self) -> list[tuple[Received, Lane, int]]:
        """Wait for a full batch, or for the oldest message to reach its age.

        Returns the messages with their lane and the connection they came
        on, all from one lane: control messages whenever some are waiting, in
        a transaction of their own, so that a fault waits for at most the
        telemetry batch being written, never for one more.

        Once stopping, take only what arrived before the stop: the rest stays
        unacknowledged and the broker keeps it for the next start.
        """
        lanes = self.lanes
        size = self.options.batch_size
        max_age = self.options.batch_ms / 1000
        while True:
            oldest = min(
                (lane.inbox[0][0].at for lane in lanes if lane.inbox), default=None
            )
            if self.stop.is_set():
                if self._stop_at is None:
                    self._stop_at = time.time()
                if oldest is None or oldest > self._stop_at:
                    return []
                break
            if self._pending() >= size:
                break
            if oldest is None and self.options.retire and self._drained():
                return []
            if oldest is not None:
                wait = oldest + max_age - time.time()
                if wait <= 0:
                    break
            else:
                wait = 0.2
            self._wake.wait(wait)
            self._wake.clear()
        stop_at = self._stop_at
        for lane in lanes:
            inbox, generation = lane.inbox, lane.generation
            taken: list[tuple[Received, Lane, int]] = []
            while inbox and len(taken) < size:
                if stop_at is not None and inbox[0][0].at > stop_at:
                    break
                message, gen = inbox.popleft()
                if gen == generation:
                    taken.append((message, lane, gen))
            if taken:
                self._last_batch = time.monotonic()
                return taken
        return []

    def _process(self, taken: list[tuple[Received, Lane, int]]) -> None:
        messages = [message for message, _, _ in taken]
        retry(
            lambda: self._write(messages),
            retry_on=TRANSIENT_DB_ERRORS,
            backoff=DB_BACKOFF,
            what=f"writing a batch of {len(messages)} messages",
            logger=log,
            stop=self.stop,
        )
        self.committed += len(messages)
        now = time.time()
        metrics.batch_messages.observe(len(messages))
        step = max(1, len(messages) // 100)
        for message in messages[::step]:
            metrics.broker_to_commit_seconds.observe(now - message.at)
        for message, lane, gen in taken:
            if message.qos:
                lane.acks.append((message.mid, message.qos, gen))

    def _drained(self) -> bool:
        """Retiring: every lane is connected and has been quiet for a while."""
        return (
            all(lane.connected.is_set() for lane in self.lanes)
            and not self._pending()
            and time.monotonic() - self._last_batch > RETIRE_QUIET_SECONDS
        )

    def _writer_loop(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                if self.stop.is_set():
                    return
                if self.options.retire and self._drained():
                    log.info(
                        "retiring %r: %d messages drained, none for %.0f s",
                        self.options.client_id,
                        self.committed,
                        RETIRE_QUIET_SECONDS,
                    )
                    self.stop.set()
                    return
                continue
            try:
                self._process(taken)
            except Stopped:
                log.warning(
                    "stopping with %d messages unwritten; the broker redelivers them",
                    len(taken) + self._pending(),
                )
                return

    def _silence_loop(self) -> None:
        settings = self.settings
        calendars = CalendarCache()
        conn: Conn | None = None
        while not self.stop.wait(settings.silence_check_seconds):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(settings.database_url, connect_timeout=5)
                now = datetime.now(UTC)
                with conn.transaction():
                    report = detect_silence(
                        conn,
                        now=now,
                        factor=settings.silence_factor,
                        default_interval=settings.silence_default_interval_seconds,
                        calendars=calendars,
                        config=self.ticket_config,
                        slack=settings.ingest_last_seen_resolution_seconds,
                    )
                    if report.ran:
                        prune_rejected(
                            conn,
                            now=now,
                            keep_days=settings.ingest_rejected_retention_days,
                        )
            except (psycopg.Error, EdufleetError) as exc:
                log.warning("silence check failed, retried next period: %s", exc)
        if conn is not None:
            conn.close()

    # --- lifecycle --------------------------------------------------------------

    def run(self) -> None:
        """Connect, consume until ``stop`` is set, then drain and disconnect.

        Draining commits and acknowledges what arrived before the stop.
        """
        retry(
            self._connection,
            retry_on=(psycopg.OperationalError,),
            backoff=Backoff(initial=0.5, maximum=5.0, deadline=60.0),
            what="connecting to the database",
            logger=log,
        )
        threads = [
            *(
                threading.Thread(
                    target=self._mqtt_loop,
                    args=(lane,),
                    name=f"ingest-mqtt-{lane.name}",
                    daemon=True,
                )
                for lane in self.lanes
            ),
            threading.Thread(
                target=self._silence_loop, name="ingest-silence", daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            self._writer_loop()
        finally:
            self.stop.set()
            self._closing.set()
            for thread in threads:
                thread.join(timeout=10)
            self._drop_connection()
            log.info("ingest %r stopped", self.options.client_id)
