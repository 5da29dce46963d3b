"""Push the folder, the datasource and the dashboards to a running Grafana.

For a Grafana that does not read the provisioning files (a shared or hosted
one). Idempotent: each object is read first and written only when it is
missing or differs, so a second push changes nothing. Grafana's health is
checked before anything is written.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from ..errors import EdufleetError, InvalidInput

log = logging.getLogger("edufleet.collector.grafana")

FOLDER_UID = "edufleet"
FOLDER_TITLE = "edufleet"
GRAFANA_ROLE = "edufleet_grafana"

Outcome = Literal["created", "updated", "unchanged"]
Grafana = Any
"""grafana_client's GrafanaApi; the library's methods carry no type hints."""

DATASOURCE: dict[str, Any] = {
    "name": "edufleet",
    "uid": "edufleet-pg",
    "type": "grafana-postgresql-datasource",
    "access": "proxy",
    "isDefault": True,
    "jsonData": {
        "postgresVersion": 1500,
        "timescaledb": True,
        "maxOpenConns": 10,
        "maxIdleConns": 4,
        "connMaxLifetime": 14400,
        "timeInterval": "1m",
    },
}
"""The datasource every dashboard names; provisioning/grafana/datasources/
edufleet.yaml declares the same one for Grafanas that read provisioning files."""


class GrafanaPushError(EdufleetError):
    """Grafana is unreachable, unhealthy, or refused a write."""


@dataclass
class PushReport:
    version: str = ""
    folder: Outcome = "unchanged"
    datasource: Outcome = "unchanged"
    dashboards: dict[str, Outcome] = field(default_factory=dict)

    def changes(self) -> int:
        outcomes = [self.folder, self.datasource, *self.dashboards.values()]
        return sum(1 for o in outcomes if o != "unchanged")


def datasource_for(*, db_url: str, password: str | None) -> dict[str, Any]:
    """The datasource to push: the provisioned one, aimed at ``db_url``."""
    parts = urlsplit(db_url)
    if not parts.hostname or not parts.path.strip("/"):
        raise InvalidInput(
            f"--db-url {db_url!r} needs a host and a database name, e.g. "
            "postgresql://edufleet_grafana@db.example:5432/edufleet",
            field="db_url",
        )
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    source: dict[str, Any] = {
        key: DATASOURCE[key] for key in ("name", "uid", "type", "access", "isDefault")
    }
    source["url"] = f"{parts.hostname}:{parts.port or 5432}"
    source["user"] = parts.username or GRAFANA_ROLE
    json_data = dict(DATASOURCE["jsonData"])
    json_data["database"] = parts.path.strip("/")
    json_data["sslmode"] = query.get("sslmode", "require")
    source["jsonData"] = json_data
    if password is not None:
        source["secureJsonData"] = {"password": password}
    return source


def _missing(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def _check_health(api: Grafana, url: str) -> str:
    try:
        health = api.client.GET("/health")
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise GrafanaPushError(
            f"Grafana at {url} did not answer its health check ({exc}); check "
            "--url and that Grafana is running"
        ) from exc
    if not isinstance(health, dict) or health.get("database") != "ok":
        raise GrafanaPushError(
            f"Grafana at {url} reports itself unhealthy ({health!r}); nothing was "
            "pushed. Fix its database, then push again"
        )
    return str(health.get("version", ""))


def _push_folder(api: Grafana) -> Outcome:
    try:
        folder = api.folder.get_folder(FOLDER_UID)
    except GrafanaException as exc:
        if not _missing(exc):
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        return "created"
    if folder.get("title") == FOLDER_TITLE:
        return "unchanged"
    api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
    return "updated"


def _same_datasource(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for key, value in wanted.items():
        if key == "secureJsonData":
            continue
        if key == "jsonData":
            have = current.get("jsonData") or {}
            if any(have.get(k) != v for k, v in value.items()):
                return False
        elif current.get(key) != value:
            return False
    return True


def _push_datasource(
    api: Grafana, source: Mapping[str, Any], *, update_password: bool
) -> Outcome:
    uid = str(source["uid"])
    try:
        current = api.datasource.get_datasource_by_uid(uid)
    except GrafanaException as exc:
        if not _missing(exc):
            raise
        if "secureJsonData" not in source:
            raise InvalidInput(
                "the datasource does not exist in Grafana yet and needs the "
                "database password; set EDUFLEET_GRAFANA_DB_PASSWORD",
                field="EDUFLEET_GRAFANA_DB_PASSWORD",
            ) from exc
        api.datasource.create_datasource(dict(source))
        return "created"
    wanted = dict(source)
    has_password = bool((current.get("secureJsonFields") or {}).get("password"))
    if has_password and not update_password:
        wanted.pop("secureJsonData", None)
    if "secureJsonData" not in wanted and _same_datasource(current, wanted):
        return "unchanged"
    api.datasource.update_datasource_by_uid(uid, wanted)
    return "updated"


def _comparable(board: Mapping[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(dict(board))
    for key in ("id", "version", "__file__"):
        clean.pop(key, None)
    return clean


def _push_dashboard(api: Grafana, board: Mapping[str, Any]) -> Outcome:
    uid = str(board["uid"])
    outcome: Outcome = "created"
    try:
        current = api.dashboard.get_dashboard(uid)
    except GrafanaException as exc:
        if not _missing(exc):
            raise
    else:
        same = _comparable(current.get("dashboard", {})) == _comparable(board)
        in_folder = current.get("meta", {}).get("folderUid") == FOLDER_UID
        if same and in_folder:
            return "unchanged"
        outcome = "updated"
    body = _comparable(board)
    body["id"] = None
    api.dashboard.update_dashboard(
        {
            "dashboard": body,
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "edufleet grafana push",
        }
    )
    return outcome


def push(
    api: Grafana,
    *,
    url: str,
    datasource: Mapping[str, Any],
    dashboards: Sequence[Mapping[str, Any]],
    update_password: bool = False,
) -> PushReport:
    """Check Grafana's health, then bring folder, datasource and dashboards in line.

    The datasource's password is sent when the datasource is created, when
    Grafana holds none, or with ``update_password``; Grafana never returns it,
    so it cannot be compared.
    """
    report = PushReport(version=_check_health(api, url))
    try:
        report.folder = _push_folder(api)
        report.datasource = _push_datasource(
            api, datasource, update_password=update_password
        )
        for board in dashboards:
            report.dashboards[str(board["uid"])] = _push_dashboard(api, board)
    except GrafanaException as exc:
        raise GrafanaPushError(
            f"Grafana at {url} refused the push ({exc}); check that the token "
            "belongs to an Admin or a service account with the Admin role"
        ) from exc
    log.info(
        "pushed to Grafana %s at %s: %d changes", report.version, url, report.changes()
    )
    return report


def connect(url: str, token: str, *, timeout: float = 10.0) -> Grafana:
    """A Grafana API client authenticated by a service account token."""
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(
            f"--url {url!r} must be an http:// or https:// URL, e.g. "
            "https://grafana.example.edu.cn",
            field="url",
        )
    if not token:
        raise InvalidInput(
            "a Grafana service account token is required: pass --token or set "
            "EDUFLEET_GRAFANA_TOKEN",
            field="token",
        )
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)
