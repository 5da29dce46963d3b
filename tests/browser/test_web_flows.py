"""The pages in headless Chromium on a phone-sized screen.

Screenshots of each step land in ``test-artifacts/``.
"""

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from edufleet_collector.tickets import service
from webseed import PASSWORD, running_server, seed_world, web_settings

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def site(conn, settings, tmp_path):
    world = seed_world(conn)
    with running_server(web_settings(settings, tmp_path)) as base:
        yield world, base


def _phone(browser, **options):
    options.setdefault("locale", "zh-CN")
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, **options
    )
    context.set_default_timeout(10_000)
    return context


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _log_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit] >> text=登录")


def test_teacher_reports_second_teacher_adds_me_too_and_first_rates(
    browser, site, conn
):
    world, base = site
    code = world.codes["HK01-PJ-001"]

    first = _phone(browser)
    page = first.new_page()
    page.goto(f"{base}/r/{code}")
    assert page.locator("h1").inner_text() == "投影仪"
    _shot(page, "teacher-1-landing")
    page.get_by_label("无画面").check()
    page.fill("#description", "开机后蓝屏 <b>没有信号</b>")
    page.fill("#name", "张老师")
    page.fill("#phone", "13812345678")
    page.click("text=提交报修")
    page.wait_for_url(f"{base}/t/*")
    status_url = page.url
    assert "王工" in page.inner_text("main")
    assert page.locator(".steps li.red").count() == 1
    _shot(page, "teacher-2-status-red")

    second = _phone(browser)
    other = second.new_page()
    other.goto(f"{base}/r/{code}")
    assert "此设备已有报修在处理中" in other.inner_text("main")
    other.click("text=我也遇到同样故障")
    assert "已记录" in other.inner_text("main")
    _shot(other, "teacher-3-me-too")
    second.close()

    ticket_id = service.find_open_ticket(conn, world.devices["HK01-PJ-001"]).id
    now = datetime.now(UTC)
    service.transition(conn, ticket_id, "accept", "test", "", now)
    service.transition(
        conn, ticket_id, "resolve", "test", "", now, resolution_code="replaced"
    )
    conn.commit()

    page.goto(status_url)
    assert page.locator(".steps li.green").count() == 3
    page.click("label[for=star4]")
    page.fill("#comment", "修得很快")
    _shot(page, "teacher-4-rating")
    page.click("text=提交评价")
    assert "已评价：4 星" in page.inner_text("main")
    _shot(page, "teacher-5-rated")
    first.close()

    conn.rollback()
    me_too, status = conn.execute(
        "SELECT me_too_count, status FROM tickets WHERE id = %s", [ticket_id]
    ).fetchone()
    assert (me_too, status) == (1, "closed")


def test_teacher_page_switches_to_english(browser, site):
    world, base = site
    context = _phone(browser)
    page = context.new_page()
    page.goto(f"{base}/r/{world.codes['HK01-PN-001']}")
    page.click("text=English")
    assert page.locator("h1").inner_text() == "Interactive panel"
    assert page.get_by_label("Touch not working").count() == 1
    _shot(page, "teacher-english")
    context.close()


def test_engineer_accepts_books_and_resolves_on_a_phone(browser, site, conn):
    world, base = site
    ticket = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["HK01-PN-001"],
        actor="test",
        now=datetime.now(UTC),
        symptom="touch",
        reporter_name="李老师",
        reporter_phone="13900001111",
    )
    conn.commit()

    context = _phone(browser)
    page = context.new_page()
    _log_in(page, base, "eng_wang")
    page.wait_for_url(f"{base}/e")
    _shot(page, "engineer-1-queue")
    page.click(f"a[href='/e/tickets/{ticket.id}']")
    assert "13900001111" in page.inner_text("main")
    page.click("button:has-text('接单')")
    assert "工程师已接单" in page.inner_text("main")
    _shot(page, "engineer-2-accepted")
    page.fill("#visit_at", "2030-03-02T14:30")
    page.click("form[action$=schedule] button")
    assert "2030-03-02 14:30" in page.inner_text("main")
    page.select_option("#resolution_code", "replaced")
    page.fill("#parts", "触摸框")
    page.fill("#rnote", "更换触摸框")
    page.click("form[action$=resolve] button")
    assert "已修复" in page.inner_text("main")
    _shot(page, "engineer-3-resolved")
    context.close()

    conn.rollback()
    status, code, parts = conn.execute(
        "SELECT status, resolution_code, parts FROM tickets WHERE id = %s",
        [ticket.id],
    ).fetchone()
    assert (status, code, parts) == ("resolved", "replaced", ["触摸框"])


def test_admin_imports_ledger_and_prints_labels(browser, site, tmp_path):
    _, base = site
    ledger = io.StringIO()
    writer = csv.writer(ledger)
    writer.writerow(["资产编号", "设备名称", "设备类别", "所属学校", "使用地点/教室"])
    for n in range(30):
        writer.writerow([f"HK01-NEW-{n:03d}", "学生机", "台式机", "HK01", "机房"])
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "资产编号,设备名称,设备类别,所属学校\nX-1,?,飞船,HK01\n", encoding="utf-8"
    )
    good = tmp_path / "台账.csv"
    good.write_text(ledger.getvalue(), encoding="utf-8")

    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    _log_in(page, base, "hk_bureau")
    page.goto(f"{base}/a/import")
    page.set_input_files("#ledger", str(bad))
    page.click("form[action='/a/import'] button")
    errors = page.locator("table.errors tr")
    assert errors.count() >= 2
    assert "飞船" in page.inner_text("table.errors")
    _shot(page, "admin-1-import-errors")

    page.set_input_files("#ledger", str(good))
    page.click("form[action='/a/import'] button")
    assert "导入成功" in page.inner_text("#report")
    _shot(page, "admin-2-import-ok")

    page.goto(f"{base}/a/devices?school=HK01&q=HK01-NEW")
    boxes = page.locator("input[name=device]")
    assert boxes.count() == 30
    for index in range(26):
        boxes.nth(index).check()
    page.select_option("#layout", "3x8")
    page.fill("#start_at", "3")
    with page.expect_download(timeout=30_000) as download:
        page.locator("form[action='/a/labels'] button[type=submit]").click()
    pdf = tmp_path / "labels.pdf"
    download.value.save_as(str(pdf))
    # A full-page screenshot resizes the view, so it is taken after the click.
    _shot(page, "admin-3-label-selection")
    context.close()

    pages = PdfReader(str(pdf)).pages
    # 26 labels from position 3 of a 24-label sheet fill two sheets.
    assert len(pages) == 2
