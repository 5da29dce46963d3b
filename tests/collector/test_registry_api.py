"""The registry API over real HTTP (FastAPI's TestClient) and a real PostgreSQL.

The world: Haikou (460100) with districts Xiuying (460105) and Longhua
(460106), and Sanya (460200). Schools XY01 and XY02 in Xiuying, LH01 in
Longhua, SY01 in Sanya. Tokens: a province admin, the Xiuying bureau, the
Haikou bureau, XY01's school admin and an engineer assigned to LH01.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

REGIONS = [
    ("460000", None, "海南省", "province"),
    ("460100", "460000", "海口市", "city"),
    ("460105", "460100", "秀英区", "district"),
    ("460106", "460100", "龙华区", "district"),
    ("460200", "460000", "三亚市", "city"),
]
SCHOOLS = [
    ("XY01", "海口市第一中学", "460105"),
    ("XY02", "海口市实验小学", "460105"),
    ("LH01", "海口市第二中学", "460106"),
    ("SY01", "三亚市实验小学", "460200"),
]


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    engineer_id: int = 0

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, url: str, **params: object) -> httpx.Response:
        return self.client.get(url, params=params, headers=self.as_(who))

    def post(self, who: str, url: str, body: dict[str, object]) -> httpx.Response:
        return self.client.post(url, json=body, headers=self.as_(who))

    def patch(self, who: str, url: str, body: dict[str, object]) -> httpx.Response:
        return self.client.patch(url, json=body, headers=self.as_(who))

    def device(self, who: str, school: str, tag: str, **extra: object) -> int:
        body = {"asset_tag": tag, "category": "desktop", "school_code": school}
        response = self.post(who, "/api/v1/devices", {**body, **extra})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


def _build(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[dict[str, str], int]:
    from edufleet_collector.accounts import create_token, create_user

    conn.cursor().executemany(
        "INSERT INTO regions (code, parent_code, name_zh, level) "
        "VALUES (%s, %s, %s, %s)",
        REGIONS,
    )
    conn.cursor().executemany(
        "INSERT INTO schools (code, name, region_code) VALUES (%s, %s, %s)", SCHOOLS
    )
    row = conn.execute(
        "INSERT INTO engineers (name, region_code, skills) "
        "VALUES ('王工', '460106', '{pc,av}') RETURNING id"
    ).fetchone()
    assert row is not None
    engineer_id = int(row[0])
    conn.execute(
        "INSERT INTO school_engineers (school_id, engineer_id, role) "
        "SELECT id, %s, 'primary' FROM schools WHERE code = 'LH01'",
        [engineer_id],
    )
    users = {
        "province": {"role": "province_admin"},
        "xiuying": {"role": "district_bureau", "region_code": "460105"},
        "haikou": {"role": "district_bureau", "region_code": "460100"},
        "school": {"role": "school_admin", "school_code": "XY01"},
        "engineer": {"role": "engineer", "engineer_id": engineer_id},
    }
    tokens = {}
    for name, scope in users.items():
        create_user(conn, name=name, **scope)  # type: ignore[arg-type]
        tokens[name] = create_token(conn, user_name=name)
    conn.commit()
    return tokens, engineer_id


@pytest.fixture
def world(settings, conn) -> Iterator[World]:  # type: ignore[no-untyped-def]
    from edufleet_collector.db.pool import open_pool
    from edufleet_collector.web.app import create_app

    tokens, engineer_id = _build(conn)
    pool = open_pool(settings, name="test", min_size=1, max_size=4)
    try:
        with TestClient(create_app(settings, pool=pool)) as client:
            yield World(client=client, tokens=tokens, engineer_id=engineer_id)
    finally:
        pool.close()


def _codes(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["code"] for item in response.json()["items"]]


def _field_of(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return str(response.json()["detail"][0]["loc"][-1])


def test_list_schools_requires_a_token(world: World) -> None:
    assert world.client.get("/api/v1/schools").status_code == 401


def test_region_filter_covers_the_whole_subtree(world: World) -> None:
    assert _codes(world.get("province", "/api/v1/schools", region="460100")) == [
        "XY01",
        "XY02",
        "LH01",
    ]
    assert _codes(world.get("province", "/api/v1/schools", region="460105")) == [
        "XY01",
        "XY02",
    ]
    response = world.get("province", "/api/v1/schools", region="999999")
    assert response.status_code == 404


def test_bureau_sees_only_its_district(world: World) -> None:
    assert _codes(world.get("xiuying", "/api/v1/schools")) == ["XY01", "XY02"]
    assert world.get("xiuying", "/api/v1/schools/LH01").status_code == 404
    assert _codes(world.get("school", "/api/v1/schools")) == ["XY01"]
    assert _codes(world.get("engineer", "/api/v1/schools")) == ["LH01"]


def test_school_crud_and_validation(world: World) -> None:
    body = {"code": "XY03", "name": "海口市第三中学", "region_code": "460105"}
    created = world.post("xiuying", "/api/v1/schools", body)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "海口市第三中学"

    changed = world.patch("xiuying", "/api/v1/schools/XY03", {"boarding": True})
    assert changed.json()["boarding"] is True
    assert world.get("xiuying", "/api/v1/schools/XY03").json()["boarding"] is True

    duplicate = world.post("province", "/api/v1/schools", body)
    assert duplicate.status_code == 409
    assert "code" in duplicate.json()["detail"]

    elsewhere = {**body, "code": "LH09", "region_code": "460106"}
    assert _field_of(world.post("xiuying", "/api/v1/schools", elsewhere)) == (
        "region_code"
    )
    bad_code = {**body, "code": "no spaces"}
    assert _field_of(world.post("province", "/api/v1/schools", bad_code)) == "code"
    assert world.post("school", "/api/v1/schools", body).status_code == 403


def test_device_create_read_update(world: World) -> None:
    room = world.post(
        "school", "/api/v1/schools/XY01/rooms", {"name": "初一(1)班", "floor": "1"}
    )
    assert room.status_code == 201, room.text
    room_id = room.json()["id"]
    same_room = world.post(
        "school", "/api/v1/schools/XY01/rooms", {"name": "初一(1)班"}
    )
    assert same_room.status_code == 409
    assert same_room.json()["detail"].startswith("name '初一(1)班'")
    device_id = world.device(
        "school",
        "XY01",
        "XY01-0001",
        name="初一(1)班电脑",
        brand="联想/Lenovo",
        price="4299.00",
        room_id=room_id,
    )

    device = world.get("school", f"/api/v1/devices/{device_id}").json()
    assert device["school_code"] == "XY01"
    assert device["room_name"] == "初一(1)班"
    assert device["price"] == "4299.00"
    assert len(device["qr_code"]) == 12

    patched = world.patch(
        "school", f"/api/v1/devices/{device_id}", {"status": "under_repair"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "under_repair"
    assert patched.json()["qr_code"] == device["qr_code"]


def test_device_validation_names_the_field(world: World) -> None:
    base = {"asset_tag": "T-1", "category": "desktop", "school_code": "XY01"}
    cases = {
        "category": {**base, "category": "toaster"},
        "price": {**base, "price": "-5"},
        "school_code": {**base, "school_code": "NOPE"},
        "status": {**base, "status": "lost"},
    }
    for field_name, body in cases.items():
        response = world.post("province", "/api/v1/devices", body)
        assert _field_of(response) == field_name, body
    unknown_category = world.post("province", "/api/v1/devices", cases["category"])
    assert "projector" in unknown_category.json()["detail"][0]["msg"]

    other_room = world.post("province", "/api/v1/schools/LH01/rooms", {"name": "机房"})
    wrong_room = {**base, "room_id": other_room.json()["id"]}
    assert _field_of(world.post("province", "/api/v1/devices", wrong_room)) == "room_id"
    assert world.get("province", "/api/v1/devices").json()["items"] == []


def test_duplicate_asset_tag_is_a_conflict(world: World) -> None:
    world.device("province", "XY01", "DUP-1")
    again = world.post(
        "province",
        "/api/v1/devices",
        {"asset_tag": "DUP-1", "category": "projector", "school_code": "SY01"},
    )
    assert again.status_code == 409
    assert "asset_tag" in again.json()["detail"]
    other = world.device("province", "SY01", "DUP-2")
    clash = world.patch("province", f"/api/v1/devices/{other}", {"asset_tag": "DUP-1"})
    assert clash.status_code == 409


def test_bureau_cannot_reach_another_districts_device(world: World) -> None:
    mine = world.device("province", "XY02", "XY02-0001")
    theirs = world.device("province", "LH01", "LH01-0001")

    listed = world.get("xiuying", "/api/v1/devices").json()["items"]
    assert [d["id"] for d in listed] == [mine]
    assert world.get("xiuying", f"/api/v1/devices/{theirs}").status_code == 404
    write = world.patch("xiuying", f"/api/v1/devices/{theirs}", {"name": "x"})
    assert write.status_code == 404
    moved_in = world.patch(
        "xiuying", f"/api/v1/devices/{mine}", {"school_code": "LH01"}
    )
    assert _field_of(moved_in) == "school_code"
    assert world.get("xiuying", "/api/v1/devices", school="LH01").status_code == 404
    assert world.get("province", f"/api/v1/devices/{theirs}").json()["name"] == ""

    haikou = world.get("haikou", "/api/v1/devices").json()["items"]
    assert [d["id"] for d in haikou] == [mine, theirs]


def test_engineer_role_cannot_write(world: World) -> None:
    device_id = world.device("province", "LH01", "LH01-0002")
    assert world.get("engineer", f"/api/v1/devices/{device_id}").status_code == 200
    response = world.patch("engineer", f"/api/v1/devices/{device_id}", {"name": "x"})
    assert response.status_code == 403


@pytest.mark.parametrize("per_school", [True, False], ids=["per-school", "filtered"])
def test_device_filters(
    world: World, per_school: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edufleet_collector.registry import devices

    if not per_school:
        monkeypatch.setattr(devices, "PER_SCHOOL_MAX_ROWS", 0)
    world.device("province", "LH01", "A-0", brand="希沃/Seewo", category="panel")
    world.device("province", "XY01", "A-1", brand="希沃/Seewo", category="panel")
    world.device("province", "XY01", "A-2", serial="SN50_OFF%")
    world.device("province", "LH01", "A-3", brand="希沃/Seewo", category="panel")
    world.device("province", "SY01", "A-4", status="retired")

    def tags(who: str = "province", **params: object) -> list[str]:
        response = world.get(who, "/api/v1/devices", **params)
        assert response.status_code == 200, response.text
        return [d["asset_tag"] for d in response.json()["items"]]

    assert tags(school="XY01") == ["A-1", "A-2"]
    assert tags(category="panel") == ["A-0", "A-1", "A-3"]
    assert tags(category="panel", school="LH01") == ["A-0", "A-3"]
    assert tags(region="460100") == ["A-0", "A-1", "A-2", "A-3"]
    assert tags(region="460100", category="panel") == ["A-0", "A-1", "A-3"]
    assert tags(region="460106", q="seewo") == ["A-0", "A-3"]
    assert tags("haikou", category="panel") == ["A-0", "A-1", "A-3"]
    assert tags("haikou", region="460200") == []
    assert tags(status="retired") == ["A-4"]
    assert tags(q="seewo") == ["A-0", "A-1", "A-3"]
    assert tags(q="50_off%") == ["A-2"]
    assert tags(q="0_o") == ["A-2"]
    assert tags(q="a_1") == []
    assert _field_of(world.get("province", "/api/v1/devices", status="lost")) == (
        "status"
    )


def test_keyset_pages_have_no_duplicates_or_gaps(world: World) -> None:
    created = [
        world.device("province", ("XY01", "XY02", "LH01")[n % 3], f"P-{n:02d}")
        for n in range(23)
    ]
    in_xiuying = [d for n, d in enumerate(created) if n % 3 != 2]

    seen: list[int] = []
    after = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 5, "region": "460105"}
        if after:
            params["after"] = after
        body = world.get("province", "/api/v1/devices", **params).json()
        seen.extend(d["id"] for d in body["items"])
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert seen == in_xiuying
    assert pages == 4

    everything = world.get("province", "/api/v1/devices", limit=500).json()
    assert [d["id"] for d in everything["items"]] == created
    assert everything["next"] is None

    bogus = world.get("province", "/api/v1/devices", after="not-a-cursor")
    assert _field_of(bogus) == "after"
    assert _field_of(world.get("province", "/api/v1/devices", limit=0)) == "limit"


def test_engineers_listing_follows_scope(world: World) -> None:
    body = {"name": "陈工", "region_code": "460105", "skills": ["network"]}
    created = world.post("xiuying", "/api/v1/engineers", body)
    assert created.status_code == 201, created.text
    chen = created.json()["id"]

    def names(who: str) -> list[str]:
        return [e["name"] for e in world.get(who, "/api/v1/engineers").json()["items"]]

    assert names("province") == ["王工", "陈工"]
    assert names("xiuying") == ["陈工"]
    assert names("haikou") == ["王工", "陈工"]
    assert names("engineer") == ["王工"]
    assert world.get(
        "xiuying", f"/api/v1/engineers/{world.engineer_id}"
    ).status_code == (404)

    bad_skill = world.post("xiuying", "/api/v1/engineers", {**body, "skills": ["x"]})
    assert bad_skill.status_code == 422
    assert bad_skill.json()["detail"][0]["loc"] == ["body", "skills", 0]
    on_leave = world.patch(
        "xiuying", f"/api/v1/engineers/{chen}", {"status": "on_leave"}
    )
    assert on_leave.json()["status"] == "on_leave"
    filtered = world.get("province", "/api/v1/engineers", status="on_leave").json()
    assert [e["id"] for e in filtered["items"]] == [chen]


def test_assignments_keep_one_primary(world: World) -> None:
    body = {"name": "陈工", "region_code": "460100", "skills": ["pc"]}
    chen = world.post("haikou", "/api/v1/engineers", body).json()["id"]
    url = f"/api/v1/schools/LH01/engineers/{chen}"

    response = world.client.put(
        url, json={"role": "primary"}, headers=world.as_("haikou")
    )
    assert response.status_code == 200, response.text
    roles = {a["engineer_name"]: a["role"] for a in response.json()}
    assert roles == {"陈工": "primary", "王工": "backup"}

    listed = world.get("engineer", "/api/v1/schools/LH01/engineers").json()
    assert [a["engineer_name"] for a in listed] == ["陈工", "王工"]

    removed = world.client.delete(url, headers=world.as_("haikou"))
    assert removed.status_code == 204
    again = world.client.delete(url, headers=world.as_("haikou"))
    assert again.status_code == 404
    foreign = world.client.put(
        "/api/v1/schools/LH01/engineers/1",
        json={"role": "backup"},
        headers=world.as_("xiuying"),
    )
    assert foreign.status_code == 404


def test_regions_and_openapi(world: World) -> None:
    regions = world.get("school", "/api/v1/regions", under="460100").json()["items"]
    assert [r["code"] for r in regions] == ["460100", "460105", "460106"]
    spec = world.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/api/v1/devices", "/api/v1/schools/{code}/engineers/{engineer_id}"} <= set(
        paths
    )
