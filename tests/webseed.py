"""A small two-district world for the web and label tests.

Haikou's Xiuying district has school HK01 (rooms 高一(1)班 and 机房, a
projector, a panel and a desktop PC) with engineer 王工; Sanya has school
SY01 with one projector and engineer 李工. Users, all with PASSWORD:
``prov`` (province admin), ``hk_bureau`` (Haikou bureau), ``sy_bureau``
(Sanya bureau), ``hk_school`` (school admin of HK01), ``eng_wang`` and
``eng_li`` (engineers).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx
import psycopg

from edufleet_collector.settings import Settings

PASSWORD = "correct-horse-battery"


@dataclass
class World:
    schools: dict[str, int] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    engineers: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _password_hash() -> str:
    from edufleet_collector.accounts import hash_password

    return hash_password(PASSWORD)


def _one(conn: psycopg.Connection, query: str, params: list[object]) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def seed_world(conn: psycopg.Connection) -> World:
    from edufleet_collector.accounts import create_user
    from edufleet_collector.labels import active_code

    world = World()
    conn.execute(
        """
        INSERT INTO regions (code, parent_code, name_zh, name_en, level) VALUES
            ('460000', NULL, '海南省', 'Hainan', 'province'),
            ('460100', '460000', '海口市', 'Haikou', 'city'),
            ('460105', '460100', '秀英区', 'Xiuying', 'district'),
            ('460200', '460000', '三亚市', 'Sanya', 'city')
        """
    )
    for code, name, region in (
        ("HK01", "海口市第一中学", "460105"),
        ("SY01", "三亚市第一小学", "460200"),
    ):
        world.schools[code] = _one(
            conn,
            "INSERT INTO schools (code, name, region_code) VALUES (%s, %s, %s) "
            "RETURNING id",
            [code, name, region],
        )
    rooms = {
        "HK01/101": _one(
            conn,
            "INSERT INTO rooms (school_id, name) VALUES (%s, '高一(1)班') RETURNING id",
            [world.schools["HK01"]],
        ),
        "HK01/lab": _one(
            conn,
            "INSERT INTO rooms (school_id, name, kind) VALUES (%s, '机房', 'lab') "
            "RETURNING id",
            [world.schools["HK01"]],
        ),
        "SY01/201": _one(
            conn,
            "INSERT INTO rooms (school_id, name) VALUES (%s, '二(1)班') RETURNING id",
            [world.schools["SY01"]],
        ),
    }
    for tag, category, school, room in (
        ("HK01-PJ-001", "projector", "HK01", "HK01/101"),
        ("HK01-PN-001", "panel", "HK01", "HK01/101"),
        ("HK01-PC-001", "desktop", "HK01", "HK01/lab"),
        ("SY01-PJ-001", "projector", "SY01", "SY01/201"),
    ):
        world.devices[tag] = _one(
            conn,
            "INSERT INTO devices (asset_tag, category, school_id, room_id, brand) "
            "VALUES (%s, %s, %s, %s, 'Epson') RETURNING id",
            [tag, category, world.schools[school], rooms[room]],
        )
        world.codes[tag] = active_code(conn, world.devices[tag])
    for key, name, region, school in (
        ("wang", "王工", "460105", "HK01"),
        ("li", "李工", "460200", "SY01"),
    ):
        world.engineers[key] = _one(
            conn,
            "INSERT INTO engineers (name, phone, region_code, skills) "
            "VALUES (%s, '13900000000', %s, '{pc,av,network}') RETURNING id",
            [name, region],
        )
        conn.execute(
            "INSERT INTO school_engineers (school_id, engineer_id, role) "
            "VALUES (%s, %s, 'primary')",
            [world.schools[school], world.engineers[key]],
        )
    for name, role, kwargs in (
        ("prov", "province_admin", {}),
        ("hk_bureau", "district_bureau", {"region_code": "460100"}),
        ("sy_bureau", "district_bureau", {"region_code": "460200"}),
        ("hk_school", "school_admin", {"school_code": "HK01"}),
        ("eng_wang", "engineer", {"engineer_id": world.engineers["wang"]}),
        ("eng_li", "engineer", {"engineer_id": world.engineers["li"]}),
    ):
        world.users[name] = create_user(conn, name=name, role=role, **kwargs)
    # One argon2 hash serves every user: hashing is slow on purpose.
    conn.execute("UPDATE users SET password_hash = %s", [_password_hash()])
    conn.commit()
    return world


@contextmanager
def running_server(settings: Settings) -> Iterator[str]:
    """The real web app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from edufleet_collector.db.pool import open_pool
    from edufleet_collector.web.app import create_app

    pool = open_pool(settings, name="test-web", min_size=1, max_size=8)
    app = create_app(settings, pool)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test web server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        pool.close()


def web_settings(settings: Settings, tmp_path: Path, **changes: object) -> Settings:
    """The test settings with an upload folder of the test's own."""
    values: dict[str, object] = {"upload_dir": str(tmp_path / "uploads")}
    values.update(changes)
    return settings.model_copy(update=values)


_TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: httpx.Client, path: str) -> str:
    """The CSRF token of the form on a page (fetching it sets the cookie)."""
    page = client.get(path)
    found = _TOKEN_RE.search(page.text)
    assert found, f"no form with a CSRF token on {path} ({page.status_code})"
    return found[1]


def log_in(client: httpx.Client, name: str, password: str = PASSWORD) -> None:
    token = csrf_token(client, "/login")
    answer = client.post(
        "/login", data={"csrf_token": token, "name": name, "password": password}
    )
    assert answer.status_code == 303, answer.text


def report(client: httpx.Client, code: str, **fields: str) -> httpx.Response:
    """Send the QR report form of a label, as a teacher's phone does."""
    data = {"csrf_token": csrf_token(client, f"/r/{code}"), "symptom": "no_picture"}
    data.update(fields)
    return client.post(f"/r/{code}", data=data)
