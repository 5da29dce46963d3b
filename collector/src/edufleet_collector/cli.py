"""The ``edufleet`` command line: one sub-command module per program."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .commands import COMMAND_MODULES
from .errors import EdufleetError

log = logging.getLogger("edufleet.collector.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edufleet",
        description="edufleet collector: registry, ingest, tickets, web. "
        "Configured by EDUFLEET_* environment variables.",
    )
    parser.add_argument(
        "--version", action="version", version=f"edufleet {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except EdufleetError as exc:
        print(f"edufleet {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
