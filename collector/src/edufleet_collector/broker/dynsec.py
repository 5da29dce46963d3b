"""A small client of Mosquitto's dynamic security plugin, spoken over MQTT.

Commands are JSON objects published to ``$CONTROL/dynamic-security/v1``; the
plugin answers each on ``$CONTROL/dynamic-security/v1/response`` with the
``correlationData`` it was sent, which is how answers find their caller. One
client may be shared by many threads.

The plugin's error strings are translated here, and only here: "... already
exists" becomes :class:`Conflict`, "... not found" :class:`NotFound`, anything
else (and a broker that does not answer) :class:`DynsecError`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from ..errors import Conflict, EdufleetError, NotFound

log = logging.getLogger("edufleet.collector.broker")

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"

AclType = str
"""publishClientSend, publishClientReceive, subscribeLiteral, subscribePattern,
unsubscribeLiteral or unsubscribePattern."""


class DynsecError(EdufleetError):
    """The broker refused a dynamic security command, or did not answer it."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command


@dataclass(frozen=True)
class Acl:
    """One access rule of a role."""

    acltype: AclType
    topic: str
    allow: bool = True
    priority: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "acltype": self.acltype,
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: dict[str, Any] | None = None


class DynsecClient:
    """Administer clients, roles and ACLs of a running broker.

    ::

        with DynsecClient.from_url("mqtt://127.0.0.1:1883", "admin", pw) as ds:
            ds.create_client("d0001", "s3cret", roles=["device"])
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls_ca_file: str | None = None,
        use_tls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"edufleet-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        if use_tls or tls_ca_file:
            self._client.tls_set(ca_certs=tls_ca_file)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._connected = False

    @classmethod
    def from_url(
        cls, url: str, username: str, password: str, **kwargs: Any
    ) -> DynsecClient:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if tls else 1883),
            username,
            password,
            use_tls=tls,
            **kwargs,
        )

    # --- connection ----------------------------------------------------------

    def connect(self) -> None:
        """Connect and subscribe to the plugin's answers; raise if refused."""
        if self._connected:
            return
        self._refused: str | None = None
        try:
            self._client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise DynsecError(
                f"cannot reach the broker at {self.host}:{self.port} for dynamic "
                f"security: {exc}; check EDUFLEET_MQTT_URL and that Mosquitto runs"
            ) from exc
        self._client.loop_start()
        self._connected = True
        if not self._subscribed.wait(self.timeout):
            reason = self._refused or "no answer"
            self.close()
            raise DynsecError(
                f"the broker at {self.host}:{self.port} did not let the dynamic "
                f"security admin subscribe to {RESPONSE_TOPIC} within "
                f"{self.timeout:.0f} s ({reason}); check EDUFLEET_MQTT_ADMIN_USERNAME"
                " / _PASSWORD and that the broker loads the dynamic security plugin"
            )
        log.info("dynamic security client connected to %s:%d", self.host, self.port)

    def close(self) -> None:
        if not self._connected:
            return
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False
        self._subscribed.clear()

    def __enter__(self) -> DynsecClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.warning("broker refused the dynamic security admin: %s", reason_code)
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        if all(not code.is_failure for code in reason_codes):
            self._subscribed.set()
        else:
            self._refused = ", ".join(str(code) for code in reason_codes)

    def _on_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        try:
            body = json.loads(message.payload)
            responses = body["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed dynamic security answer")
            return
        for response in responses:
            key = response.get("correlationData")
            with self._lock:
                pending = self._pending.pop(key, None) if key else None
            if pending is not None:
                pending.response = response
                pending.done.set()

    # --- commands --------------------------------------------------------------

    def execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one message; return their answers, raising on errors."""
        self.connect()
        waits: list[tuple[dict[str, Any], _Pending]] = []
        with self._lock:
            for given in commands:
                key = uuid.uuid4().hex
                pending = _Pending()
                self._pending[key] = pending
                waits.append(({**given, "correlationData": key}, pending))
        payload = json.dumps({"commands": [command for command, _ in waits]})
        self._client.publish(CONTROL_TOPIC, payload, qos=1)

        answers = []
        for command, pending in waits:
            if not pending.done.wait(self.timeout):
                with self._lock:
                    self._pending.pop(command["correlationData"], None)
                raise DynsecError(
                    f"the broker did not answer dynamic security command "
                    f"{command['command']!r} within {self.timeout:.0f} s",
                    command=command["command"],
                )
            answers.append(pending.response or {})
        for (command, _), answer in zip(waits, answers, strict=True):
            _raise_for(command, answer)
        return answers

    def run(self, command: str, **fields: Any) -> dict[str, Any]:
        return self.execute([{"command": command, **fields}])[0]

    def create_client(
        self,
        username: str,
        password: str,
        *,
        clientid: str | None = None,
        textname: str = "",
        roles: dict[str, int] | None = None,
    ) -> None:
        """Create a client holding ``roles`` ({name: priority}, higher first)."""
        fields: dict[str, Any] = {
            "username": username,
            "password": password,
            "textname": textname,
            "roles": [
                {"rolename": name, "priority": priority}
                for name, priority in (roles or {}).items()
            ],
        }
        if clientid:
            fields["clientid"] = clientid
        self.run("createClient", **fields)

    def set_client_password(self, username: str, password: str) -> None:
        self.run("setClientPassword", username=username, password=password)

    def get_client(self, username: str) -> dict[str, Any] | None:
        """The client's record (roles, groups, disabled flag), or None."""
        try:
            answer = self.run("getClient", username=username)
        except NotFound:
            return None
        client: dict[str, Any] = answer["data"]["client"]
        return client

    def enable_client(self, username: str) -> None:
        self.run("enableClient", username=username)

    def disable_client(self, username: str) -> None:
        self.run("disableClient", username=username)

    def delete_client(self, username: str) -> None:
        self.run("deleteClient", username=username)

    def create_role(self, rolename: str, acls: list[Acl] | None = None) -> None:
        self.run(
            "createRole",
            rolename=rolename,
            acls=[acl.as_json() for acl in acls or []],
        )

    def get_role(self, rolename: str) -> dict[str, Any] | None:
        try:
            answer = self.run("getRole", rolename=rolename)
        except NotFound:
            return None
        role: dict[str, Any] = answer["data"]["role"]
        return role

    def delete_role(self, rolename: str) -> None:
        self.run("deleteRole", rolename=rolename)

    def add_role_acl(self, rolename: str, acl: Acl) -> None:
        self.run("addRoleACL", rolename=rolename, **acl.as_json())

    def remove_role_acl(self, rolename: str, acltype: AclType, topic: str) -> None:
        self.run("removeRoleACL", rolename=rolename, acltype=acltype, topic=topic)

    def add_client_role(
        self, username: str, rolename: str, *, priority: int | None = None
    ) -> None:
        fields: dict[str, Any] = {"username": username, "rolename": rolename}
        if priority is not None:
            fields["priority"] = priority
        self.run("addClientRole", **fields)

    def remove_client_role(self, username: str, rolename: str) -> None:
        self.run("removeClientRole", username=username, rolename=rolename)


def _raise_for(command: dict[str, Any], answer: dict[str, Any]) -> None:
    error = answer.get("error")
    if not error:
        return
    name = command["command"]
    subject = command.get("username") or command.get("rolename") or ""
    message = f"dynamic security {name} {subject!r}: {error}"
    lowered = str(error).lower()
    if "already exists" in lowered:
        raise Conflict(message)
    if "not found" in lowered:
        raise NotFound(message)
    raise DynsecError(message, command=name)
