"""The decoder on literal and generated inputs: no database, no broker."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from edufleet_collector.ingest.decode import Decoder, Limits, Received
from edufleet_collector.ingest.devices import Device
from edufleet_protocol.errors import ProtocolError
from edufleet_protocol.models import parse_payload

LIMITS = Limits(
    max_payload_bytes=256 * 1024,
    max_clock_ahead=300,
    max_sample_age=30 * 86400,
    clock_suspect=120,
)
DEVICES = {
    "pc-1": Device(1, "in_service", 1, "desktop", False),
    "pc-2": Device(2, "retired", 1, "desktop", False),
}
TOPIC = "edufleet/v1/pc-1/telemetry"


def decode(topic: str, payload: bytes) -> object:
    message = Received(1, 1, topic, payload, time.time())
    return Decoder(LIMITS).decode([message], DEVICES)


def sample_document(value: object, seq: object = 1) -> dict[str, object]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return {
        "v": 1,
        "samples": [
            {"sid": "abcdefgh", "seq": seq, "ts": stamp, "metrics": {"a.b": value}}
        ],
    }


scalars = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.booleans()
    | st.text(max_size=300)
    | st.none()
    | st.lists(st.integers(), max_size=2)
)


@settings(max_examples=150, deadline=None)
@given(
    value=scalars, seq=st.integers(min_value=-5, max_value=2**64) | st.text(max_size=3)
)
def test_fast_path_accepts_exactly_what_parse_payload_accepts(
    value: object, seq: object
) -> None:
    raw = json.dumps(sample_document(value, seq)).encode()
    try:
        parse_payload("telemetry", raw)
        accepted = True
    except ProtocolError:
        accepted = False

    batch = decode(TOPIC, raw)

    assert (len(batch.copy_lines), len(batch.rejections)) == (  # type: ignore[attr-defined]
        (1, 0) if accepted else (0, 1)
    )


@settings(max_examples=150, deadline=None)
@given(
    topic=st.sampled_from([TOPIC, "edufleet/v1/pc-2/telemetry", "edufleet/v1/x/event"])
    | st.text(max_size=80),
    payload=st.binary(max_size=600),
)
def test_any_bytes_on_any_topic_become_one_rejection_or_rows(
    topic: str, payload: bytes
) -> None:
    batch = decode(topic, payload)

    outcomes = len(batch.rejections) + len(batch.copy_lines)  # type: ignore[attr-defined]
    assert outcomes == 1
    for rejection in batch.rejections:  # type: ignore[attr-defined]
        assert rejection.reason and rejection.detail
        assert len(rejection.sample) <= 2048


def test_copy_line_escapes_backslashes_in_metric_text() -> None:
    raw = json.dumps(sample_document('C:\\temp\t"x"')).encode()

    batch = decode(TOPIC, raw)

    fields = batch.copy_lines[0].rstrip("\n").split("\t")  # type: ignore[attr-defined]
    assert len(fields) == 6
    unescaped = fields[4].replace("\\\\", "\\")
    assert json.loads(unescaped) == {"a.b": 'C:\\temp\t"x"'}
