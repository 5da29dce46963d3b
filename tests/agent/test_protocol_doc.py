"""PROTOCOL.md stays true to the models: examples validate, every model is named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from edufleet_protocol import models
from edufleet_protocol.topics import KINDS

AGENT = Path(__file__).resolve().parents[2] / "agent"
DOC = (AGENT / "PROTOCOL.md").read_text()
EXAMPLES = re.findall(r"<!-- schema: ([\w.-]+) -->\n```json\n(.*?)\n```", DOC, re.S)


def test_doc_has_an_example_for_every_schema() -> None:
    shown = {name for name, _ in EXAMPLES}
    for schema in ("state", "birth", "telemetry", "event", "command", "command-result"):
        assert f"{schema}.json" in shown


@pytest.mark.parametrize(("schema", "example"), EXAMPLES)
def test_doc_example_validates_against_its_schema(schema: str, example: str) -> None:
    document = json.loads(example)
    jsonschema.validate(document, json.loads((AGENT / "schemas" / schema).read_text()))


def test_doc_names_every_payload_model_and_topic_kind() -> None:
    payloads = [
        name
        for name, value in vars(models).items()
        if isinstance(value, type)
        and issubclass(value, models.Payload)
        and value is not models.Payload
    ]
    assert len(payloads) >= 9
    for name in payloads:
        assert f"`{name}`" in DOC, f"PROTOCOL.md does not mention {name}"
    for kind in KINDS:
        assert f"/{kind}" in DOC
