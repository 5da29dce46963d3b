"""``edufleet grafana push`` against a stand-in Grafana.

Grafana is an outside service that cannot run here, so this test serves the
few endpoints of Grafana's HTTP API that the push uses (health, folders,
datasources by uid, dashboards by uid and /api/dashboards/db) from a small
local HTTP server, keeping what is written, and records every request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from edufleet_collector.cli import main
from edufleet_collector.grafana.push import DATASOURCE

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glsa_test_token_0123456789"


class FakeGrafana:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.auth: set[str] = set()
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.healthy = True

    def handle(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        parts = path.strip("/").split("/")[1:]
        if parts == ["health"]:
            return 200, {
                "database": "ok" if self.healthy else "failing",
                "version": "11.0.0",
            }
        if parts[:1] == ["folders"]:
            return self._folders(method, parts[1:], body)
        if parts[:2] == ["datasources", "uid"] and len(parts) == 3:
            return self._datasource(method, parts[2], body)
        if parts == ["datasources"] and method == "POST" and body:
            self.datasources[body["uid"]] = {**body, "id": 1}
            return 200, {"message": "Datasource added", "id": 1}
        if parts[:2] == ["dashboards", "uid"] and method == "GET":
            stored = self.dashboards.get(parts[2])
            return (200, stored) if stored else (404, {"message": "Not found"})
        if parts == ["dashboards", "db"] and method == "POST" and body:
            board = dict(body["dashboard"])
            old = self.dashboards.get(board["uid"])
            board["id"] = 7
            board["version"] = (old["dashboard"]["version"] + 1) if old else 1
            meta = {"folderUid": body.get("folderUid", "")}
            self.dashboards[board["uid"]] = {"dashboard": board, "meta": meta}
            return 200, {"status": "success", "uid": board["uid"]}
        return 404, {"message": f"no route {method} {path}"}

    def _folders(
        self, method: str, rest: list[str], body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        if method == "POST" and not rest and body:
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
            return 200, self.folders[body["uid"]]
        if method == "GET" and rest:
            folder = self.folders.get(rest[0])
            return (200, folder) if folder else (404, {"message": "Folder not found"})
        if method == "PUT" and rest and body:
            self.folders[rest[0]]["title"] = body["title"]
            return 200, self.folders[rest[0]]
        return 405, {"message": "unsupported"}

    def _datasource(
        self, method: str, uid: str, body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        stored = self.datasources.get(uid)
        if method == "GET":
            if stored is None:
                return 404, {"message": "Data source not found"}
            shown = {k: v for k, v in stored.items() if k != "secureJsonData"}
            shown["secureJsonFields"] = {"password": "secureJsonData" in stored}
            return 200, shown
        if method == "PUT" and stored is not None and body:
            self.datasources[uid] = {**stored, **body}
            return 200, {"message": "Datasource updated"}
        return 405, {"message": "unsupported"}

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.requests if m != "GET"]


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.auth.add(self.headers.get("Authorization", ""))
            status, payload = fake.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _push(url: str, *extra: str) -> int:
    return main(
        [
            "grafana",
            "push",
            "--url",
            url,
            "--token",
            TOKEN,
            "--dashboards",
            str(ROOT / "dashboards"),
            "--db-url",
            "postgresql://edufleet_grafana@db:5432/edufleet?sslmode=disable",
            *extra,
        ]
    )


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EDUFLEET_GRAFANA_DB_PASSWORD", "grafana-db-password-1")
    return "grafana-db-password-1"


def test_push_creates_folder_datasource_and_dashboards(grafana, password, capsys):
    fake, url = grafana
    assert _push(url) == 0

    assert fake.requests[0][:2] == ("GET", "/api/health")
    assert fake.auth == {f"Bearer {TOKEN}"}
    assert fake.folders == {"edufleet": {"uid": "edufleet", "title": "edufleet"}}
    source = fake.datasources["edufleet-pg"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["url"] == "db:5432" and source["user"] == "edufleet_grafana"
    assert source["jsonData"]["timescaledb"] is True
    assert source["jsonData"]["database"] == "edufleet"
    assert source["jsonData"]["sslmode"] == "disable"
    assert source["secureJsonData"] == {"password": password}
    expected = {p.stem for p in (ROOT / "dashboards").glob("*.json")}
    assert {uid.removeprefix("edufleet-") for uid in fake.dashboards} == expected
    assert all(d["meta"]["folderUid"] == "edufleet" for d in fake.dashboards.values())
    assert "dashboard edufleet-wall: created" in capsys.readouterr().out


def test_second_push_writes_nothing(grafana, password, capsys):
    fake, url = grafana
    _push(url)
    before = len(fake.writes())
    capsys.readouterr()

    assert _push(url) == 0
    assert len(fake.writes()) == before
    assert capsys.readouterr().out.strip().endswith("0 changes")
    assert all(d["dashboard"]["version"] == 1 for d in fake.dashboards.values())


def test_changed_dashboard_is_updated_alone(grafana, password, tmp_path):
    fake, url = grafana
    _push(url)
    for path in (ROOT / "dashboards").glob("*.json"):
        board = json.loads(path.read_text(encoding="utf-8"))
        if board["uid"] == "edufleet-wall":
            board["refresh"] = "1m"
        (tmp_path / path.name).write_text(json.dumps(board), encoding="utf-8")
    before = len(fake.writes())

    main(
        [
            *("grafana", "push", "--url", url, "--token", TOKEN),
            *("--dashboards", str(tmp_path), "--db-url", "postgresql://db/edufleet"),
        ]
    )
    # The datasource's sslmode changed (the URL has none) and the wall did.
    assert fake.writes()[before:] == [
        ("PUT", "/api/datasources/uid/edufleet-pg"),
        ("POST", "/api/dashboards/db"),
    ]
    assert fake.dashboards["edufleet-wall"]["dashboard"]["version"] == 2
    assert "secureJsonData" in fake.datasources["edufleet-pg"]


def test_unhealthy_grafana_gets_nothing_written(grafana, password, capsys):
    fake, url = grafana
    fake.healthy = False
    assert _push(url) == 2
    assert fake.writes() == []
    assert "unhealthy" in capsys.readouterr().err


def test_unreachable_grafana_is_reported_with_the_url(password, capsys):
    assert _push("http://127.0.0.1:9") == 2
    assert "http://127.0.0.1:9" in capsys.readouterr().err


def test_new_datasource_without_password_is_refused(grafana, monkeypatch, capsys):
    fake, url = grafana
    monkeypatch.delenv("EDUFLEET_GRAFANA_DB_PASSWORD", raising=False)
    assert _push(url) == 2
    assert "EDUFLEET_GRAFANA_DB_PASSWORD" in capsys.readouterr().err
    assert fake.dashboards == {}


def test_pushed_datasource_matches_the_provisioning_file():
    (provisioned,) = yaml.safe_load(
        (ROOT / "provisioning/grafana/datasources/edufleet.yaml").read_text()
    )["datasources"]
    for key in ("name", "uid", "type", "access", "isDefault"):
        assert provisioned[key] == DATASOURCE[key]
    for key, value in DATASOURCE["jsonData"].items():
        assert provisioned["jsonData"][key] == value


def test_set_password_gives_the_grafana_role_a_password(settings, monkeypatch, capsys):
    monkeypatch.setenv("EDUFLEET_GRAFANA_DB_PASSWORD", "a-long-random-password-42")
    monkeypatch.setenv("EDUFLEET_SECRET_KEY", "s" * 48)
    assert main(["grafana", "set-password"]) == 0
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'edufleet_grafana'"
        ).fetchone()
        # The role belongs to the whole test server: leave it as it was.
        conn.execute("ALTER ROLE edufleet_grafana PASSWORD NULL")
        conn.commit()
    assert row and str(row[0]).startswith(("SCRAM-SHA-256$", "md5"))
    assert "edufleet_grafana" in capsys.readouterr().out


def test_set_password_refuses_a_short_password(settings, monkeypatch, capsys):
    monkeypatch.setenv("EDUFLEET_GRAFANA_DB_PASSWORD", "short")
    assert main(["grafana", "set-password"]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
