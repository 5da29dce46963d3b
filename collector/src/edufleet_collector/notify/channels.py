"""The channels notifications are delivered through.

- ``webhook``: a JSON POST of the message's payload. The body is signed with
  HMAC-SHA256 over ``<timestamp>.<body>`` using the channel's secret, sent as
  ``X-Edufleet-Signature: sha256=<hex>`` with ``X-Edufleet-Timestamp``, and the
  outbox row's ``Idempotency-Key`` header, on which receivers deduplicate.
- ``wecom``: a WeCom (企业微信) group robot; ``{"msgtype": "markdown", ...}``
  posted to the robot's webhook URL.
- ``dingtalk``: a DingTalk (钉钉) robot; with a secret, the URL gets
  ``timestamp`` and ``sign`` (base64 of HMAC-SHA256 over
  ``"<timestamp>\\n<secret>"``) as its signing scheme requires.
- ``email``: SMTP via smtplib, STARTTLS when configured; the Message-ID is
  derived from the idempotency key so a resend is recognisable.

Errors of httpx and smtplib are turned into DeliveryError here; client errors
that a retry cannot fix (4xx but 408/429) are permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Callable
from email.message import EmailMessage

import httpx

from ..settings import Settings
from .outbox import DeliveryError, Message, Sender

RETRYABLE_STATUS = {408, 425, 429}


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a webhook receiver recomputes to check a request."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    text = f"{timestamp_ms}\n{secret}".encode()
    mac = hmac.new(secret.encode(), text, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _post(client: httpx.Client, url: str, **kwargs: object) -> httpx.Response:
    try:
        response = client.post(url, **kwargs)  # type: ignore[arg-type]
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise DeliveryError(
            f"channel URL {_safe(url)!r} is not valid: {exc}; fix the channel's target",
            permanent=True,
        ) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"POST {_safe(url)} failed: {exc}") from exc
    if response.status_code >= 400:
        permanent = (
            response.status_code < 500 and response.status_code not in RETRYABLE_STATUS
        )
        raise DeliveryError(
            f"POST {_safe(url)} answered {response.status_code}: {response.text[:200]}",
            permanent=permanent,
        )
    return response


def _safe(url: str) -> str:
    """The URL without its query, which carries robot keys."""
    return url.split("?", 1)[0]


def _check_robot_answer(response: httpx.Response, url: str) -> None:
    try:
        answer = response.json()
    except ValueError as exc:
        raise DeliveryError(
            f"{_safe(url)} answered non-JSON: {response.text[:200]}"
        ) from exc
    code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    if code != 0:
        raise DeliveryError(
            f"{_safe(url)} refused the message: errcode {code} "
            f"{answer.get('errmsg', '')}"
        )


class WebhookSender:
    """JSON webhooks, HMAC-signed, with the idempotency key as a header."""

    def __init__(self, client: httpx.Client, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock

    def send(self, message: Message) -> None:
        body = json.dumps(
            {"id": message.idempotency_key, **message.payload},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": message.idempotency_key,
            "X-Edufleet-Event": message.event,
            "X-Edufleet-Timestamp": timestamp,
        }
        if message.secret:
            headers["X-Edufleet-Signature"] = sign_webhook(
                message.secret, timestamp, body
            )
        _post(self.client, message.target, content=body, headers=headers)


class WeComSender:
    """A WeCom group robot: markdown messages to the robot's webhook URL."""

    def __init__(self, client: httpx.Client):
        self.client = client

    def send(self, message: Message) -> None:
        content = message.body or message.subject
        response = _post(
            self.client,
            message.target,
            json={"msgtype": "markdown", "markdown": {"content": content}},
        )
        _check_robot_answer(response, message.target)


class DingTalkSender:
    """A DingTalk robot: markdown, signed with timestamp+sign when it has a secret."""

    def __init__(self, client: httpx.Client, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock

    def send(self, message: Message) -> None:
        url = message.target
        if message.secret:
            stamp = int(self.clock() * 1000)
            query = urllib.parse.urlencode(
                {"timestamp": stamp, "sign": dingtalk_sign(message.secret, stamp)}
            )
            url += ("&" if "?" in url else "?") + query
        response = _post(
            self.client,
            url,
            json={
                "msgtype": "markdown",
                "markdown": {
                    "title": message.subject[:60] or "edufleet",
                    "text": message.body or message.subject,
                },
            },
        )
        _check_robot_answer(response, message.target)


class EmailSender:
    """E-mail over SMTP; one connection per message."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.target
        mail["Subject"] = message.subject or "edufleet"
        domain = self.sender.rsplit("@", 1)[-1] or "edufleet"
        mail["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
        mail["X-Edufleet-Idempotency-Key"] = message.idempotency_key
        mail.set_content(message.body or message.subject)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and self.password:
                    smtp.login(self.username, self.password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"SMTP server {self.host}:{self.port} refused "
                f"{message.target!r}: {exc}",
                permanent=True,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"SMTP delivery via {self.host}:{self.port} failed: {exc}"
            ) from exc


def default_senders(settings: Settings, client: httpx.Client) -> dict[str, Sender]:
    """The senders the settings allow: every HTTP channel, and e-mail if SMTP is set."""
    senders: dict[str, Sender] = {
        "webhook": WebhookSender(client),
        "wecom": WeComSender(client),
        "dingtalk": DingTalkSender(client),
    }
    if settings.smtp_host:
        senders["email"] = EmailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value()
            if settings.smtp_password
            else None,
            starttls=settings.smtp_starttls,
            timeout=settings.notify_timeout_seconds,
        )
    return senders
