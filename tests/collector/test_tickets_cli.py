"""``edufleet channels`` and ``edufleet sla`` against a real database."""

from __future__ import annotations

import pytest
from ticket_world import build_world

from edufleet_collector.cli import main
from edufleet_collector.commands.tickets import parse_duration
from edufleet_collector.errors import InvalidInput
from edufleet_collector.tickets.sla import policy_for


def test_sla_set_overrides_the_policy_of_a_region(conn, settings, capsys) -> None:  # type: ignore[no-untyped-def]
    world = build_world(conn)
    code = main(
        [
            "sla",
            "set",
            "--region",
            "460105",
            "--priority",
            "high",
            "--response",
            "30m",
            "--resolution",
            "1d",
            "--measure",
            "wall",
        ]
    )
    assert code == 0
    policy = policy_for(conn, world.school_id, "high")
    assert (policy.region_code, policy.response_seconds) == ("460105", 1800)
    assert (policy.resolution_seconds, policy.measure) == (86400, "wall")
    assert main(["sla", "list"]) == 0
    assert "460105" in capsys.readouterr().out


def test_channels_add_checks_the_target(conn, settings, capsys) -> None:  # type: ignore[no-untyped-def]
    build_world(conn)
    ok = main(
        [
            "channels",
            "add",
            "--region",
            "460105",
            "--audience",
            "supervisors",
            "--kind",
            "wecom",
            "--target",
            "https://qyapi.example/send?key=k",
        ]
    )
    assert ok == 0
    bad = main(
        [
            "channels",
            "add",
            "--audience",
            "engineers",
            "--kind",
            "email",
            "--target",
            "not-an-address",
        ]
    )
    assert bad == 2
    assert "e-mail address" in capsys.readouterr().err
    assert main(["channels", "list"]) == 0
    out = capsys.readouterr().out
    assert "https://qyapi.example/send" in out and "key=k" not in out


def test_durations_need_a_unit() -> None:
    assert parse_duration("90s", "response") == 90
    assert parse_duration("1.5h", "response") == 5400
    with pytest.raises(InvalidInput) as caught:
        parse_duration("15", "response")
    assert "15m" in str(caught.value)
