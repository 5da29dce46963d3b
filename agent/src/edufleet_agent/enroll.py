"""The client side of enrollment: trade a school token for a device identity.

``POST {url}/api/v1/enroll`` with an ``EnrollRequest``; the ``EnrollResponse``
is saved to the credentials file with mode 0600. TLS is verified, against
``--ca`` when given, else the system's trust store; plain HTTP is refused
except to a collector on the loopback interface.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pydantic import ValidationError

import edufleet_agent
from edufleet_agent.errors import EnrollError
from edufleet_agent.inventory import collect_inventory, fingerprint
from edufleet_protocol.models import (
    EnrollRequest,
    EnrollResponse,
    Inventory,
    dump_payload,
)

log = logging.getLogger("edufleet.agent.enroll")

ENROLL_PATH = "/api/v1/enroll"
MAX_RESPONSE = 64 * 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def build_request(
    token: str, inventory: Inventory, *, room: str | None, asset_tag: str | None
) -> EnrollRequest:
    return EnrollRequest(
        token=token,
        fingerprint=fingerprint(inventory),
        hostname=inventory.hostname,
        room=room,
        asset_tag=asset_tag,
        agent_version=edufleet_agent.__version__,
    )


def post_enrollment(
    url: str,
    request: EnrollRequest,
    *,
    ca_file: Path | None = None,
    timeout: float = 30.0,
) -> EnrollResponse:
    """Send the request and return the collector's answer; raise EnrollError."""
    endpoint = url.rstrip("/") + ENROLL_PATH
    parts = urllib.parse.urlsplit(endpoint)
    plain_ok = parts.scheme == "http" and parts.hostname in LOOPBACK
    if parts.scheme != "https" and not plain_ok:
        raise EnrollError(
            f"enrollment URL {url!r} must start with https:// (plain http is "
            "accepted only for a collector on this machine)"
        )
    context = None
    if endpoint.startswith("https://"):
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    body = dump_payload(request)
    http_request = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "edufleet-agent"},
    )
    try:
        with urllib.request.urlopen(
            http_request, timeout=timeout, context=context
        ) as reply:
            raw = reply.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc.read(4096))
        raise EnrollError(
            f"the collector refused enrollment with HTTP {exc.code}: {detail}"
        ) from exc
    except urllib.error.URLError as exc:
        raise EnrollError(f"cannot reach {endpoint}: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise EnrollError(f"cannot reach {endpoint}: {exc}") from exc

    if len(raw) > MAX_RESPONSE:
        raise EnrollError(f"the collector's answer exceeds {MAX_RESPONSE} bytes")
    try:
        return EnrollResponse.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"]
        raise EnrollError(
            f"the collector's answer is not an enrollment result: {first}"
        ) from exc


def _error_detail(raw: bytes) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:300] or "(no detail)"
    if isinstance(document, dict) and "detail" in document:
        return str(document["detail"])[:300]
    return str(document)[:300]


def save_credentials(path: Path, response: EnrollResponse) -> None:
    """Write the result atomically, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(response.model_dump_json(indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as exc:
        raise EnrollError(f"cannot save credentials to {path}: {exc}") from exc


def enroll(
    url: str,
    token: str,
    credentials_file: Path,
    *,
    room: str | None = None,
    asset_tag: str | None = None,
    ca_file: Path | None = None,
    sys_root: Path = Path("/"),
) -> EnrollResponse:
    inventory = collect_inventory(sys_root)
    try:
        request = build_request(token, inventory, room=room, asset_tag=asset_tag)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise EnrollError(f"cannot enroll: {field}: {error['msg']}") from exc
    response = post_enrollment(url, request, ca_file=ca_file)
    save_credentials(credentials_file, response)
    log.info(
        "enrolled as %r; credentials saved to %s", response.device_id, credentials_file
    )
    return response
