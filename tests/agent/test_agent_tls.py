"""TLS with a pinned CA: the agent connects to a broker whose certificate the
pinned CA signed, and refuses one signed by any other CA."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_support import AgentProcess, Recorder, new_device_id, states, write_config

import procs
from edufleet_protocol import topics
from procs import make_ca


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("tls")
    (folder / "certs").mkdir()
    make_ca(folder / "certs", "other-ca")
    with procs.tls_broker(folder, "school-ca") as (broker, tls_url):
        yield broker, tls_url, folder / "certs"


@pytest.mark.parametrize(("ca", "connects"), [("school-ca", True), ("other-ca", False)])
def test_agent_connects_only_to_a_broker_signed_by_the_pinned_ca(
    tmp_path: Path,
    tls_broker,
    ca: str,
    connects: bool,  # type: ignore[no-untyped-def]
) -> None:
    broker, tls_url, certs = tls_broker
    device = new_device_id()
    recorder = Recorder(broker.url, topics.state_topic(device))
    state_dir = tmp_path / "agent"
    state_dir.mkdir()
    config = write_config(
        state_dir, device_id=device, mqtt_url=tls_url, ca_file=certs / f"{ca}.pem"
    )
    agent = AgentProcess(config)
    try:
        if connects:
            recorder.wait_for(lambda m: states(m) == ["online"], timeout=20)
        else:
            time.sleep(4.0)
            assert states(recorder.messages) == []
            assert "CERTIFICATE_VERIFY_FAILED" in agent.log_text()
    finally:
        agent.close()
        recorder.close()
