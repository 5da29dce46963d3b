"""The transactional outbox of notifications, and its delivery.

A notification row is written in the same transaction as the ticket change
that causes it, so a change is never committed without its notification nor a
notification sent for a change that was rolled back.

Delivery guarantee: **at least once, with a stable idempotency key.** A worker
claims due rows by marking them ``sending`` with a lease (committed), sends,
then marks them ``sent`` in a second transaction. If the worker dies between
the send and that commit, the lease runs out and another worker sends the
same row again, carrying the same idempotency key (the ``Idempotency-Key``
header of a webhook, the ``Message-ID`` of an e-mail), so a receiver that
deduplicates on it sees one logical message. Robots of WeCom and DingTalk do
not deduplicate; a crash in that window can show their group one message twice.
A row that fails ``max_attempts`` times is moved to the dead-letter state with
its last error, for a human to look at.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from ..backoff import Backoff
from ..db import Conn

log = logging.getLogger("edufleet.collector.notify")

DEFAULT_BACKOFF = Backoff(initial=30.0, maximum=3600.0, multiplier=2.0)


@dataclass(frozen=True)
class Message:
    """One claimed notification, with the channel's secret joined in."""

    id: int
    ticket_id: int | None
    event: str
    channel: str
    target: str
    secret: str
    recipient: str
    subject: str
    body: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int


class DeliveryError(Exception):
    """A send failed; ``permanent`` failures go to the dead letters at once."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    def send(self, message: Message) -> None:
        """Deliver the message or raise DeliveryError."""


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def enqueue(
    conn: Conn,
    *,
    event: str,
    channel: str,
    target: str,
    idempotency_key: str,
    now: datetime,
    ticket_id: int | None = None,
    channel_id: int | None = None,
    recipient: str = "",
    subject: str = "",
    body: str = "",
    payload: Mapping[str, Any] | None = None,
) -> int | None:
    """Queue one notification; a repeated idempotency key is ignored (returns None)."""
    row = conn.execute(
        """
        INSERT INTO notifications
            (ticket_id, event, channel, channel_id, target, recipient, subject,
             body, payload, idempotency_key, next_attempt_at, created_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
        """,
        [
            ticket_id,
            event,
            channel,
            channel_id,
            target,
            recipient,
            subject,
            body,
            Jsonb(dict(payload or {})),
            idempotency_key,
            now,
            now,
        ],
    ).fetchone()
    return int(row[0]) if row else None


def claim(
    conn: Conn, *, owner: str, now: datetime, lease: timedelta, limit: int = 20
) -> list[Message]:
    """Take due rows (and rows whose lease ran out) for sending; commits the claim."""
    with conn.transaction():
        rows = conn.execute(
            """
            WITH due AS (
                SELECT id FROM notifications
                WHERE (status = 'pending' AND next_attempt_at <= %(now)s)
                   OR (status = 'sending' AND lease_until <= %(now)s)
                ORDER BY next_attempt_at
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE notifications n
            SET status = 'sending', lease_until = %(lease)s, lease_owner = %(owner)s,
                attempts = n.attempts + 1
            FROM due
            WHERE n.id = due.id
            RETURNING n.id, n.ticket_id, n.event, n.channel, n.target,
                COALESCE((SELECT c.secret FROM notification_channels c
                          WHERE c.id = n.channel_id), ''),
                n.recipient, n.subject, n.body, n.payload, n.idempotency_key,
                n.attempts
            """,
            {"now": now, "limit": limit, "lease": now + lease, "owner": owner},
        ).fetchall()
    return [Message(*r) for r in sorted(rows, key=lambda r: int(r[0]))]


def mark_sent(conn: Conn, message_id: int, *, owner: str, now: datetime) -> bool:
    """Record a successful send; False when another worker has taken the row over."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE notifications SET status = 'sent', sent_at = %s, "
            "lease_until = NULL, "
            "last_error = '' WHERE id = %s AND status = 'sending' AND lease_owner = %s "
            "RETURNING id",
            [now, message_id, owner],
        ).fetchone()
    return row is not None


def mark_failed(
    conn: Conn,
    message: Message,
    *,
    owner: str,
    error: str,
    permanent: bool,
    now: datetime,
    max_attempts: int,
    backoff: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
) -> str:
    """Schedule a retry with backoff, or move the row to the dead letters."""
    dead = permanent or message.attempts >= max_attempts
    delay = _nth_delay(backoff, message.attempts, rng)
    with conn.transaction():
        conn.execute(
            """
            UPDATE notifications
            SET status = %s, lease_until = NULL, last_error = %s,
                next_attempt_at = %s, dead_at = %s
            WHERE id = %s AND status = 'sending' AND lease_owner = %s
            """,
            [
                "dead" if dead else "pending",
                error[:2000],
                now + timedelta(seconds=delay),
                now if dead else None,
                message.id,
                owner,
            ],
        )
    return "dead" if dead else "pending"


def _nth_delay(backoff: Backoff, attempt: int, rng: random.Random | None) -> float:
    delays = backoff.delays(rng)
    delay = next(delays)
    for _ in range(max(0, attempt - 1)):
        delay = next(delays)
    return delay


def deliver_due(
    conn: Conn,
    senders: Mapping[str, Sender],
    *,
    owner: str,
    now: datetime,
    lease: timedelta = timedelta(minutes=2),
    max_attempts: int = 8,
    backoff: Backoff = DEFAULT_BACKOFF,
    limit: int = 20,
) -> DeliveryReport:
    """Claim due notifications, send each through its channel, record the outcome."""
    report = DeliveryReport()
    for message in claim(conn, owner=owner, now=now, lease=lease, limit=limit):
        sender = senders.get(message.channel)
        try:
            if sender is None:
                raise DeliveryError(
                    f"no sender is configured for channel {message.channel!r}",
                    permanent=True,
                )
            sender.send(message)
        except DeliveryError as exc:
            state = mark_failed(
                conn,
                message,
                owner=owner,
                error=str(exc),
                permanent=exc.permanent,
                now=now,
                max_attempts=max_attempts,
                backoff=backoff,
            )
            report.errors.append(str(exc))
            if state == "dead":
                report.dead += 1
                log.error(
                    "notification %d (%s to %r) moved to dead letters after %d "
                    "attempts: %s",
                    message.id,
                    message.channel,
                    message.recipient or message.target,
                    message.attempts,
                    exc,
                )
            else:
                report.retried += 1
                log.warning(
                    "notification %d (%s) failed on attempt %d, will retry: %s",
                    message.id,
                    message.channel,
                    message.attempts,
                    exc,
                )
            continue
        if mark_sent(conn, message.id, owner=owner, now=now):
            report.sent += 1
        else:
            log.warning(
                "notification %d was sent but its lease had passed to another "
                "worker; the receiver dedupes on key %r",
                message.id,
                message.idempotency_key,
            )
    return report


def erase_delivered_contacts(conn: Conn, *, before: datetime) -> int:
    """Blank the phone numbers in notifications finished before ``before``.

    Messages to reporters carry their phone number (for an SMS gateway); once
    a message is sent or dead and old enough, the number has no further use.
    Returns how many rows were erased.
    """
    rows = conn.execute(
        """
        UPDATE notifications
        SET recipient = '', body = '', payload = payload - 'phone' - 'text'
        WHERE payload ? 'phone' AND status IN ('sent', 'dead')
          AND created_at < %s
        RETURNING id
        """,
        [before],
    ).fetchall()
    if rows:
        log.info("erased the reporters' phone numbers of %d notifications", len(rows))
    return len(rows)
