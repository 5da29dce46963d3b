"""Render the collector's settings as the README's configuration table.

python scripts/settings_table.py          # print the table
python scripts/settings_table.py --write  # replace it in README.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from edufleet_collector.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table -->", "<!-- /settings-table -->"


def render() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default is PydanticUndefined and field.default_factory is None:
            default = "*required*"
        elif field.default_factory is not None or field.default is None:
            default = ""
        else:
            default = f"`{field.default}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `EDUFLEET_{name.upper()}` | {default} | {meaning} |")
    return "\n".join(rows)


def replaced(text: str) -> str:
    block = f"{START}\n{render()}\n{END}"
    return re.sub(re.escape(START) + ".*?" + re.escape(END), block, text, flags=re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write:
        README.write_text(replaced(README.read_text()))
    else:
        print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
