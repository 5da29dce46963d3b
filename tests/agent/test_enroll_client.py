"""Enrollment from the agent's side, end to end: the real collector API over
HTTP on loopback, PostgreSQL, a dynamic-security Mosquitto, then the enrolled
agent running with the identity it received."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from agent_support import AgentProcess, Recorder, states, validate
from pydantic import SecretStr

from edufleet_agent.enroll import EnrollError, post_enrollment
from edufleet_protocol import topics
from edufleet_protocol.models import EnrollResponse
from procs import DynsecBroker, free_port

AGENT = [sys.executable, "-m", "edufleet_agent.cli"]


@pytest.fixture
def collector(
    settings, conn: psycopg.Connection, dynsec_broker: DynsecBroker
) -> Iterator[str]:  # type: ignore[no-untyped-def,type-arg]
    """The collector's web app on a loopback port, enrolling into the dynsec broker."""
    from edufleet_collector.db.pool import open_pool
    from edufleet_collector.web.app import create_app

    conn.execute(
        "INSERT INTO regions (code, name_zh, level) VALUES "
        "('460000', '海南省', 'province'), ('460100', '海口市', 'city')"
    )
    conn.execute(
        "INSERT INTO schools (code, name, region_code) VALUES "
        "('HK01', '海口市第一中学', '460100')"
    )
    conn.commit()
    configured = settings.model_copy(
        update={
            "mqtt_url": dynsec_broker.url,
            "mqtt_admin_username": dynsec_broker.admin[0],
            "mqtt_admin_password": SecretStr(dynsec_broker.admin[1]),
        }
    )
    pool = open_pool(configured, name="test-agent-enroll", min_size=1, max_size=4)
    app = create_app(configured, pool)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        if getattr(app.state, "dynsec", None) is not None:
            app.state.dynsec.close()
        pool.close()


def test_enrolled_agent_reports_under_its_identity(
    tmp_path: Path,
    conn: psycopg.Connection,  # type: ignore[type-arg]
    collector: str,
    dynsec_broker: DynsecBroker,
) -> None:
    from edufleet_collector.enrollment import create_enrollment_token

    token, _ = create_enrollment_token(conn, school_code="HK01")
    conn.commit()
    # This machine's firmware identity, as a fixture tree under a settable root.
    dmi = tmp_path / "root/sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_uuid").write_text(f"{uuid.uuid4()}\n")
    (dmi / "product_serial").write_text("PF2TEST01\n")
    config = tmp_path / "agent.toml"
    credentials = tmp_path / "agent.json"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\ncredentials_file = "{credentials}"\n'
        f'sys_root = "{tmp_path / "root"}"\n'
        "interval_s = 0.5\n\n[mqtt]\nwill_delay_s = 2\n\n"
        '[probes.reachability]\ngateway = ""\n'
    )

    done = subprocess.run(
        [
            *AGENT,
            "enroll",
            "--config",
            str(config),
            "--url",
            collector,
            "--token",
            token,
            "--room",
            "203",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    identity = EnrollResponse.model_validate_json(credentials.read_text())
    assert identity.school_code == "HK01" and identity.room == "203"
    assert f"enrolled as {identity.device_id}" in done.stdout

    # Ingest's identity may read every device; the agent only its own prefix.
    ingest_user, ingest_password = dynsec_broker.ingest
    recorder = Recorder(
        dynsec_broker.url,
        topics.device_prefix(identity.device_id) + "#",
        username=ingest_user,
        password=ingest_password,
    )
    agent = AgentProcess(config)
    try:
        messages = recorder.wait_for(
            lambda m: {"state", "birth", "telemetry"} <= {x.kind for x in m}, timeout=20
        )
        for message in messages:
            validate(message.kind, message.payload)
        assert agent.terminate() == 0
        final = recorder.wait_for(lambda m: states(m)[-1:] == ["sleeping"])
        assert states(final)[0] == "online"
    finally:
        agent.close()
        recorder.close()


def test_enrollment_refuses_plain_http_to_another_host_and_bad_tokens(
    collector: str,
) -> None:
    from edufleet_agent.enroll import build_request
    from edufleet_protocol.models import Inventory, OsInfo

    request = build_request(
        "not-a-real-token",
        Inventory(hostname="pc", macs=["00:1a:2b:3c:4d:5e"], os=OsInfo(system="Linux")),
        room=None,
        asset_tag=None,
    )
    with pytest.raises(EnrollError, match="must start with https://"):
        post_enrollment("http://collector.example", request)
    with pytest.raises(EnrollError, match="refused enrollment with HTTP 4"):
        post_enrollment(collector, request)
