"""The pages' behaviour over real HTTP against a real database."""

import gzip
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from edufleet_collector.privacy import mask_name, mask_phone, purge_personal_data
from edufleet_collector.tickets import service
from webseed import csrf_token, log_in, report, running_server, seed_world, web_settings


@pytest.fixture
def web(conn, settings, tmp_path):
    world = seed_world(conn)
    configured = web_settings(settings, tmp_path)
    with running_server(configured) as base:
        yield world, base, configured


def _client(base: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10, headers=headers)


def test_landing_page_is_small_over_the_wire_and_says_what_and_where(web):
    world, base, _ = web
    path = f"/r/{world.codes['HK01-PJ-001']}"
    with (
        _client(base, **{"accept-encoding": "gzip"}) as client,
        client.stream("GET", path) as answer,
    ):
        wire = b"".join(answer.iter_raw())
        encoding = answer.headers.get("content-encoding")
    html = gzip.decompress(wire).decode()
    assert encoding == "gzip"
    assert len(wire) < 30 * 1024
    assert "投影仪" in html and "海口市第一中学" in html and "高一(1)班" in html
    assert "无画面" in html and "其他" in html
    assert "<script" not in html


def test_language_follows_accept_language_then_the_switch(web):
    world, base, _ = web
    code = world.codes["HK01-PJ-001"]
    with _client(base, **{"accept-language": "en-US,en;q=0.9"}) as client:
        english = client.get(f"/r/{code}")
        switched = client.get(f"/r/{code}?lang=zh")
        remembered = client.get(f"/r/{code}")
    assert "Projector" in english.text and "No picture" in english.text
    assert "投影仪" in switched.text
    assert "投影仪" in remembered.text


def test_teacher_reports_then_second_teacher_adds_me_too(web, conn):
    world, base, _ = web
    code = world.codes["HK01-PJ-001"]
    with _client(base) as first:
        sent = report(
            first, code, symptom="no_picture", name="张三", phone="13812345678"
        )
        assert sent.status_code == 303
        status = first.get(sent.headers["location"])
    with _client(base) as second:
        page = second.get(f"/r/{code}")
        token = csrf_token(second, f"/r/{code}")
        joined = second.post(f"/r/{code}/me-too", data={"csrf_token": token})

    assert "王工" in status.text and "已派单" in status.text
    assert "此设备已有报修在处理中" in page.text and "同样故障" in page.text
    assert joined.status_code == 200 and "已记录" in joined.text
    conn.rollback()
    count, name, phone = conn.execute(
        "SELECT me_too_count, reporter_name, reporter_phone FROM tickets"
    ).fetchone()
    assert (count, name, phone) == (1, "张三", "13812345678")
    assert "13812345678" not in status.text and "张三" not in page.text


def test_report_with_other_needs_a_description(web, conn):
    world, base, _ = web
    with _client(base) as teacher:
        answer = report(teacher, world.codes["HK01-PJ-001"], symptom="other")
    assert answer.status_code == 422
    assert "请简单描述" in answer.text
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0


def test_engineer_accepts_books_and_resolves_then_teacher_rates_once(web, conn):
    world, base, _ = web
    with _client(base) as teacher:
        status_url = report(teacher, world.codes["HK01-PJ-001"]).headers["location"]
    with _client(base) as engineer:
        log_in(engineer, "eng_wang")
        queue = engineer.get("/e")
        token = csrf_token(engineer, "/e/tickets/1")
        accepted = engineer.post("/e/tickets/1/accept", data={"csrf_token": token})
        booked = engineer.post(
            "/e/tickets/1/schedule",
            data={"csrf_token": token, "visit_at": "2030-03-02T14:30"},
        )
        resolved = engineer.post(
            "/e/tickets/1/resolve",
            data={
                "csrf_token": token,
                "resolution_code": "replaced",
                "parts": "lamp, HDMI cable",
                "note": "new lamp",
            },
        )
    with _client(base) as teacher:
        page = teacher.get(status_url)
        token = csrf_token(teacher, status_url)
        rated = teacher.post(
            status_url + "/rate",
            data={"csrf_token": token, "stars": "5", "comment": "快"},
        )
        again = teacher.post(
            status_url + "/rate", data={"csrf_token": token, "stars": "1"}
        )
        after = teacher.get(status_url)

    assert "#1" in queue.text
    assert [accepted.status_code, booked.status_code, resolved.status_code] == [303] * 3
    assert "已修复" in page.text and "服务评价" in page.text
    assert rated.status_code == 303
    assert again.status_code == 410
    assert "已评价：5 星" in after.text
    conn.rollback()
    status, visit, parts = conn.execute(
        "SELECT status, visit_at, parts FROM tickets WHERE id = 1"
    ).fetchone()
    assert status == "closed"
    assert visit == datetime(2030, 3, 2, 6, 30, tzinfo=UTC)
    assert parts == ["lamp", "HDMI cable"]
    stars = conn.execute("SELECT stars FROM ticket_ratings").fetchone()[0]
    assert stars == 5


def test_rating_link_sent_to_the_reporter_works_once(web, conn):
    world, base, _ = web
    with _client(base) as teacher:
        report(teacher, world.codes["HK01-PJ-001"])
    now = datetime.now(UTC)
    service.transition(conn, 1, "accept", "test", "", now)
    service.transition(conn, 1, "resolve", "test", "", now, resolution_code="fixed")
    token = service.issue_rating_token(conn, 1, now)
    conn.commit()
    link = service.rating_link(service.DEFAULT_CONFIG, token)
    path = link[link.index("/rate/") :]

    with _client(base) as teacher:
        form = teacher.get(path)
        csrf = csrf_token(teacher, path)
        rated = teacher.post(f"/rate/{token}", data={"csrf_token": csrf, "stars": "4"})
        reused = teacher.get(path)

    assert form.status_code == 200 and "服务评价" in form.text
    assert rated.status_code == 303
    assert reused.status_code == 404


def test_reporter_data_is_masked_for_other_engineers_and_reads_are_audited(web, conn):
    world, base, _ = web
    conn.execute(
        "INSERT INTO school_engineers (school_id, engineer_id, role) "
        "VALUES (%s, %s, 'backup')",
        [world.schools["HK01"], world.engineers["li"]],
    )
    conn.commit()
    with _client(base) as teacher:
        sent = report(
            teacher, world.codes["HK01-PJ-001"], name="张三", phone="13812345678"
        )
        assert sent.status_code == 303, sent.text
    with _client(base) as backup:
        log_in(backup, "eng_li")
        masked = backup.get("/e/tickets/1")
    with _client(base) as owner:
        log_in(owner, "eng_wang")
        shown = owner.get("/e/tickets/1")

    assert "张*" in masked.text and "138****5678" in masked.text
    assert "13812345678" not in masked.text
    assert "张三" in shown.text and "13812345678" in shown.text
    conn.rollback()
    audited = conn.execute(
        "SELECT user_id, object_id FROM audit_log WHERE action = 'read_personal_data'"
    ).fetchall()
    assert audited == [(world.users["eng_wang"], "1")]


def test_masks_keep_only_a_hint_of_name_and_phone():
    assert mask_name("张三丰") == "张**"
    assert mask_name("") == ""
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("12345") == "*****"


def test_purge_erases_reporter_data_only_after_the_retention(conn, tmp_path):
    world = seed_world(conn)
    now = datetime.now(UTC)
    uploads = tmp_path / "uploads"
    photos = {}
    for name in ("old", "recent"):
        photos[name] = uploads / "2026" / "01" / f"{name}.jpg"
        photos[name].parent.mkdir(parents=True, exist_ok=True)
        photos[name].write_bytes(b"\xff\xd8\xff" + name.encode())

    def photo(name: str) -> dict[str, object]:
        return {"photo": {"name": f"2026/01/{name}.jpg", "content_type": "image/jpeg"}}

    old = service.open_ticket(
        conn,
        source="qr",
        device_id=world.devices["HK01-PJ-001"],
        actor="test",
        now=now - timedelta(days=40),
        symptom="no_picture",
        reporter_name="张三",
        reporter_phone="13812345678",
        data=photo("old"),
    ).ticket
    service.transition(conn, old.id, "cancel", "test", "dup", now - timedelta(days=39))
    recent = service.open_ticket(
        conn,
        source="qr",
        device_id=world.devices["HK01-PN-001"],
        actor="test",
        now=now - timedelta(days=2),
        symptom="touch",
        reporter_name="李四",
        reporter_phone="13900001111",
        data=photo("recent"),
    ).ticket
    service.transition(
        conn, recent.id, "cancel", "test", "dup", now - timedelta(days=1)
    )

    purged = purge_personal_data(
        conn, retention_days=30, now=now, upload_dir=str(uploads)
    )

    rows = {
        ticket_id: (person, has_photo)
        for ticket_id, person, has_photo in conn.execute(
            "SELECT id, reporter_name || '/' || reporter_phone, data ? 'photo' "
            "FROM tickets"
        ).fetchall()
    }
    assert purged == 1
    assert rows == {old.id: ("/", False), recent.id: ("李四/13900001111", True)}
    assert (photos["old"].exists(), photos["recent"].exists()) == (False, True)
    assert purge_personal_data(conn, retention_days=30, now=now) == 0


def test_admin_retires_a_label_code_and_the_old_label_stops_working(web, conn):
    world, base, _ = web
    code = world.codes["HK01-PJ-001"]
    device = world.devices["HK01-PJ-001"]
    with _client(base) as admin:
        log_in(admin, "hk_school")
        token = csrf_token(admin, f"/a/devices/{device}")
        retired = admin.post(
            f"/a/devices/{device}/retire-code", data={"csrf_token": token}
        )
        page = admin.get(f"/a/devices/{device}")
    with _client(base) as teacher:
        old = teacher.get(f"/r/{code}")

    assert retired.status_code == 303
    assert code not in page.text
    assert old.status_code == 404


def test_admin_issues_an_enrollment_token_shown_once(web, conn):
    _, base, _ = web
    with _client(base) as admin:
        log_in(admin, "hk_bureau")
        token = csrf_token(admin, "/a/schools/HK01")
        issued = admin.post(
            "/a/schools/HK01/enrollment",
            data={"csrf_token": token, "label": "机房", "max_uses": "30"},
        )
        again = admin.get("/a/schools/HK01")

    assert issued.status_code == 200
    assert "高一(1)班" in issued.text and "王工" in issued.text
    shown = issued.text.split("<code>")[1].split("</code>")[0]
    assert len(shown) > 20 and shown not in again.text
    assert "0/30" in again.text
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM enrollment_tokens").fetchone()[0] == 1


def test_admin_assigns_and_removes_a_backup_engineer(web, conn):
    world, base, _ = web
    li = world.engineers["li"]
    with _client(base) as admin:
        log_in(admin, "prov")
        token = csrf_token(admin, "/a/schools/HK01")
        added = admin.post(
            "/a/schools/HK01/engineers",
            data={"csrf_token": token, "engineer_id": str(li), "role": "backup"},
        )
        page = admin.get("/a/schools/HK01")
        conn.rollback()
        roles = conn.execute(
            "SELECT engineer_id, role FROM school_engineers WHERE school_id = %s",
            [world.schools["HK01"]],
        ).fetchall()
        removed = admin.post(
            "/a/schools/HK01/engineers",
            data={"csrf_token": token, "engineer_id": str(li), "remove": "true"},
        )

    assert added.status_code == removed.status_code == 303
    assert "李工" in page.text
    assert sorted(roles) == sorted(
        [(world.engineers["wang"], "primary"), (li, "backup")]
    )
    conn.rollback()
    left = conn.execute(
        "SELECT engineer_id FROM school_engineers WHERE school_id = %s",
        [world.schools["HK01"]],
    ).fetchall()
    assert left == [(world.engineers["wang"],)]


def test_admin_reassigns_a_ticket_and_merges_a_duplicate(web, conn):
    world, base, _ = web
    now = datetime.now(UTC)
    first = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["HK01-PJ-001"],
        actor="t",
        now=now,
        symptom="no_picture",
    )
    second = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["HK01-PN-001"],
        actor="t",
        now=now,
        symptom="touch",
    )
    conn.execute(
        "INSERT INTO school_engineers (school_id, engineer_id, role) "
        "VALUES (%s, %s, 'backup')",
        [world.schools["HK01"], world.engineers["li"]],
    )
    conn.commit()
    with _client(base) as admin:
        log_in(admin, "hk_bureau")
        listing = admin.get("/a/tickets?open_only=true")
        token = csrf_token(admin, "/a/tickets")
        moved = admin.post(
            f"/a/tickets/{first.id}/reassign",
            data={"csrf_token": token, "engineer_id": str(world.engineers["li"])},
        )
        merged = admin.post(
            f"/a/tickets/{second.id}/merge",
            data={"csrf_token": token, "into_id": str(first.id)},
        )

    assert f"/e/tickets/{second.id}" in listing.text
    assert moved.status_code == merged.status_code == 303
    conn.rollback()
    assert service.get_ticket(conn, first.id).engineer_id == world.engineers["li"]
    assert service.get_ticket(conn, second.id).merged_into == first.id


def test_admin_adds_a_room_and_a_duplicate_name_is_explained(web, conn):
    _, base, _ = web
    with _client(base) as admin:
        log_in(admin, "hk_school")
        token = csrf_token(admin, "/a/schools/HK01")
        added = admin.post(
            "/a/schools/HK01/rooms",
            data={"csrf_token": token, "name": "初三(2)班", "kind": "exam"},
        )
        again = admin.post(
            "/a/schools/HK01/rooms", data={"csrf_token": token, "name": "初三(2)班"}
        )
        other = admin.post(
            "/a/schools/SY01/rooms", data={"csrf_token": token, "name": "x"}
        )
    assert added.status_code == 303
    assert again.status_code == 422 and "初三(2)班" in again.text
    assert other.status_code == 404
    conn.rollback()
    kinds = conn.execute("SELECT kind FROM rooms WHERE name = '初三(2)班'").fetchall()
    assert kinds == [("exam",)]
