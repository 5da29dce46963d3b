"""Enrollment end to end: the real API over HTTP, PostgreSQL and a dynsec broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
import uvicorn
from pydantic import SecretStr

from edufleet_collector.broker.dynsec import DynsecClient
from edufleet_collector.enrollment import (
    create_enrollment_token,
    revoke_device_identity,
)
from edufleet_protocol.models import EnrollResponse
from procs import DynsecBroker, MqttProbe, free_port

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def school(conn: Conn) -> str:
    conn.execute(
        "INSERT INTO regions (code, name_zh, level) VALUES ('460000', '海南省', "
        "'province'), ('460100', '海口市', 'city')"
    )
    conn.execute(
        "INSERT INTO schools (code, name, region_code) VALUES "
        "('HK01', '海口市第一中学', '460100'), ('HK02', '海口市第二中学', '460100')"
    )
    conn.commit()
    return "HK01"


@pytest.fixture
def serve(settings, dynsec_broker: DynsecBroker):  # type: ignore[no-untyped-def]
    """Start the web app on a loopback port with the given setting overrides."""
    from edufleet_collector.db.pool import open_pool
    from edufleet_collector.web.app import create_app

    stops: list[Callable[[], None]] = []

    def start(**overrides: object) -> str:
        configured = settings.model_copy(
            update={
                "mqtt_url": dynsec_broker.url,
                "mqtt_admin_username": dynsec_broker.admin[0],
                "mqtt_admin_password": SecretStr(dynsec_broker.admin[1]),
                **overrides,
            }
        )
        pool = open_pool(configured, name="test-enroll", min_size=1, max_size=8)
        app = create_app(configured, pool)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=free_port(),
                log_config=None,
                access_log=False,
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)

        def stop() -> None:
            server.should_exit = True
            thread.join(10)
            if getattr(app.state, "dynsec", None) is not None:
                app.state.dynsec.close()
            pool.close()

        stops.append(stop)
        return f"http://127.0.0.1:{server.config.port}"

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def api(serve) -> str:  # type: ignore[no-untyped-def]
    return str(serve())


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def token_for(conn: Conn, school: str = "HK01", **kwargs: object) -> str:
    token, _ = create_enrollment_token(conn, school_code=school, **kwargs)  # type: ignore[arg-type]
    conn.commit()
    return token


def body(token: str, *, hw: str | None = None, **extra: object) -> dict[str, object]:
    hw = hw or uuid.uuid4().hex
    return {
        "v": 1,
        "token": token,
        "fingerprint": {
            "product_uuid": str(uuid.UUID(hw)),
            "serial": f"SN{hw[:10]}",
            "macs": ["00:1a:2b:" + ":".join(hw[i : i + 2] for i in (0, 2, 4))],
        },
        "hostname": f"pc-{hw[:6]}",
        "agent_version": "0.1.0",
        **extra,
    }


def enroll(api: str, payload: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{api}/api/v1/enroll", json=payload, timeout=20)


def connect(
    probes: list[MqttProbe], url: str, username: str, password: str
) -> MqttProbe:
    probe = MqttProbe(url, username, password)
    probes.append(probe)
    code = probe.connect()
    assert not code.is_failure, code
    return probe


def test_enrolled_pc_publishes_under_its_own_prefix(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    response = enroll(api, body(token_for(conn), room="初一(3)班"))

    assert response.status_code == 200, response.text
    identity = EnrollResponse.model_validate(response.json())
    assert identity.school_code == "HK01"
    assert identity.room == "初一(3)班"
    assert identity.topic_prefix == f"edufleet/v1/{identity.device_id}/"
    assert identity.mqtt_url == dynsec_broker.url
    row = conn.execute(
        "SELECT d.category, d.asset_tag, r.name, s.code FROM devices d "
        "JOIN rooms r ON r.id = d.room_id JOIN schools s ON s.id = d.school_id "
        "WHERE d.uid = %s",
        [identity.device_id],
    ).fetchone()
    assert row is not None, conn.execute("SELECT uid, room_id FROM devices").fetchall()
    assert row[0] == "desktop" and str(row[1]).startswith("HK01-PC-")
    assert row[2:] == ("初一(3)班", "HK01")

    ingest = connect(probes, dynsec_broker.url, *dynsec_broker.ingest)
    # The broker is shared by the session: the ingest identity listens to this
    # device only, outside the shared group other tests may still belong to.
    assert not ingest.subscribe(identity.topic_prefix + "#").is_failure
    device = connect(probes, identity.mqtt_url, identity.username, identity.password)
    assert not device.publish(identity.topic_prefix + "telemetry", "{}").is_failure
    assert device.publish("edufleet/v1/someone-else/telemetry", "{}").is_failure
    assert [m.topic for m in ingest.received(0.5)] == [
        identity.topic_prefix + "telemetry"
    ]


def test_reenrolling_the_same_hardware_keeps_the_device_id(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    token = token_for(conn)
    hw = uuid.uuid4().hex
    first = EnrollResponse.model_validate(enroll(api, body(token, hw=hw)).json())
    # A reinstall: new hostname, and the Wi-Fi adapter was swapped.
    again = body(token, hw=hw, hostname="reinstalled", room="机房")
    again["fingerprint"]["macs"] = ["00:1a:2b:ff:ee:dd"]  # type: ignore[index]
    second = EnrollResponse.model_validate(enroll(api, again).json())

    assert second.device_id == first.device_id
    assert second.password != first.password
    assert second.room == "机房"
    stale = MqttProbe(dynsec_broker.url, first.username, first.password)
    probes.append(stale)
    assert stale.connect().is_failure
    connect(probes, dynsec_broker.url, second.username, second.password)
    counts = conn.execute(
        "SELECT count(*), sum(enrollments), (SELECT uses FROM enrollment_tokens) "
        "FROM device_identities"
    ).fetchone()
    assert counts == (1, 2, 2)


def test_expired_token_is_refused(api: str, conn: Conn, school: str) -> None:
    token = token_for(conn)
    conn.execute("UPDATE enrollment_tokens SET expires_at = now() - interval '1 h'")
    conn.commit()

    response = enroll(api, body(token))

    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_exhausted_token_is_refused(api: str, conn: Conn, school: str) -> None:
    token = token_for(conn, max_uses=1)

    assert enroll(api, body(token)).status_code == 200
    response = enroll(api, body(token))

    assert response.status_code == 403
    assert "used 1 of 1 times" in response.json()["detail"]
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (1,)


def test_unknown_token_is_refused(api: str, school: str) -> None:
    response = enroll(api, body("efe_not-a-real-token"))

    assert response.status_code == 403
    assert "not known" in response.json()["detail"]


def test_concurrent_enrollments_never_exceed_the_token_uses(
    api: str, conn: Conn, school: str
) -> None:
    token = token_for(conn, max_uses=3)

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(
            r.status_code
            for r in pool.map(lambda _: enroll(api, body(token)), range(8))
        )

    assert codes == [200, 200, 200, 403, 403, 403, 403, 403]
    assert conn.execute("SELECT uses FROM enrollment_tokens").fetchone() == (3,)
    assert conn.execute("SELECT count(*) FROM device_identities").fetchone() == (3,)


def test_asset_tag_binds_the_registered_record(
    api: str, conn: Conn, school: str
) -> None:
    conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id) "
        "SELECT 'HK01-0042', 'laptop', id FROM schools WHERE code = 'HK01'"
    )
    conn.commit()
    token = token_for(conn)

    bound = enroll(api, body(token, asset_tag="HK01-0042"))
    unknown = enroll(api, body(token, asset_tag="HK01-9999"))

    assert bound.status_code == 200, bound.text
    uid = conn.execute("SELECT uid FROM devices WHERE asset_tag = 'HK01-0042'")
    assert bound.json()["device_id"] == uid.fetchone()[0]  # type: ignore[index]
    assert unknown.status_code == 404
    assert "HK01-9999" in unknown.json()["detail"]


def test_asset_of_another_school_is_refused(api: str, conn: Conn, school: str) -> None:
    conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id) "
        "SELECT 'HK02-0001', 'desktop', id FROM schools WHERE code = 'HK02'"
    )
    conn.commit()

    response = enroll(api, body(token_for(conn), asset_tag="HK02-0001"))

    assert response.status_code == 409
    assert "belongs to school 'HK02'" in response.json()["detail"]


def test_controller_publishes_for_its_peripheral(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    row = conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id) "
        "SELECT 'HK01-CTL1', 'controller', id FROM schools WHERE code = 'HK01' "
        "RETURNING id, school_id"
    ).fetchone()
    assert row is not None
    projector = conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id, parent_id) "
        "VALUES ('HK01-PJ1', 'projector', %s, %s) RETURNING uid",
        [row[1], row[0]],
    ).fetchone()
    assert projector is not None
    conn.commit()

    response = enroll(api, body(token_for(conn), asset_tag="HK01-CTL1"))

    assert response.status_code == 200, response.text
    identity = EnrollResponse.model_validate(response.json())
    controller = connect(
        probes, dynsec_broker.url, identity.username, identity.password
    )
    assert not controller.publish(f"edufleet/v1/{projector[0]}/event", "{}").is_failure
    assert controller.publish("edufleet/v1/not-mine/event", "{}").is_failure


def test_retired_device_loses_its_broker_identity(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    identity = EnrollResponse.model_validate(enroll(api, body(token_for(conn))).json())
    live = connect(probes, dynsec_broker.url, identity.username, identity.password)
    device_pk = conn.execute(
        "SELECT id FROM devices WHERE uid = %s", [identity.device_id]
    ).fetchone()[0]  # type: ignore[index]

    with DynsecClient.from_url(dynsec_broker.url, *dynsec_broker.admin) as dynsec:
        conn.execute("UPDATE devices SET status = 'retired' WHERE id = %s", [device_pk])
        assert revoke_device_identity(conn, dynsec, int(device_pk)) is True  # type: ignore[arg-type]
        conn.commit()
        assert revoke_device_identity(conn, dynsec, int(device_pk)) is False  # type: ignore[arg-type]

    retry = MqttProbe(dynsec_broker.url, identity.username, identity.password)
    probes.append(retry)
    assert retry.connect().is_failure
    deadline = time.monotonic() + 2
    while not live.disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.disconnected
    revoked = conn.execute("SELECT revoked_at FROM device_identities").fetchone()
    assert revoked is not None and isinstance(revoked[0], datetime)


def test_failed_enrollments_are_rate_limited_per_address(
    serve,  # type: ignore[no-untyped-def]
    school: str,
) -> None:
    api = serve(enroll_failures_per_ip=3)

    codes = [enroll(api, body("efe_wrong-token")).status_code for _ in range(5)]

    assert codes == [403, 403, 403, 429, 429]


def test_fingerprint_without_identity_is_refused(
    api: str, conn: Conn, school: str
) -> None:
    payload = body(token_for(conn))
    payload["fingerprint"] = {
        "serial": "To be filled by O.E.M.",
        "product_uuid": "03000200-0400-0500-0006-000700080009",
        "macs": ["02:42:ac:11:00:02"],
    }

    response = enroll(api, payload)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "fingerprint"]


def test_admin_issues_lists_and_revokes_tokens_in_scope(
    api: str, conn: Conn, school: str
) -> None:
    from edufleet_collector.accounts import create_token, create_user

    create_user(conn, name="hk01-admin", role="school_admin", school_code="HK01")
    headers = {"Authorization": f"Bearer {create_token(conn, user_name='hk01-admin')}"}
    conn.commit()
    url = f"{api}/api/v1/enrollment-tokens"

    issued = httpx.post(
        url, json={"school_code": "HK01", "max_uses": 5}, headers=headers
    )
    foreign = httpx.post(url, json={"school_code": "HK02"}, headers=headers)
    anonymous = httpx.post(url, json={"school_code": "HK01"})

    assert issued.status_code == 201, issued.text
    assert foreign.status_code == 404
    assert anonymous.status_code == 401
    token = issued.json()
    assert token["state"] == "active" and token["max_uses"] == 5
    listed = httpx.get(url, headers=headers).json()
    assert [t["id"] for t in listed] == [token["id"]]
    assert "token" not in listed[0]

    revoked = httpx.delete(f"{url}/{token['id']}", headers=headers)
    assert revoked.json()["state"] == "revoked"
    refused = enroll(api, body(token["token"]))
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]


def test_cli_issues_a_token_that_enrolls(
    api: str, conn: Conn, school: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from edufleet_collector.cli import main

    assert main(["enroll-tokens", "create", "--school", "HK01", "--uses", "2"]) == 0
    token = capsys.readouterr().out.strip()

    assert enroll(api, body(token)).status_code == 200
    assert main(["enroll-tokens", "list", "--school", "HK01"]) == 0
    assert "1/2" in capsys.readouterr().out
    assert main(["enroll-tokens", "create", "--school", "NOPE"]) == 2
    assert "school 'NOPE' does not exist" in capsys.readouterr().err


def test_token_expiry_is_in_the_future(conn: Conn, school: str) -> None:
    _, record = create_enrollment_token(conn, school_code="HK01", days=2)

    left = (record.expires_at - datetime.now(UTC)).total_seconds()
    assert 2 * 86400 - 60 < left <= 2 * 86400
    assert record.state == "active"


def test_agent_enrolls_and_runs_its_session_with_the_credentials(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    from edufleet_agent.enroll import build_request, post_enrollment
    from edufleet_agent.publisher import Publisher
    from edufleet_agent.queue import MemoryOutbox
    from edufleet_protocol.models import Inventory, OsInfo

    inventory = Inventory(
        hostname="pc-agent-e2e",
        macs=["00:1a:2b:3c:4d:5e"],
        product_uuid="4c4c4544-0042-3510-8051-b7c04f4e3232",
        os=OsInfo(system="Linux"),
    )
    request = build_request(token_for(conn), inventory, room="机房", asset_tag=None)
    identity = post_enrollment(api, request)
    ingest = connect(probes, dynsec_broker.url, *dynsec_broker.ingest)
    assert not ingest.subscribe(identity.topic_prefix + "#").is_failure

    outbox = MemoryOutbox()
    outbox.put(identity.topic_prefix + "telemetry", b'{"v":1,"samples":[]}')
    publisher = Publisher(
        identity.device_id,
        url=identity.mqtt_url,
        username=identity.username,
        password=identity.password,
        outbox=outbox,
        sid="e2e-session-01",
        birth=lambda: b'{"v":1}',
    )
    deadline = time.monotonic() + 10
    while (publisher.stats.acked < 1) and time.monotonic() < deadline:
        publisher.step(0.05)
    publisher.shutdown(graceful=True)

    assert publisher.stats.acked == 1 and publisher.stats.refused == 0
    kinds = [m.topic.rsplit("/", 1)[-1] for m in ingest.received(0.5)]
    assert sorted(kinds[:3]) == ["birth", "state", "telemetry"]
    assert kinds[3:] == ["state"]  # sleeping, on the graceful stop


def test_device_changes_reach_the_broker(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    from edufleet_collector.enrollment import sync_device_identity
    from edufleet_collector.errors import Conflict

    row = conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id) "
        "SELECT 'HK01-CTL2', 'controller', id FROM schools WHERE code = 'HK01' "
        "RETURNING id, school_id"
    ).fetchone()
    assert row is not None
    controller_pk, school_pk = row
    conn.commit()
    identity = EnrollResponse.model_validate(
        enroll(api, body(token_for(conn), asset_tag="HK01-CTL2")).json()
    )
    controller = connect(
        probes, dynsec_broker.url, identity.username, identity.password
    )
    projector = conn.execute(
        "INSERT INTO devices (asset_tag, category, school_id, parent_id) "
        "VALUES ('HK01-PJ2', 'projector', %s, %s) RETURNING id, uid",
        [school_pk, controller_pk],
    ).fetchone()
    assert projector is not None
    topic = f"edufleet/v1/{projector[1]}/event"
    assert controller.publish(topic, "{}").is_failure

    with pytest.raises(Conflict, match="EDUFLEET_MQTT_ADMIN_USERNAME"):
        sync_device_identity(conn, None, int(projector[0]))  # type: ignore[arg-type]
    with DynsecClient.from_url(dynsec_broker.url, *dynsec_broker.admin) as dynsec:
        sync_device_identity(conn, dynsec, int(projector[0]))  # type: ignore[arg-type]
        assert not controller.publish(topic, "{}").is_failure

        conn.execute(
            "UPDATE devices SET status = 'retired' WHERE id = %s", [controller_pk]
        )
        sync_device_identity(conn, dynsec, int(controller_pk))  # type: ignore[arg-type]
        conn.commit()

    retry = MqttProbe(dynsec_broker.url, identity.username, identity.password)
    probes.append(retry)
    assert retry.connect().is_failure
    # A device that never enrolled needs no broker at all.
    sync_device_identity(conn, None, int(projector[0]))  # type: ignore[arg-type]


def test_production_refuses_to_hand_out_a_plain_broker_url(
    serve,  # type: ignore[no-untyped-def]
    conn: Conn,
    school: str,
) -> None:
    api = serve(
        environment="production",
        secret_key=SecretStr("p" * 48),
        broker_public_url=None,
    )

    response = enroll(api, body(token_for(conn)))

    assert response.status_code == 503
    assert "EDUFLEET_BROKER_PUBLIC_URL" in response.json()["detail"]
    assert conn.execute("SELECT uses FROM enrollment_tokens").fetchone() == (0,)


def test_cli_revokes_a_device_identity(
    *,
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edufleet_collector.cli import main

    identity = EnrollResponse.model_validate(enroll(api, body(token_for(conn))).json())
    monkeypatch.setenv("EDUFLEET_MQTT_URL", dynsec_broker.url)
    monkeypatch.setenv("EDUFLEET_MQTT_ADMIN_USERNAME", dynsec_broker.admin[0])
    monkeypatch.setenv("EDUFLEET_MQTT_ADMIN_PASSWORD", dynsec_broker.admin[1])

    assert main(["broker", "revoke", identity.device_id]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["broker", "revoke", "no-such-device"]) == 2
    assert "does not exist" in capsys.readouterr().err

    retry = MqttProbe(dynsec_broker.url, identity.username, identity.password)
    try:
        assert retry.connect().is_failure
    finally:
        retry.close()


def test_retiring_through_the_registry_api_revokes_the_login(
    api: str,
    conn: Conn,
    school: str,
    dynsec_broker: DynsecBroker,
    probes: list[MqttProbe],
) -> None:
    from edufleet_collector.accounts import create_token, create_user

    identity = EnrollResponse.model_validate(enroll(api, body(token_for(conn))).json())
    live = connect(probes, dynsec_broker.url, identity.username, identity.password)
    device_pk = conn.execute(
        "SELECT id FROM devices WHERE uid = %s", [identity.device_id]
    ).fetchone()[0]  # type: ignore[index]
    create_user(conn, name="retire-admin", role="province_admin")
    token = create_token(conn, user_name="retire-admin")
    conn.commit()

    response = httpx.patch(
        f"{api}/api/v1/devices/{device_pk}",
        json={"status": "retired"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "retired"

    retry = MqttProbe(dynsec_broker.url, identity.username, identity.password)
    probes.append(retry)
    assert retry.connect().is_failure
    deadline = time.monotonic() + 2
    while not live.disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.disconnected
