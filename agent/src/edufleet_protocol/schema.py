"""JSON Schemas of the payloads, generated from the models.

python -m edufleet_protocol.schema --write agent/schemas/
python -m edufleet_protocol.schema --check agent/schemas/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter

from edufleet_protocol import models

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_BASE: Final = "https://edufleet.example/schemas/v1/"

# File stem -> the type it describes. The stems match the payload kinds of
# ``parse_payload``, with "cmd" spelled out as "command".
PAYLOADS: Final[dict[str, Any]] = {
    "state": models.StatePayload,
    "birth": models.Birth,
    "telemetry": models.Telemetry,
    "event": models.Event,
    "fault-event": models.FaultEvent,
    "inventory-change": models.InventoryChange,
    "command": models.Command,
    "command-result": models.CommandResult,
    "enroll-request": models.EnrollRequest,
    "enroll-response": models.EnrollResponse,
}


def _close_pattern_maps(node: Any) -> None:
    # A dict keyed by a constrained string becomes "patternProperties"; keys
    # that match no pattern must be refused, as the models refuse them.
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


def generate() -> dict[str, dict[str, Any]]:
    """Return ``{file name: schema}`` for every payload."""
    schemas: dict[str, dict[str, Any]] = {}
    for stem, target in PAYLOADS.items():
        body = TypeAdapter(target).json_schema(mode="validation")
        _close_pattern_maps(body)
        schema = {"$schema": SCHEMA_DIALECT, "$id": f"{ID_BASE}{stem}.json", **body}
        if "title" not in schema:
            schema["title"] = stem
        schemas[f"{stem}.json"] = schema
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in generate().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    out = []
    for name, schema in generate().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(schema):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the payload JSON Schemas.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="DIR")
    group.add_argument("--check", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    if args.write:
        for path in write(args.write):
            print(path)
        return 0
    names = stale(args.check)
    if names:
        print(
            f"out of date in {args.check}: {', '.join(names)}; regenerate with "
            f"python -m edufleet_protocol.schema --write {args.check}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
