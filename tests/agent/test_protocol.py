"""The wire contract: topics, payload models, parse_payload and the schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from edufleet_protocol import models, schema, topics
from edufleet_protocol.errors import PayloadError, TopicError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "agent" / "schemas"
NOW = "2026-12-03T08:00:00+08:00"


def sample_telemetry(**metrics: object) -> dict[str, object]:
    return {
        "v": 1,
        "samples": [
            {"sid": "s1234567", "seq": 1, "ts": NOW, "metrics": metrics},
        ],
    }


def test_topic_builders_round_trip_through_parse_topic() -> None:
    assert topics.state_topic("pc-101") == "edufleet/v1/pc-101/state"
    assert topics.parse_topic("edufleet/v1/pc-101/telemetry") == (
        "pc-101",
        "telemetry",
        None,
    )
    built = topics.command_result_topic("pc-101", "collect-now")
    assert topics.parse_topic(built) == ("pc-101", "cmd-result", "collect-now")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("edufleet/v2/pc-101/state", "not under"),
        ("edufleet/v1/PC-101/state", "does not match"),
        ("edufleet/v1/pc-101/weather", "unknown kind"),
        ("edufleet/v1/pc-101/cmd", "cmd/<command name>"),
        ("edufleet/v1/pc-101/state/extra", "extra levels"),
        ("edufleet/v1/ab/state", "does not match"),
    ],
)
def test_parse_topic_refuses_foreign_topics(value: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=fragment) as caught:
        topics.parse_topic(value)
    assert caught.value.reason == "bad_topic"


def test_ingest_filters_are_shared_subscriptions_for_every_kind() -> None:
    filters = topics.ingest_filters()
    assert "$share/edufleet/edufleet/v1/+/telemetry" in filters
    assert "$share/edufleet/edufleet/v1/+/cmd-result/+" in filters
    assert all(f.startswith("$share/edufleet/") for f in filters)


def test_parse_payload_returns_model_for_valid_telemetry() -> None:
    raw = json.dumps(sample_telemetry(**{"host.cpu_pct": 12.5})).encode()
    parsed = models.parse_payload("telemetry", raw)
    assert isinstance(parsed, models.Telemetry)
    assert parsed.samples[0].metrics["host.cpu_pct"] == 12.5
    assert parsed.samples[0].ts.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"v": 1, "samples": [', "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "invalid"),
        (
            b'{"v":1,"samples":[{"sid":"s1234567","seq":1,"ts":"'
            + NOW.encode()
            + b'","metrics":{"host.cpu_pct":NaN}}]}',
            "nan",
        ),
        (
            b'{"v":1,"samples":[{"sid":"s1234567","seq":1,"ts":"'
            + NOW.encode()
            + b'","metrics":{"host.cpu_pct":1e400}}]}',
            "nan",
        ),
        (
            json.dumps(
                {
                    "v": 1,
                    "samples": [
                        {
                            "sid": "s1234567",
                            "seq": 1,
                            "ts": "2026-12-03T08:00:00",
                            "metrics": {},
                        }
                    ],
                }
            ).encode(),
            "invalid",
        ),
        (json.dumps(sample_telemetry(**{"Bad Name": 1})).encode(), "invalid"),
        (json.dumps({"v": 2, "samples": []}).encode(), "invalid"),
    ],
)
def test_parse_payload_rejects_bad_telemetry_with_reason(
    raw: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        models.parse_payload("telemetry", raw)
    assert caught.value.reason == reason


def test_parse_payload_refuses_oversized_payload_naming_limit() -> None:
    raw = json.dumps(sample_telemetry(**{"host.cpu_pct": 1})).encode()
    with pytest.raises(PayloadError, match="exceeds the 100-byte limit") as caught:
        models.parse_payload("telemetry", raw, max_bytes=100)
    assert caught.value.reason == "too_large"


def test_parse_payload_refuses_too_many_samples() -> None:
    sample = {"sid": "s1234567", "seq": 1, "ts": NOW, "metrics": {}}
    body = {"v": 1, "samples": [sample] * (models.MAX_SAMPLES + 1)}
    with pytest.raises(PayloadError, match="samples") as caught:
        models.parse_payload("telemetry", json.dumps(body).encode())
    assert caught.value.reason == "invalid"


def test_event_payload_is_discriminated_by_kind() -> None:
    fault = models.FaultEvent(
        action="opened",
        code="DISK_FULL",
        severity="major",
        message="disk / is 97% full",
        evidence={"host.disk_pct[/]": 97.0},
        subject="pc-101",
        sid="s1234567",
        seq=4,
        ts=datetime(2026, 12, 3, tzinfo=UTC),
    )
    parsed = models.parse_payload("event", models.dump_payload(fault))
    assert parsed == fault


def test_checked_in_schemas_equal_generated_ones() -> None:
    assert schema.stale(SCHEMA_DIR) == []


def test_schema_accepts_model_output_and_refuses_bad_metric_name() -> None:
    telemetry = json.loads((SCHEMA_DIR / "telemetry.json").read_text())
    good = sample_telemetry(**{"host.disk_pct[/]": 50.0})
    jsonschema.validate(good, telemetry)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sample_telemetry(**{"Bad Name": 1}), telemetry)
