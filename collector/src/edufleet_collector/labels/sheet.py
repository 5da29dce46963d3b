"""Render QR labels onto sticker sheets and write them as a multi-page PDF.

Pages are drawn as 300 dpi bitmaps with Pillow and saved as one PDF, so the
printed size is exact on any printer that prints at 100 %.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import qrcode
from PIL import Image, ImageDraw, ImageFont

from ..errors import ConfigError, InvalidInput

DPI = 300
CALL_TO_ACTION = ("扫码报修", "Scan to report")
CJK_FONT_PACKAGES = "fonts-wqy-microhei (or fonts-noto-cjk)"
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
)


@dataclass(frozen=True)
class Layout:
    """A sheet: page size, a grid of labels and the margins around it, in mm."""

    name: str
    page_mm: tuple[float, float]
    columns: int
    rows: int
    label_mm: tuple[float, float]
    margin_mm: tuple[float, float]
    gap_mm: tuple[float, float] = (0.0, 0.0)

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("3x8", (210, 297), 3, 8, (70, 36), (0, 4.5)),
        Layout("4x10", (210, 297), 4, 10, (52.5, 29.7), (0, 0)),
        Layout("thermal-50x30", (50, 30), 1, 1, (50, 30), (0, 0)),
    )
}


@dataclass(frozen=True)
class Label:
    """What one sticker says: the URL in its QR code and the lines beside it."""

    url: str
    school: str
    room: str
    asset_tag: str
    category: str


def _px(mm: float) -> int:
    return round(mm / 25.4 * DPI)


def find_cjk_font() -> str:
    """The path of a font with Chinese glyphs; ConfigError names the package."""
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    if shutil.which("fc-list"):
        listed = subprocess.run(
            ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, check=False
        ).stdout
        files = sorted(line.split(":")[0].strip() for line in listed.splitlines())
        if files and files[0]:
            return files[0]
    found = glob.glob("/usr/share/fonts/**/*CJK*", recursive=True)
    if found:
        return sorted(found)[0]
    raise ConfigError(
        "no font with Chinese characters is installed, so labels cannot be drawn; "
        f"install one with: apt-get install {CJK_FONT_PACKAGES}"
    )


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(find_cjk_font(), size)


def _fit(
    draw: ImageDraw.ImageDraw, text: str, size: int, width: int, *, shrink_to: int
) -> tuple[str, int]:
    """``text`` and a font size that fit ``width`` pixels: the size shrinks down
    to ``shrink_to`` first, then the text is shortened with an ellipsis."""
    while size > shrink_to and draw.textlength(text, font=_font(size)) > width:
        size -= 1
    font = _font(size)
    if draw.textlength(text, font=font) <= width:
        return text, size
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…", size


def _qr_image(url: str, side: int) -> Image.Image:
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=1
    )
    code.add_data(url)
    code.make(fit=True)
    modules = code.modules_count + 2 * code.border
    code.box_size = max(1, side // modules)
    image: Image.Image = code.make_image(
        fill_color="black", back_color="white"
    ).get_image()
    return image.convert("L")


def draw_label(label: Label, size: tuple[int, int]) -> Image.Image:
    """One label as a grey-scale bitmap of ``size`` pixels."""
    width, height = size
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    pad = max(6, height // 20)

    qr = _qr_image(label.url, min(height - 2 * pad, int(width * 0.45)))
    image.paste(qr, (pad, (height - qr.height) // 2))

    left = pad + qr.width + pad // 2
    text_width = width - left - pad
    small = max(14, height // 12)
    big = max(18, height // 8)
    lines = [
        (label.school, small, small * 2 // 3),
        (label.room, small, small * 2 // 3),
        (label.asset_tag, big, small * 2 // 3),
        (label.category, small, small * 2 // 3),
        (CALL_TO_ACTION[0], small, small * 2 // 3),
        (CALL_TO_ACTION[1], small, small * 2 // 3),
    ]
    y = max(pad, (height - sum(round(s * 1.2) for _, s, _ in lines)) // 2)
    for text, font_size, smallest in lines:
        fitted, fitted_size = _fit(
            draw, text, font_size, text_width, shrink_to=smallest
        )
        if fitted:
            draw.text((left, y), fitted, fill=0, font=_font(fitted_size))
        y += round(font_size * 1.2)
    return image


def _pages(
    labels: Sequence[Label], layout: Layout, start_at: int
) -> Iterator[Image.Image]:
    page_size = (_px(layout.page_mm[0]), _px(layout.page_mm[1]))
    label_size = (_px(layout.label_mm[0]), _px(layout.label_mm[1]))
    slots = [None] * (start_at - 1) + list(labels)
    for first in range(0, len(slots), layout.per_page):
        page = Image.new("L", page_size, 255)
        for index, label in enumerate(slots[first : first + layout.per_page]):
            if label is None:
                continue
            row, column = divmod(index, layout.columns)
            x = _px(
                layout.margin_mm[0] + column * (layout.label_mm[0] + layout.gap_mm[0])
            )
            y = _px(layout.margin_mm[1] + row * (layout.label_mm[1] + layout.gap_mm[1]))
            page.paste(draw_label(label, label_size), (x, y))
        yield page


def layout_named(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InvalidInput(
            f"label layout {name!r} is unknown; use one of {', '.join(LAYOUTS)}",
            field="layout",
        ) from None


def write_pdf(
    labels: Sequence[Label], out: BinaryIO, *, layout: Layout, start_at: int = 1
) -> int:
    """Write the labels as a PDF, beginning at position ``start_at`` of the first
    sheet (1 is the top-left label); return the number of pages."""
    if not 1 <= start_at <= layout.per_page:
        raise InvalidInput(
            f"start position {start_at} is outside the sheet: layout {layout.name} "
            f"has positions 1 to {layout.per_page}",
            field="start_at",
        )
    if not labels:
        raise InvalidInput(
            "there are no devices to print labels for; check the school and room",
            field="devices",
        )
    pages = [
        page.point(lambda v: 255 if v > 160 else 0, mode="1")
        for page in _pages(labels, layout, start_at)
    ]
    pages[0].save(out, "PDF", resolution=DPI, save_all=True, append_images=pages[1:])
    return len(pages)
