"""Devices' connection-state history: recorded on every change, whatever made
it, and read through the API within the caller's scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from ingest_support import ingest_thread, publisher, scalar, seed_fleet, state, wait_for

from edufleet_collector.accounts import create_token, create_user
from edufleet_collector.calendar_store import CalendarCache
from edufleet_collector.ingest.history import prune_state_history
from edufleet_collector.ingest.silence import detect_silence
from webseed import running_server


@pytest.fixture
def ingest_settings(settings: Any, private_broker: Any) -> Any:
    return settings.model_copy(
        update={"mqtt_url": private_broker.url, "ingest_batch_ms": 50}
    )


def history(url: str, device_id: int) -> list[tuple[str | None, str]]:
    with psycopg.connect(url) as conn:
        return [
            (previous, state)
            for previous, state in conn.execute(
                "SELECT previous, state FROM device_state_history "
                "WHERE device_id = %s ORDER BY at, recorded_at",
                [device_id],
            )
        ]


def test_every_state_change_is_recorded_and_read_through_the_api(
    conn: psycopg.Connection[Any],
    database_url: str,
    ingest_settings: Any,
    settings: Any,
) -> None:
    fleet = seed_fleet(conn, pcs=0, controllers=1)
    uid = fleet.uids[0]
    device = fleet.ids[uid]

    def changes() -> int:
        return int(scalar(database_url, "SELECT count(*) FROM device_state_history"))

    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        for n, value in enumerate(["online", "online", "sleeping", "lost"]):
            pub.send([state(uid, value, ts=datetime.now(UTC) + timedelta(seconds=n))])
            wait_for(
                lambda v=value: (
                    scalar(
                        database_url,
                        "SELECT state FROM device_state WHERE device_id = %s",
                        [device],
                    )
                    == v
                ),
                10,
                f"the device {value}",
            )
    # The silence detector changes the state too: the device comes back, then
    # says nothing for two hours.
    back = datetime.now(UTC)
    conn.execute(
        "UPDATE device_state SET state = 'online', state_since = %s, last_seen = %s "
        "WHERE device_id = %s",
        [back, back, device],
    )
    conn.commit()
    later = back + timedelta(hours=2)
    with conn.transaction():
        report = detect_silence(
            conn,
            now=later,
            factor=3.0,
            default_interval=60.0,
            calendars=CalendarCache(),
        )
    assert report.silent == [device]

    # A repeated "online" is no change, and last_seen moving is none either.
    assert history(database_url, device) == [
        (None, "online"),
        ("online", "sleeping"),
        ("sleeping", "lost"),
        ("lost", "online"),
        ("online", "silent"),
    ]
    assert changes() == 5

    seed_fleet(conn, pcs=1, school="T02")
    create_user(conn, name="province", role="province_admin")
    create_user(conn, name="elsewhere", role="school_admin", school_code="T02")
    tokens = {
        name: create_token(conn, user_name=name) for name in ("province", "elsewhere")
    }
    conn.commit()
    with running_server(settings) as base:

        def get(user: str, **params: str) -> httpx.Response:
            return httpx.get(
                f"{base}/api/v1/devices/{device}/states",
                params=params,
                headers={"Authorization": f"Bearer {tokens[user]}"},
                timeout=10,
            )

        answer = get(
            "province",
            since=(back - timedelta(days=1)).isoformat(),
            until=(later + timedelta(minutes=1)).isoformat(),
        )
        assert answer.status_code == 200
        assert [(c["previous"], c["state"]) for c in answer.json()] == history(
            database_url, device
        )
        assert get("elsewhere").status_code == 404
        naive = get("province", since="2026-01-01T00:00:00")
        assert naive.status_code == 422
        assert "since" in naive.text and "time zone" in naive.text

    with conn.transaction():
        pruned = prune_state_history(conn, before=later + timedelta(days=1))
    assert pruned == 5
    assert changes() == 0
