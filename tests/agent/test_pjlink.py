"""The PJLink client: parsers on literal replies, the probe against a test projector."""

from __future__ import annotations

import hashlib

import pytest
from pjlink_server import projector

from edufleet_agent.probes.pjlink import (
    CommandError,
    PjlinkError,
    PjlinkOptions,
    PjlinkProbe,
    Projector,
    auth_digest,
    parse_errors,
    parse_greeting,
    parse_lamps,
    parse_power,
    parse_reply,
    query_projector,
)


def probe_for(port: int, password: str = "", rated: int | None = None) -> PjlinkProbe:
    options = PjlinkOptions(
        projectors=[
            Projector(
                device_id="proj-101",
                host="127.0.0.1",
                port=port,
                password=password,
                rated_lamp_hours=rated,
            )
        ],
        connect_timeout_s=1.0,
    )
    return PjlinkProbe(options)


def test_greeting_without_auth_returns_none() -> None:
    assert parse_greeting("PJLINK 0") is None


def test_greeting_with_auth_returns_random_and_digest_follows_spec() -> None:
    assert parse_greeting("PJLINK 1 498e4a67") == "498e4a67"
    # The specification's own example: random 498e4a67, password JBMIAProjectorLink.
    assert auth_digest("498e4a67", "JBMIAProjectorLink") == (
        hashlib.md5(b"498e4a67JBMIAProjectorLink").hexdigest()
    )
    assert auth_digest("498e4a67", "JBMIAProjectorLink") == (
        "5d8409bc1c3fa39749434aa3a5c38682"
    )


@pytest.mark.parametrize("line", ["HELLO", "PJLINK 2", "PJLINK 1 ", "PJLINK 1 a$b"])
def test_greeting_garbage_is_refused(line: str) -> None:
    with pytest.raises(PjlinkError) as caught:
        parse_greeting(line)
    assert caught.value.kind == "garbage"


def test_reply_errors_are_reported_by_code() -> None:
    assert parse_reply("%1POWR=1", 1, "POWR") == "1"
    with pytest.raises(CommandError) as caught:
        parse_reply("%1LAMP=ERR3", 1, "LAMP")
    assert caught.value.code == "ERR3"
    with pytest.raises(PjlinkError, match="ERRA"):
        parse_reply("PJLINK ERRA", 1, "POWR")
    with pytest.raises(PjlinkError) as wrong:
        parse_reply("%1INPT=31", 1, "POWR")
    assert wrong.value.kind == "garbage"


def test_value_parsers_read_literal_replies() -> None:
    assert parse_power("3") == "warming"
    assert parse_lamps("1234 1 88 0") == [(1234, True), (88, False)]
    assert parse_errors("002010") == {
        "fan": 0,
        "lamp": 0,
        "temp": 2,
        "cover": 0,
        "filter": 1,
        "other": 0,
    }
    for bad in ("12 1 3", "x 1", "1 5"):
        with pytest.raises(PjlinkError):
            parse_lamps(bad)
    with pytest.raises(PjlinkError):
        parse_errors("0030000")


def test_probe_reads_class1_projector_without_auth() -> None:
    with projector(lamps="4600 1", errors="000000") as server:
        metrics = probe_for(server.port, rated=5000).collect()
    assert metrics["pjlink.up[proj-101]"] is True
    assert metrics["pjlink.ok[proj-101]"] is True
    assert metrics["pjlink.power[proj-101]"] == "on"
    assert metrics["pjlink.lamp_hours[proj-101]"] == 4600
    assert metrics["pjlink.lamp_life_pct[proj-101]"] == 92.0
    assert metrics["pjlink.erst_lamp[proj-101]"] == 0
    assert metrics["pjlink.model[proj-101]"] == "PJ-9000"
    assert "pjlink.serial[proj-101]" not in metrics  # class 1 has no SNUM


def test_probe_authenticates_and_reads_class2_extras() -> None:
    with projector(password="secret", pjclass=2, errors="000200") as server:
        metrics = probe_for(server.port, password="secret").collect()
    assert metrics["pjlink.ok[proj-101]"] is True
    assert metrics["pjlink.class[proj-101]"] == 2
    assert metrics["pjlink.serial[proj-101]"] == "SN12345"
    assert metrics["pjlink.filter_hours[proj-101]"] == 321
    assert metrics["pjlink.erst_cover[proj-101]"] == 2


def test_wrong_password_is_reported_as_auth_failure() -> None:
    with projector(password="secret") as server:
        metrics = probe_for(server.port, password="wrong").collect()
    assert metrics == {
        "pjlink.up[proj-101]": True,
        "pjlink.ok[proj-101]": False,
        "pjlink.error[proj-101]": "auth",
    }


def test_unavailable_lamp_reading_is_skipped_and_failure_flagged() -> None:
    with projector(unavailable={"LAMP"}, broken={"ERST"}) as server:
        report = query_projector("127.0.0.1", server.port, "", 1.0)
        metrics = probe_for(server.port).collect()
    assert report.refused == {"LAMP": "ERR3", "ERST": "ERR4"}
    assert "pjlink.lamp_hours[proj-101]" not in metrics
    assert metrics["pjlink.failure[proj-101]"] is True
    assert metrics["pjlink.power[proj-101]"] == "on"


def test_projector_that_drops_the_connection_is_reported_closed() -> None:
    with projector(behaviour="drop", drop_after=2) as server:
        metrics = probe_for(server.port).collect()
    assert metrics["pjlink.ok[proj-101]"] is False
    assert metrics["pjlink.error[proj-101]"] == "closed"


def test_projector_that_answers_garbage_is_reported_garbage() -> None:
    with projector(behaviour="garbage") as server:
        metrics = probe_for(server.port).collect()
    assert metrics["pjlink.error[proj-101]"] == "garbage"


def test_silent_projector_times_out_and_closed_port_is_unreachable() -> None:
    with projector(behaviour="silent") as server:
        silent = probe_for(server.port).collect()
        port = server.port
    assert silent["pjlink.error[proj-101]"] == "timeout"
    refused = probe_for(port).collect()
    assert refused["pjlink.up[proj-101]"] is False
    assert refused["pjlink.error[proj-101]"] == "connect"
