"""QR labels: the codes behind them and the sticker sheets they are printed on."""

from .service import (
    active_code,
    label_url,
    labels_for_devices,
    labels_for_school,
    reissue_code,
    retire_code,
)
from .sheet import LAYOUTS, Label, Layout, find_cjk_font, layout_named, write_pdf

__all__ = [
    "LAYOUTS",
    "Label",
    "Layout",
    "active_code",
    "find_cjk_font",
    "label_url",
    "labels_for_devices",
    "labels_for_school",
    "layout_named",
    "reissue_code",
    "retire_code",
    "write_pdf",
]
