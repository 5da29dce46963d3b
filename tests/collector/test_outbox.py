"""Outbox delivery to real local receivers: HTTP, SMTP, and a crash mid-send.

The WeCom and DingTalk robots cannot run here; a local HTTP server stands in
for them and checks the request format and signature they require.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from ticket_world import World, build_world, local

from edufleet_collector.backoff import Backoff
from edufleet_collector.notify.channels import (
    DingTalkSender,
    EmailSender,
    WebhookSender,
    WeComSender,
    sign_webhook,
)
from edufleet_collector.notify.outbox import deliver_due, enqueue
from edufleet_collector.tickets import service
from edufleet_collector.tickets.model import TicketConfig

QUICK = Backoff(initial=1.0, maximum=1.0)


class Receiver:
    """A local HTTP endpoint that records requests and fails the first N."""

    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.fail_first = fail_first
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.on_request: Any = None
        self.answer: dict[str, Any] = {"ok": True}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                if receiver.on_request is not None:
                    receiver.on_request()
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(receiver.status if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(receiver.answer).encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def keys(self) -> list[str]:
        return [r["headers"].get("Idempotency-Key", "") for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _queue_one(conn, world: World, now: datetime) -> int:  # type: ignore[no-untyped-def]
    ticket = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["projector"],
        actor="reporter",
        now=now,
    )
    conn.commit()
    return ticket.id


def _status(conn, ticket_id: int) -> tuple[str, int, str]:  # type: ignore[no-untyped-def]
    row = conn.execute(
        "SELECT status, attempts, last_error FROM notifications WHERE ticket_id = %s",
        [ticket_id],
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), str(row[2])


def test_webhook_delivery_retries_until_the_receiver_answers(
    conn, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    receiver.fail_first = 2
    world = build_world(conn, receiver_url=receiver.url)
    now = local(2026, 9, 14, 9, 0)
    ticket_id = _queue_one(conn, world, now)
    senders = {"webhook": WebhookSender(httpx.Client(timeout=5))}

    for step in range(3):
        report = deliver_due(
            conn,
            senders,
            owner="w",
            now=now + timedelta(seconds=2 * step),
            backoff=QUICK,
        )
        assert report.sent == (1 if step == 2 else 0)
    assert _status(conn, ticket_id) == ("sent", 3, "")
    assert len(set(receiver.keys())) == 1 and len(receiver.requests) == 3

    request = receiver.requests[-1]
    assert request["path"] == "/engineers"
    stamp = request["headers"]["X-Edufleet-Timestamp"]
    assert request["headers"]["X-Edufleet-Signature"] == sign_webhook(
        "s3cret", stamp, request["body"]
    )
    payload = json.loads(request["body"])
    assert payload["event"] == "dispatched"
    assert payload["ticket"]["id"] == ticket_id


def test_failing_notification_goes_to_dead_letters(conn, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.fail_first = 100
    world = build_world(conn, receiver_url=receiver.url)
    now = local(2026, 9, 14, 9, 0)
    ticket_id = _queue_one(conn, world, now)
    senders = {"webhook": WebhookSender(httpx.Client(timeout=5))}
    for step in range(4):
        deliver_due(
            conn,
            senders,
            owner="w",
            now=now + timedelta(seconds=2 * step),
            max_attempts=3,
            backoff=QUICK,
        )
    status, attempts, error = _status(conn, ticket_id)
    assert (status, attempts) == ("dead", 3)
    assert "503" in error
    assert len(receiver.requests) == 3


def test_client_error_is_dead_at_once(conn, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.fail_first, receiver.status = 100, 404
    world = build_world(conn, receiver_url=receiver.url)
    now = local(2026, 9, 14, 9, 0)
    ticket_id = _queue_one(conn, world, now)
    deliver_due(conn, {"webhook": WebhookSender(httpx.Client())}, owner="w", now=now)
    assert _status(conn, ticket_id)[:2] == ("dead", 1)


def test_crash_between_send_and_commit_resends_with_the_same_key(
    conn, receiver: Receiver, database_url: str
) -> None:
    world = build_world(conn, receiver_url=receiver.url)
    ticket_id = _queue_one(conn, world, local(2026, 9, 14, 9, 0))
    script = (
        "import sys, httpx\n"
        "from datetime import timedelta\n"
        "from psycopg_pool import ConnectionPool\n"
        "from edufleet_collector.notify.channels import WebhookSender\n"
        "from edufleet_collector.worker.runner import Worker, WorkerOptions\n"
        "pool = ConnectionPool(sys.argv[1], min_size=1, max_size=1)\n"
        "worker = Worker(pool, {'webhook': WebhookSender(httpx.Client(timeout=60))},\n"
        "    options=WorkerOptions(lease=timedelta(seconds=1)), owner='doomed')\n"
        "worker.deliver()\n"
    )
    doomed = subprocess.Popen([sys.executable, "-c", script, database_url])
    # The receiver gets the request, then the worker dies before it can commit.
    receiver.on_request = lambda: os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    receiver.on_request = None
    assert len(receiver.requests) == 1
    assert _status(conn, ticket_id)[:2] == ("sending", 1)

    later = datetime.now(UTC) + timedelta(seconds=2)
    report = deliver_due(
        conn, {"webhook": WebhookSender(httpx.Client())}, owner="heir", now=later
    )
    assert report.sent == 1
    assert _status(conn, ticket_id)[:2] == ("sent", 2)
    keys = receiver.keys()
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]
    # The receiver dedupes on the key: one logical message.
    assert len({json.loads(r["body"])["id"] for r in receiver.requests}) == 1


def test_live_lease_is_not_taken_over(conn, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    world = build_world(conn, receiver_url=receiver.url)
    now = local(2026, 9, 14, 9, 0)
    _queue_one(conn, world, now)
    from edufleet_collector.notify.outbox import claim

    taken = claim(conn, owner="a", now=now, lease=timedelta(minutes=2))
    assert len(taken) == 1
    assert (
        claim(
            conn, owner="b", now=now + timedelta(minutes=1), lease=timedelta(minutes=2)
        )
        == []
    )
    again = claim(
        conn, owner="b", now=now + timedelta(minutes=3), lease=timedelta(minutes=2)
    )
    assert [m.idempotency_key for m in again] == [taken[0].idempotency_key]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def test_email_goes_to_a_local_smtp_server(conn) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        world = build_world(conn)
        now = local(2026, 9, 14, 9, 0)
        ticket = service.create_ticket(
            conn,
            source="qr",
            device_id=world.devices["projector"],
            actor="reporter",
            now=now,
            config=TicketConfig(email_engineers=True),
        )
        conn.commit()
        sender = EmailSender(
            host="127.0.0.1", port=port, sender="edufleet@example.org", starttls=False
        )
        report = deliver_due(conn, {"email": sender}, owner="w", now=now)
        assert report.sent == 1
        deadline = time.monotonic() + 5
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.rcpt_tos == ["primary@example.org"]
    text = envelope.content.decode()
    assert f"edufleet-t{ticket.id}-" in text
    assert "Message-ID: <edufleet-t" in text


def test_wecom_and_dingtalk_robots_get_their_formats(conn, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.answer = {"errcode": 0, "errmsg": "ok"}
    now = local(2026, 9, 14, 9, 0)
    for kind in ("wecom", "dingtalk"):
        enqueue(
            conn,
            event="dispatched",
            channel=kind,
            target=f"{receiver.url}/{kind}?key=k",
            idempotency_key=f"k-{kind}",
            now=now,
            subject="新派单",
            body="**新派单** 301",
        )
    conn.commit()
    frozen = 1_790_000_000.0
    senders = {
        "wecom": WeComSender(httpx.Client()),
        "dingtalk": DingTalkSender(httpx.Client(), clock=lambda: frozen),
    }
    report = deliver_due(conn, senders, owner="w", now=now)
    assert report.sent == 2
    wecom, dingtalk = receiver.requests
    assert json.loads(wecom["body"]) == {
        "msgtype": "markdown",
        "markdown": {"content": "**新派单** 301"},
    }
    body = json.loads(dingtalk["body"])
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "新派单"
    # Without a secret the DingTalk URL is used as given.
    assert "sign=" not in dingtalk["path"]


def test_dingtalk_signs_with_timestamp_and_secret(receiver: Receiver) -> None:
    from edufleet_collector.notify.outbox import Message

    receiver.answer = {"errcode": 0}
    frozen = 1_790_000_000.0
    message = Message(
        id=1,
        ticket_id=None,
        event="e",
        channel="dingtalk",
        target=f"{receiver.url}/robot/send?access_token=abc",
        secret="SECxyz",
        recipient="",
        subject="s",
        body="b",
        payload={},
        idempotency_key="k",
        attempts=1,
    )
    DingTalkSender(httpx.Client(), clock=lambda: frozen).send(message)
    query = urllib.parse.parse_qs(
        urllib.parse.urlsplit(receiver.requests[0]["path"]).query
    )
    stamp = int(frozen * 1000)
    expected = base64.b64encode(
        hmac.new(b"SECxyz", f"{stamp}\nSECxyz".encode(), hashlib.sha256).digest()
    ).decode()
    assert query["timestamp"] == [str(stamp)]
    assert query["sign"] == [expected]
    assert query["access_token"] == ["abc"]


def test_robot_refusal_is_retried(conn, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.answer = {"errcode": 45009, "errmsg": "api freq out of limit"}
    now = local(2026, 9, 14, 9, 0)
    enqueue(
        conn,
        event="e",
        channel="wecom",
        target=f"{receiver.url}/w",
        idempotency_key="k1",
        now=now,
        body="x",
    )
    conn.commit()
    report = deliver_due(
        conn, {"wecom": WeComSender(httpx.Client())}, owner="w", now=now
    )
    assert report.retried == 1
    assert "45009" in report.errors[0]


def test_two_workers_deliver_each_notification_once(
    conn, receiver: Receiver, database_url: str
) -> None:
    import psycopg

    now = local(2026, 9, 14, 9, 0)
    for i in range(30):
        enqueue(
            conn,
            event="e",
            channel="webhook",
            target=f"{receiver.url}/hook",
            idempotency_key=f"race-{i}",
            now=now,
            payload={"n": i},
        )
    conn.commit()
    barrier = threading.Barrier(2)

    def work(owner: str) -> None:
        with psycopg.connect(database_url) as own:
            sender = WebhookSender(httpx.Client(timeout=5))
            barrier.wait()
            sent = True
            while sent:  # until this worker finds nothing left to claim
                sent = bool(
                    deliver_due(
                        own, {"webhook": sender}, owner=owner, now=now, limit=3
                    ).sent
                )

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = receiver.keys()
    assert sorted(keys) == sorted(f"race-{i}" for i in range(30))
    sent = conn.execute(
        "SELECT count(*) FROM notifications WHERE status = 'sent' AND attempts = 1"
    ).fetchone()
    assert sent == (30,)


def test_reporter_phone_is_erased_from_delivered_notifications(
    conn, receiver: Receiver
) -> None:
    from edufleet_collector.notify.outbox import erase_delivered_contacts

    world = build_world(conn, receiver_url=receiver.url)
    now = local(2026, 9, 14, 9, 0)
    ticket = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["projector"],
        actor="r",
        now=now,
        reporter_phone="13912345678",
    )
    service.transition(conn, ticket.id, "accept", "eng", "", now)
    conn.commit()
    deliver_due(conn, {"webhook": WebhookSender(httpx.Client())}, owner="w", now=now)
    sms = [r for r in receiver.requests if r["path"] == "/reporters"]
    assert len(sms) == 1
    assert json.loads(sms[0]["body"])["phone"] == "13912345678"
    assert f"/t/{ticket.status_token}" in json.loads(sms[0]["body"])["link"]

    assert erase_delivered_contacts(conn, before=now) == 0
    assert erase_delivered_contacts(conn, before=now + timedelta(days=1)) == 1
    left = conn.execute(
        "SELECT count(*) FROM notifications WHERE payload::text LIKE '%%13912345678%%' "
        "OR recipient LIKE '%%13912345678%%' OR body LIKE '%%13912345678%%'"
    ).fetchone()
    assert left == (0,)


def test_malformed_channel_url_is_dead_at_once(conn) -> None:  # type: ignore[no-untyped-def]
    now = local(2026, 9, 14, 9, 0)
    enqueue(
        conn,
        event="e",
        channel="webhook",
        target="ftp://example.org/hook",
        idempotency_key="bad-url",
        now=now,
    )
    conn.commit()
    report = deliver_due(
        conn, {"webhook": WebhookSender(httpx.Client())}, owner="w", now=now
    )
    assert report.dead == 1
    assert "not valid" in report.errors[0]
