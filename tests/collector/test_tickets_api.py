"""The tickets API over HTTP against a real uvicorn server and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from ticket_world import World, build_world

from edufleet_collector.accounts import create_token, create_user
from webseed import running_server


@pytest.fixture
def world(conn) -> World:  # type: ignore[no-untyped-def]
    world = build_world(conn)
    create_user(conn, name="hotline", role="district_bureau", region_code="460105")
    create_user(
        conn, name="eng", role="engineer", engineer_id=world.engineers["primary"]
    )
    create_user(
        conn, name="eng2", role="engineer", engineer_id=world.engineers["backup1"]
    )
    create_user(conn, name="outsider", role="district_bureau", region_code="460106")
    conn.commit()
    return world


def _client(conn, base: str, user: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    token = create_token(conn, user_name=user)
    conn.commit()
    return httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_engineer_works_a_ticket_through_the_api(conn, world: World, settings) -> None:  # type: ignore[no-untyped-def]
    with running_server(settings) as base:
        hotline = _client(conn, base, "hotline")
        eng = _client(conn, base, "eng")
        created = hotline.post(
            "/api/v1/tickets",
            json={
                "asset_tag": "PJ-301",
                "symptom": "no_picture",
                "reporter_name": "王老师",
                "reporter_phone": "13812345678",
            },
        )
        assert created.status_code == 201, created.text
        ticket = created.json()
        assert ticket["status"] == "dispatched"
        assert ticket["reporter_phone"] == "138****5678"
        assert "13812345678" not in created.text
        tid = ticket["id"]

        queue = eng.get("/api/v1/me/queue").json()["tickets"]
        assert [t["id"] for t in queue] == [tid]

        accepted = eng.post(f"/api/v1/tickets/{tid}/accept", json={"note": "on it"})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["colour"] == "yellow"

        visit = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        scheduled = eng.post(
            f"/api/v1/tickets/{tid}/schedule", json={"visit_at": visit}
        )
        assert scheduled.json()["status"] == "scheduled"
        eng.post(f"/api/v1/tickets/{tid}/note", json={"note": "bring a lamp"})
        resolved = eng.post(
            f"/api/v1/tickets/{tid}/resolve",
            json={"resolution_code": "lamp", "parts": ["lamp"], "note": "done"},
        )
        assert resolved.json()["status"] == "resolved"

        kinds = [
            e["kind"] for e in eng.get(f"/api/v1/tickets/{tid}/events").json()["events"]
        ]
        assert kinds == [
            "created",
            "dispatched",
            "accepted",
            "scheduled",
            "note",
            "resolved",
        ]
        sla = eng.get(f"/api/v1/tickets/{tid}/sla").json()
        assert sla["response"]["running"] is False


def test_illegal_transition_is_409_with_the_allowed_actions(
    conn, world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    with running_server(settings) as base:
        hotline = _client(conn, base, "hotline")
        eng = _client(conn, base, "eng")
        tid = hotline.post(
            "/api/v1/tickets", json={"device_id": world.devices["desktop"]}
        ).json()["id"]
        refused = eng.post(
            f"/api/v1/tickets/{tid}/resolve", json={"resolution_code": "x"}
        )
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert "dispatched" in detail and "accept" in detail and "hand_back" in detail
        assert eng.post(f"/api/v1/tickets/{tid}/reopen").status_code == 403


def test_tickets_outside_scope_are_404(conn, world: World, settings) -> None:  # type: ignore[no-untyped-def]
    with running_server(settings) as base:
        hotline = _client(conn, base, "hotline")
        outsider = _client(conn, base, "outsider")
        other_engineer = _client(conn, base, "eng2")
        tid = hotline.post(
            "/api/v1/tickets", json={"device_id": world.devices["desktop"]}
        ).json()["id"]
        assert outsider.get(f"/api/v1/tickets/{tid}").status_code == 404
        assert outsider.post(f"/api/v1/tickets/{tid}/accept").status_code == 404
        # The backup covers the school but the ticket is the primary's.
        assert other_engineer.post(f"/api/v1/tickets/{tid}/accept").status_code == 404
        assert (
            outsider.post(
                "/api/v1/tickets", json={"device_id": world.devices["desktop"]}
            ).status_code
            == 404
        )
        assert httpx.get(f"{base}/api/v1/tickets/{tid}").status_code == 401


def test_rating_token_is_single_use(conn, world: World, settings) -> None:  # type: ignore[no-untyped-def]
    from edufleet_collector.tickets import service

    now = datetime.now(UTC)
    ticket = service.create_ticket(
        conn,
        source="qr",
        device_id=world.devices["projector"],
        actor="reporter",
        now=now,
    )
    service.transition(conn, ticket.id, "accept", "eng", "", now)
    service.transition(conn, ticket.id, "resolve", "eng", "", now, resolution_code="ok")
    token = service.issue_rating_token(conn, ticket.id, now)
    conn.commit()
    with running_server(settings) as base:
        bad = httpx.post(f"{base}/api/v1/ratings/{token}", json={"stars": 6})
        assert bad.status_code == 422
        first = httpx.post(
            f"{base}/api/v1/ratings/{token}", json={"stars": 5, "comment": "快"}
        )
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "closed"
        again = httpx.post(f"{base}/api/v1/ratings/{token}", json={"stars": 1})
        assert again.status_code == 404
