"""Store-and-forward: a local SQLite queue of messages waiting for the broker.

The database runs in WAL mode. Events are written with ``synchronous=FULL``
so an acknowledged write survives power loss; telemetry with ``NORMAL``,
which survives a killed process and may lose the last samples on power loss.

Two priorities: events (faults, inventory changes, command results) go out
before telemetry. Each priority replays in insertion order. A message leaves
the queue only when the broker acknowledged it (``ack``).

The queue is bounded by a disk quota. When a new message would exceed it, old
telemetry is thinned first (every other sample of the oldest half, repeatedly);
events are never dropped, even past the quota.

Sequence numbers are allocated per session inside the same transaction that
stores the message, and persisted, so they only ever increase.

``MemoryOutbox`` has the same take/ack interface without a disk, for callers
that need no persistence (the fleet simulator).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from edufleet_agent.errors import QueueError
from edufleet_protocol.models import MAX_PAYLOAD_BYTES, MAX_SAMPLES

log = logging.getLogger("edufleet.agent.queue")

EVENT: Final = 0
TELEMETRY: Final = 1
ROW_OVERHEAD: Final = 96  # bytes per row beyond the payload, for the quota
BATCH_BYTES: Final = MAX_PAYLOAD_BYTES - 4096

Priority = Literal[0, 1]


@dataclass(frozen=True)
class Outgoing:
    """One MQTT message ready to publish, and the queue rows it carries."""

    ids: tuple[int, ...]
    topic: str
    payload: bytes
    priority: int = EVENT
    qos: int = 1
    retain: bool = False


class Outbox(Protocol):
    """A source of messages for the publisher."""

    def take(self, limit: int) -> list[Outgoing]:
        """Up to ``limit`` messages not handed out yet, in delivery order."""
        ...

    def ack(self, item: Outgoing) -> None:
        """The broker acknowledged ``item``: forget it."""
        ...

    def rewind(self) -> None:
        """Hand out again everything not acknowledged (a new MQTT client)."""
        ...


def telemetry_message(samples: Iterable[bytes]) -> bytes:
    """A ``Telemetry`` payload from already-serialised samples."""
    return b'{"v":1,"samples":[' + b",".join(samples) + b"]}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (key TEXT PRIMARY KEY, state TEXT NOT NULL);
"""


class Queue:
    """The SQLite store-and-forward queue of one agent. Thread-safe."""

    def __init__(
        self, path: Path, *, quota_bytes: int, sid: str, batch: int = 100
    ) -> None:
        self.path = path
        self.quota_bytes = quota_bytes
        self.sid = sid
        self.batch = max(1, min(batch, MAX_SAMPLES))
        self._lock = threading.Lock()
        self._cursor = {EVENT: 0, TELEMETRY: 0}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA cache_size=-256")  # KiB; the agent is small
            # Keep the write-ahead log small beside the quota: checkpoint
            # after a quarter of the quota, and truncate the log afterwards.
            wal_bytes = max(64 * 1024, min(quota_bytes // 4, 4 * 1024 * 1024))
            self._db.execute(f"PRAGMA wal_autocheckpoint={wal_bytes // 4096}")
            self._db.execute(f"PRAGMA journal_size_limit={wal_bytes}")
            self._db.executescript(_SCHEMA)
            self._used = self._measure()
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open queue database {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- sizes ---------------------------------------------------------------

    def _measure(self) -> int:
        row = self._db.execute(
            "SELECT coalesce(sum(length(payload) + length(topic)), 0) + count(*) * ? "
            "FROM outbox",
            (ROW_OVERHEAD,),
        ).fetchone()
        return int(row[0])

    @property
    def used_bytes(self) -> int:
        return self._used

    def depth(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT priority, count(*) FROM outbox GROUP BY priority"
            ).fetchall()
        counts = dict(rows)
        return {"events": counts.get(EVENT, 0), "telemetry": counts.get(TELEMETRY, 0)}

    # --- writing -------------------------------------------------------------

    def put(
        self,
        items: Iterable[tuple[Priority, str, Callable[[int], bytes]]],
        *,
        faults: Mapping[str, str | None] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> list[int]:
        """Store messages built by ``make(seq)``, with fault states, atomically.

        Returns the sequence numbers given to the messages.
        """
        items = list(items)
        durable = any(priority == EVENT for priority, _, _ in items) or bool(faults)
        seqs: list[int] = []
        with self._lock:
            try:
                self._db.execute(
                    f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}"
                )
                self._db.execute("BEGIN IMMEDIATE")
                added = 0
                for priority, topic, make in items:
                    seq = self._next_seq()
                    payload = make(seq)
                    self._db.execute(
                        "INSERT INTO outbox (priority, topic, payload) "
                        "VALUES (?, ?, ?)",
                        (priority, topic, payload),
                    )
                    added += len(payload) + len(topic) + ROW_OVERHEAD
                    seqs.append(seq)
                for key, state in (faults or {}).items():
                    if state is None:
                        self._db.execute("DELETE FROM faults WHERE key = ?", (key,))
                    else:
                        self._db.execute(
                            "INSERT INTO faults (key, state) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                            (key, state),
                        )
                for key, value in (meta or {}).items():
                    self._set_meta(key, value)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise QueueError(f"cannot write to queue {self.path}: {exc}") from exc
            self._used += added
            if self._used > self.quota_bytes:
                self._enforce_quota()
        return seqs

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback after a failed write found no transaction")

    def _next_seq(self) -> int:
        key = f"seq:{self.sid}"
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)
        ).fetchone()
        seq = int(row[0]) + 1 if row else 1
        self._set_meta(key, str(seq))
        return seq

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _enforce_quota(self) -> None:
        """Thin old telemetry until the queue fits its quota. Holds the lock."""
        dropped = 0
        while self._used > self.quota_bytes:
            rows = self._db.execute(
                "SELECT id, length(payload) + length(topic) FROM outbox "
                "WHERE priority = ? ORDER BY id LIMIT "
                "(SELECT max(2, count(*) / 2) FROM outbox WHERE priority = ?)",
                (TELEMETRY, TELEMETRY),
            ).fetchall()
            if not rows:
                break
            victims = rows[::2] if len(rows) > 1 else rows
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "DELETE FROM outbox WHERE id = ?", [(i,) for i, _ in victims]
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                log.warning("could not thin the queue to its quota: %s", exc)
                return
            dropped += len(victims)
            self._used -= sum(size + ROW_OVERHEAD for _, size in victims)
        if dropped:
            log.warning(
                "queue reached its quota of %d bytes: dropped %d old telemetry "
                "samples (every other one of the oldest)",
                self.quota_bytes,
                dropped,
            )
        if self._used > self.quota_bytes:
            log.warning(
                "queue holds %d bytes of events, over its %d-byte quota; events "
                "are kept until delivered",
                self._used,
                self.quota_bytes,
            )

    # --- reading -------------------------------------------------------------

    def take(self, limit: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, retain FROM outbox "
                "WHERE priority = ? AND id > ? ORDER BY id LIMIT ?",
                (EVENT, self._cursor[EVENT], limit),
            ).fetchall()
            for row_id, topic, payload, retain in rows:
                out.append(
                    Outgoing((row_id,), topic, bytes(payload), EVENT, 1, bool(retain))
                )
                self._cursor[EVENT] = row_id
            if len(out) < limit:
                out.extend(self._take_telemetry(limit - len(out)))
        return out

    def _take_telemetry(self, limit: int) -> list[Outgoing]:
        rows = self._db.execute(
            "SELECT id, topic, payload FROM outbox "
            "WHERE priority = ? AND id > ? ORDER BY id LIMIT ?",
            (TELEMETRY, self._cursor[TELEMETRY], limit * self.batch),
        ).fetchall()
        out: list[Outgoing] = []
        group: list[tuple[int, str, bytes]] = []

        def flush() -> None:
            if group:
                message = telemetry_message(p for _, _, p in group)
                ids = tuple(i for i, _, _ in group)
                out.append(Outgoing(ids, group[0][1], message, TELEMETRY))
                self._cursor[TELEMETRY] = ids[-1]
                group.clear()

        size = 0
        for row_id, topic, blob in rows:
            payload = bytes(blob)
            full = len(group) >= self.batch or size + len(payload) > BATCH_BYTES
            if group and (full or topic != group[0][1]):
                flush()
                size = 0
                if len(out) >= limit:
                    break
            group.append((row_id, topic, payload))
            size += len(payload) + 1
        if len(out) < limit:
            flush()
        return out

    def ack(self, item: Outgoing) -> None:
        with self._lock:
            try:
                marks = ",".join("?" * len(item.ids))
                sizes = self._db.execute(
                    "SELECT coalesce(sum(length(payload) + length(topic)), 0), "
                    f"count(*) FROM outbox WHERE id IN ({marks})",
                    item.ids,
                ).fetchone()
                mode = "FULL" if item.priority == EVENT else "NORMAL"
                self._db.execute(f"PRAGMA synchronous={mode}")
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "DELETE FROM outbox WHERE id = ?", [(i,) for i in item.ids]
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise QueueError(f"cannot update queue {self.path}: {exc}") from exc
            self._used -= int(sizes[0]) + int(sizes[1]) * ROW_OVERHEAD

    def rewind(self) -> None:
        with self._lock:
            self._cursor = {EVENT: 0, TELEMETRY: 0}

    # --- state kept beside the queue --------------------------------------------

    def fault_states(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, state FROM faults").fetchall())

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = ?", (key,)
            ).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._set_meta(key, value)

    def last_seq(self) -> int:
        value = self.get_meta(f"seq:{self.sid}")
        return int(value) if value else 0

    def forget_old_sessions(self) -> None:
        """Drop sequence counters of sessions other than the current one."""
        with self._lock:
            self._db.execute(
                "DELETE FROM meta WHERE key LIKE 'seq:%' AND key != ?",
                (f"seq:{self.sid}",),
            )


class MemoryOutbox:
    """An in-memory outbox with the queue's take/ack/rewind interface.

    ``put(topic, payload)`` appends a message; nothing survives the process.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._pending: deque[Outgoing] = deque()
        self._handed: dict[int, Outgoing] = {}
        self._next = 1
        self.maxlen = maxlen
        self.dropped = 0

    def put(
        self, topic: str, payload: bytes, *, priority: int = EVENT, retain: bool = False
    ) -> None:
        with self._lock:
            if len(self._pending) + len(self._handed) >= self.maxlen:
                self.dropped += 1
                return
            self._pending.append(
                Outgoing((self._next,), topic, payload, priority, 1, retain)
            )
            self._next += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._handed)

    def take(self, limit: int) -> list[Outgoing]:
        with self._lock:
            out: list[Outgoing] = []
            while self._pending and len(out) < limit:
                item = self._pending.popleft()
                self._handed[item.ids[0]] = item
                out.append(item)
            return out

    def ack(self, item: Outgoing) -> None:
        with self._lock:
            self._handed.pop(item.ids[0], None)

    def rewind(self) -> None:
        with self._lock:
            again = sorted(self._handed.values(), key=lambda item: item.ids[0])
            self._handed.clear()
            self._pending.extendleft(reversed(again))
