"""The pages against hostile input: codes, CSRF, XSS, scope, limits, uploads."""

import secrets
import socket
from pathlib import Path

import httpx
import pytest

from edufleet_collector.labels import reissue_code, retire_code
from webseed import csrf_token, log_in, report, running_server, seed_world, web_settings

PAYLOADS = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)//</textarea><svg onload=alert(1)>",
]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200


@pytest.fixture
def web(conn, settings, tmp_path):
    world = seed_world(conn)
    configured = web_settings(settings, tmp_path)
    with running_server(configured) as base:
        yield world, base, configured


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10)


def _ticket_count(conn) -> int:
    conn.rollback()
    return conn.execute("SELECT count(*) FROM tickets").fetchone()[0]


def test_forged_retired_and_malformed_codes_get_the_same_answer(web, conn):
    world, base, _ = web
    retired = world.codes["HK01-PN-001"]
    retire_code(conn, retired)
    replaced = world.codes["HK01-PJ-001"]
    reissue_code(conn, world.devices["HK01-PJ-001"])
    conn.commit()
    forged = secrets.token_urlsafe(9)

    with _client(base) as client:
        answers = [
            client.get(f"/r/{code}")
            for code in (forged, retired, replaced, "short", "x" * 40, "%3Cscript%3E")
        ]

    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert "HK01" not in answers[0].text


def test_form_without_its_csrf_token_is_refused(web, conn):
    world, base, _ = web
    code = world.codes["HK01-PJ-001"]
    with _client(base) as client:
        client.get(f"/r/{code}")
        missing = client.post(f"/r/{code}", data={"symptom": "no_picture"})
        wrong = client.post(
            f"/r/{code}", data={"symptom": "no_picture", "csrf_token": "abc.def"}
        )
        login = client.post("/login", data={"name": "prov", "password": "x" * 10})
    with _client(base) as other:
        # A token from one browser is refused with another browser's cookie.
        stolen = csrf_token(other, f"/r/{code}")
    with _client(base) as client:
        client.get(f"/r/{code}")
        replayed = client.post(
            f"/r/{code}", data={"symptom": "no_picture", "csrf_token": stolen}
        )

    assert [missing.status_code, wrong.status_code, login.status_code] == [403] * 3
    assert replayed.status_code == 403
    assert _ticket_count(conn) == 0


def test_xss_payloads_in_every_text_field_are_rendered_inert(web, conn):
    world, base, _ = web
    code = world.codes["HK01-PJ-001"]
    with _client(base) as teacher:
        sent = report(
            teacher,
            code,
            symptom="other",
            description=PAYLOADS[0],
            name=PAYLOADS[1][:50],
        )
        assert sent.status_code == 303
        status = teacher.get(sent.headers["location"])
        login_echo = teacher.post(
            "/login",
            data={
                "csrf_token": csrf_token(teacher, "/login"),
                "name": PAYLOADS[2][:64],
                "password": "whatever-wrong",
            },
        )
    with _client(base) as admin:
        log_in(admin, "prov")
        device = world.devices["HK01-PN-001"]
        token = csrf_token(admin, f"/a/devices/{device}")
        saved = admin.post(
            f"/a/devices/{device}",
            data={"csrf_token": token, "name": PAYLOADS[2], "brand": PAYLOADS[1]},
        )
        assert saved.status_code == 303
        pages = [
            admin.get("/e/tickets/1"),
            admin.get("/a/tickets"),
            admin.get("/a/devices?q=" + PAYLOADS[0]),
            admin.get(f"/a/devices/{device}"),
        ]

    for page in [status, login_echo, *pages]:
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "<svg onload" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[0].text
    assert "&lt;svg onload=alert(1)&gt;" in pages[3].text


def test_other_district_reads_and_writes_get_404(web, conn):
    world, base, _ = web
    with _client(base) as teacher:
        assert report(teacher, world.codes["HK01-PJ-001"]).status_code == 303
    hk_device = world.devices["HK01-PN-001"]

    with _client(base) as sanya:
        log_in(sanya, "sy_bureau")
        token = csrf_token(sanya, "/a")
        answers = {
            "ticket": sanya.get("/e/tickets/1"),
            "device": sanya.get(f"/a/devices/{hk_device}"),
            "edit": sanya.post(
                f"/a/devices/{hk_device}",
                data={"csrf_token": token, "name": "taken over"},
            ),
            "reassign": sanya.post(
                "/a/tickets/1/reassign",
                data={"csrf_token": token, "engineer_id": str(world.engineers["li"])},
            ),
            "school": sanya.get("/a/schools/HK01"),
            "assign": sanya.post(
                "/a/schools/HK01/engineers",
                data={"csrf_token": token, "engineer_id": str(world.engineers["li"])},
            ),
            "retire": sanya.post(
                f"/a/devices/{hk_device}/retire-code", data={"csrf_token": token}
            ),
        }
        listing = sanya.get("/a/tickets")
        labels = sanya.post(
            "/a/labels", data={"csrf_token": token, "device": str(hk_device)}
        )
    with _client(base) as engineer:
        log_in(engineer, "eng_li")
        token = csrf_token(engineer, "/e")
        answers["engineer"] = engineer.get("/e/tickets/1")
        answers["accept"] = engineer.post(
            "/e/tickets/1/accept", data={"csrf_token": token}
        )

    assert {k: a.status_code for k, a in answers.items()} == dict.fromkeys(answers, 404)
    assert "/e/tickets/1" not in listing.text
    assert labels.status_code == 422
    conn.rollback()
    name, status = conn.execute(
        "SELECT d.name, t.status FROM devices d, tickets t WHERE d.id = %s",
        [hk_device],
    ).fetchone()
    assert name == ""
    assert status == "dispatched"


def test_qr_page_rate_limit_holds_per_client(conn, settings, tmp_path):
    world = seed_world(conn)
    limited = web_settings(settings, tmp_path, qr_rate_per_minute=5.0)
    with running_server(limited) as base, _client(base) as client:
        codes = [
            client.get(f"/r/{world.codes['HK01-PJ-001']}").status_code for _ in range(7)
        ]
        other_device = client.get(f"/r/{world.codes['SY01-PJ-001']}")
    assert codes[:5] == [200] * 5
    assert codes[5:] == [429, 429]
    assert other_device.status_code == 429


def test_report_rate_limit_holds_per_label(conn, settings, tmp_path):
    world = seed_world(conn)
    limited = web_settings(settings, tmp_path, qr_reports_per_hour=8.0)
    code = world.codes["HK01-PJ-001"]
    with running_server(limited) as base:
        statuses = []
        for _ in range(4):
            # A new client each time: the limit of the label must hold alone.
            with _client(base) as client:
                statuses.append(report(client, code).status_code)
    assert statuses[:2] == [303, 303]
    assert 429 in statuses[2:]


def test_login_is_throttled_after_repeated_failures(web):
    _, base, _ = web
    with _client(base) as client:
        failures = []
        for _ in range(5):
            token = csrf_token(client, "/login")
            answer = client.post(
                "/login",
                data={"csrf_token": token, "name": "prov", "password": "wrong-one!"},
            )
            failures.append(answer.status_code)
        token = csrf_token(client, "/login")
        right = client.post(
            "/login",
            data={
                "csrf_token": token,
                "name": "prov",
                "password": "correct-horse-battery",
            },
        )
    assert failures == [401] * 5
    assert right.status_code == 429
    assert "edufleet_session" not in right.cookies


def test_upload_whose_content_lies_about_its_type_is_refused(web, conn):
    world, base, configured = web
    code = world.codes["HK01-PJ-001"]
    with _client(base) as teacher:
        token = csrf_token(teacher, f"/r/{code}")
        lying = teacher.post(
            f"/r/{code}",
            data={"csrf_token": token, "symptom": "no_picture"},
            files={"photo": ("cat.png", b"<html><script>x</script>", "image/png")},
        )
        mismatched = teacher.post(
            f"/r/{code}",
            data={"csrf_token": token, "symptom": "no_picture"},
            files={"photo": ("cat.png", JPEG, "image/png")},
        )
        assert _ticket_count(conn) == 0
        honest = teacher.post(
            f"/r/{code}",
            data={"csrf_token": token, "symptom": "no_picture"},
            files={"photo": ("IMG_1.JPG", JPEG, "image/jpeg")},
        )

    assert lying.status_code == mismatched.status_code == 422
    assert "JPEG" in lying.text
    assert honest.status_code == 303
    stored = [p for p in Path(configured.upload_dir).rglob("*") if p.is_file()]
    assert len(stored) == 1
    assert stored[0].suffix == ".jpg" and "IMG_1" not in stored[0].name
    assert stored[0].read_bytes() == JPEG


def test_oversized_photo_is_refused_with_the_limit(conn, settings, tmp_path):
    world = seed_world(conn)
    small = web_settings(settings, tmp_path, upload_max_bytes=1024 * 1024)
    code = world.codes["HK01-PJ-001"]
    with running_server(small) as base, _client(base) as teacher:
        token = csrf_token(teacher, f"/r/{code}")
        answer = teacher.post(
            f"/r/{code}",
            data={"csrf_token": token, "symptom": "no_picture"},
            files={"photo": ("big.jpg", JPEG + b"\x00" * 1024 * 1024, "image/jpeg")},
        )
    assert answer.status_code == 422
    assert "1 MB" in answer.text
    assert _ticket_count(conn) == 0


def test_pages_carry_security_headers_without_inline_script(web):
    world, base, _ = web
    with _client(base) as client:
        page = client.get(f"/r/{world.codes['HK01-PJ-001']}")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_form_body_over_the_limit_is_refused_before_it_is_read(web):
    world, base, _ = web
    code = world.codes["HK01-PJ-001"]
    host, port = base.removeprefix("http://").split(":")
    head = (
        f"POST /r/{code} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {26 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"symptom=x")
        status_line = sock.recv(200).split(b"\r\n")[0]
    assert b" 413 " in status_line


def _copied(base: str, source: httpx.Client) -> httpx.Client:
    """A second client holding a copy of ``source``'s session cookie."""
    thief = _client(base)
    thief.cookies.set("edufleet_session", source.cookies["edufleet_session"])
    return thief


def test_logging_out_ends_copies_of_the_session_cookie_too(web):
    _, base, _ = web
    with _client(base) as phone:
        log_in(phone, "eng_wang")
        with _copied(base, phone) as thief:
            assert thief.get("/e").status_code == 200
            phone.post("/logout", data={"csrf_token": csrf_token(phone, "/e")})
            assert thief.get("/e").status_code in (303, 401)
        # Logging in again works at once.
        log_in(phone, "eng_wang")
        assert phone.get("/e").status_code == 200


def test_an_administrator_revokes_a_lost_phones_session(web, conn):
    from edufleet_collector.accounts import create_user
    from edufleet_collector.cli import main

    world, base, _ = web
    with _client(base) as phone, _client(base) as laptop:
        log_in(phone, "eng_wang")
        log_in(laptop, "eng_li")
        assert main(["users", "revoke-sessions", "eng_wang"]) == 0
        assert phone.get("/e").status_code in (303, 401)
        assert laptop.get("/e").status_code == 200

        # A new password ends the sessions opened with the old one.
        create_user(
            conn,
            name="eng_li",
            role="engineer",
            engineer_id=world.engineers["li"],
            password="a-new-long-password",
        )
        conn.commit()
        assert laptop.get("/e").status_code in (303, 401)
