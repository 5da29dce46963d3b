"""``edufleet labels``: print a school's QR labels as A4 sticker sheets."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..labels import LAYOUTS, labels_for_school, layout_named, write_pdf
from .common import connect, start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "labels", help="print QR labels for a school's devices as a PDF"
    )
    parser.add_argument("--school", required=True, help="school code")
    parser.add_argument("--room", help="only the devices of this room (its name)")
    parser.add_argument(
        "--layout",
        default="3x8",
        choices=sorted(LAYOUTS),
        help="sticker sheet: 3x8 or 4x10 on A4, or one thermal label per page",
    )
    parser.add_argument(
        "--start-at",
        type=int,
        default=1,
        metavar="N",
        help="first free position on the first sheet (1 = top left), "
        "to use up a partly used sheet",
    )
    parser.add_argument(
        "--reissue",
        action="store_true",
        help="issue new codes and retire the old ones (old labels stop working)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the PDF to write")
    parser.set_defaults(handler=run_labels)


def run_labels(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    layout = layout_named(args.layout)
    with connect(settings) as conn:
        labels = labels_for_school(
            conn,
            args.school,
            public_url=settings.public_url,
            room=args.room,
            reissue=args.reissue,
        )
        with args.out.open("wb") as out:
            pages = write_pdf(labels, out, layout=layout, start_at=args.start_at)
    print(f"{len(labels)} labels on {pages} page(s) written to {args.out}")
    return 0
