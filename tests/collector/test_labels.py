import io

import pytest
from pypdf import PdfReader

from edufleet_collector.cli import main
from edufleet_collector.errors import InvalidInput, NotFound
from edufleet_collector.labels import (
    LAYOUTS,
    Label,
    labels_for_school,
    reissue_code,
    retire_code,
    write_pdf,
)
from webseed import seed_world


def _label(n: int) -> Label:
    return Label(
        url=f"https://fix.example.cn/r/code{n:08d}",
        school="海口市第一中学",
        room="高一(1)班",
        asset_tag=f"HK01-{n:04d}",
        category="投影仪",
    )


def _pages(data: bytes) -> list[tuple[float, float]]:
    reader = PdfReader(io.BytesIO(data))
    return [
        (float(page.mediabox.width), float(page.mediabox.height))
        for page in reader.pages
    ]


@pytest.mark.parametrize(
    ("layout", "count", "start_at", "pages"),
    [("3x8", 24, 1, 1), ("3x8", 24, 2, 2), ("4x10", 41, 1, 2), ("4x10", 30, 11, 1)],
)
def test_write_pdf_fills_sheets_from_the_start_position(layout, count, start_at, pages):
    out = io.BytesIO()
    written = write_pdf(
        [_label(n) for n in range(count)],
        out,
        layout=LAYOUTS[layout],
        start_at=start_at,
    )
    sizes = _pages(out.getvalue())
    assert written == pages == len(sizes)
    width, height = sizes[0]
    assert round(width / 72 * 25.4) == 210
    assert round(height / 72 * 25.4) == 297


def test_write_pdf_thermal_layout_prints_one_label_per_small_page():
    out = io.BytesIO()
    write_pdf([_label(n) for n in range(3)], out, layout=LAYOUTS["thermal-50x30"])
    sizes = _pages(out.getvalue())
    assert len(sizes) == 3
    assert [round(v / 72 * 25.4) for v in sizes[0]] == [50, 30]


def test_write_pdf_refuses_a_start_position_outside_the_sheet():
    with pytest.raises(InvalidInput, match="positions 1 to 24") as caught:
        write_pdf([_label(1)], io.BytesIO(), layout=LAYOUTS["3x8"], start_at=25)
    assert caught.value.field == "start_at"


def test_reissue_retires_the_old_code_and_keeps_one_active(conn):
    world = seed_world(conn)
    device = world.devices["HK01-PJ-001"]
    old = world.codes["HK01-PJ-001"]

    new = reissue_code(conn, device)

    rows = conn.execute(
        "SELECT code, retired_at IS NULL FROM device_codes WHERE device_id = %s",
        [device],
    ).fetchall()
    assert dict(rows) == {old: False, new: True}
    assert new != old and len(new) >= 12
    assert "HK01" not in new


def test_retire_code_refuses_an_already_retired_code(conn):
    world = seed_world(conn)
    code = world.codes["HK01-PJ-001"]
    retire_code(conn, code)
    with pytest.raises(NotFound):
        retire_code(conn, code)


def test_labels_for_school_filters_by_room_and_uses_active_codes(conn):
    world = seed_world(conn)
    labels = labels_for_school(
        conn, "HK01", public_url="https://fix.example.cn/", room="高一(1)班"
    )
    assert sorted(label.asset_tag for label in labels) == ["HK01-PJ-001", "HK01-PN-001"]
    urls = {label.url for label in labels}
    assert f"https://fix.example.cn/r/{world.codes['HK01-PJ-001']}" in urls
    with pytest.raises(NotFound, match="no room named"):
        labels_for_school(conn, "HK01", public_url="https://x", room="nowhere")


def test_labels_command_writes_pdf_and_reissue_changes_codes(
    conn, settings, tmp_path, capsys
):
    world = seed_world(conn)
    out = tmp_path / "labels.pdf"

    code = main(["labels", "--school", "HK01", "--start-at", "23", "--out", str(out)])

    assert code == 0
    assert len(_pages(out.read_bytes())) == 2
    assert "3 labels on 2 page(s)" in capsys.readouterr().out

    assert main(["labels", "--school", "HK01", "--reissue", "--out", str(out)]) == 0
    active = conn.execute(
        "SELECT code FROM device_codes WHERE device_id = %s AND retired_at IS NULL",
        [world.devices["HK01-PC-001"]],
    ).fetchone()
    assert active is not None and active[0] != world.codes["HK01-PC-001"]


def test_labels_command_names_an_unknown_school(settings, tmp_path, capsys):
    code = main(["labels", "--school", "NOPE", "--out", str(tmp_path / "x.pdf")])
    assert code == 2
    assert "school 'NOPE' does not exist" in capsys.readouterr().err
