"""Quetz user, API key and job routes in process: shapes, the holes graphconda keeps closed, bad input."""

from __future__ import annotations

import httpx2
from sqlalchemy import select

from graphconda.db.models import ApiKey
from graphconda.services.context import Services
from tests.http.quetz.conftest import Keys

USER_FIELDS = {"id", "username", "profile"}
KEY_FIELDS = {"description", "time_created", "expire_at", "roles", "key"}


async def test_me_and_users(client: httpx2.AsyncClient, keys: Keys) -> None:
    assert (await client.get("/api/me")).status_code == 401
    me = (await client.get("/api/me", headers=keys.header("alice"))).json()
    assert set(me) == {"name", "avatar_url", "user"} and me["user"]["username"] == "alice"
    everyone = (await client.get("/api/users", headers=keys.header("admin"))).json()
    assert [u["username"] for u in everyone] == ["admin", "alice", "bob", "staff"]
    assert set(everyone[0]) == USER_FIELDS and everyone[0]["id"].count("-") == 4
    # A plain user sees only themself (as in Quetz); anonymous callers nothing.
    assert [u["username"] for u in (await client.get("/api/users", headers=keys.header("bob"))).json()] == ["bob"]
    assert (await client.get("/api/users")).status_code == 401
    page = (await client.get("/api/paginated/users", params={"skip": 1, "limit": 2, "q": "a"},
                             headers=keys.header("admin"))).json()
    assert page["pagination"] == {"skip": 1, "limit": 2, "all_records_count": 3}
    assert [u["username"] for u in page["result"]] == ["alice", "staff"]
    assert (await client.get("/api/paginated/users", params={"limit": "many"},
                             headers=keys.header("admin"))).status_code == 422
    assert (await client.get("/api/users/bob", headers=keys.header("bob"))).json()["username"] == "bob"
    assert (await client.get("/api/users/alice", headers=keys.header("bob"))).status_code == 403
    assert (await client.get("/api/users/ghost", headers=keys.header("bob"))).status_code == 403  # no probing
    assert (await client.get("/api/users/ghost", headers=keys.header("admin"))).status_code == 404


async def test_roles(client: httpx2.AsyncClient, keys: Keys) -> None:
    assert (await client.get("/api/users/staff/role", headers=keys.header("admin"))).json() == {"role": "maintainer"}
    assert (await client.get("/api/users/bob/role", headers=keys.header("bob"))).json() == {"role": None}
    assert (await client.get("/api/users/staff/role", headers=keys.header("bob"))).status_code == 403
    # Quetz lets an anonymous PUT with a null role through; graphconda never.
    assert (await client.put("/api/users/staff/role", json={"role": None})).status_code == 401
    assert (await client.put("/api/users/staff/role", json={"role": "owner"},
                             headers=keys.header("bob"))).status_code == 403
    assert (await client.put("/api/users/staff/role", json={"role": None},
                             headers=keys.header("staff"))).status_code == 403
    assert (await client.get("/api/users/staff/role", headers=keys.header("admin"))).json() == {"role": "maintainer"}
    for body in ({"role": "emperor"}, {}, {"role": 3}):
        assert (await client.put("/api/users/bob/role", json=body, headers=keys.header("admin"))).status_code == 422
    assert (await client.put("/api/users/ghost/role", json={"role": "member"},
                             headers=keys.header("admin"))).status_code == 404
    assert (await client.put("/api/users/bob/role", json={"role": "maintainer"},
                             headers=keys.header("admin"))).status_code == 200
    assert (await client.get("/api/users/bob/role", headers=keys.header("bob"))).json() == {"role": "maintainer"}
    assert (await client.put("/api/users/bob/role", json={"role": None},
                             headers=keys.header("admin"))).status_code == 200
    assert (await client.get("/api/users/bob/role", headers=keys.header("bob"))).json() == {"role": None}


async def test_api_keys_hashed_and_shown_once(client: httpx2.AsyncClient, keys: Keys, services: Services) -> None:
    r = await client.post("/api/channels", json={"name": "my-channel", "private": False}, headers=keys.header("alice"))
    assert r.status_code == 201
    body = {"description": "my-test-token", "roles": [{"role": "owner", "channel": "my-channel"}]}
    assert (await client.post("/api/api-keys", json=body)).status_code == 401
    r = await client.post("/api/api-keys", json=body, headers=keys.header("alice"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == KEY_FIELDS and created["key"].startswith("gc-")
    assert created["roles"] == [{"channel": "my-channel", "package": None, "role": "owner"}]
    async with services.db.read() as session:
        stored = list(await session.scalars(select(ApiKey.key_hash)))
    assert created["key"] not in stored and all(created["key"] not in h for h in stored)
    listed = (await client.get("/api/api-keys", headers=keys.header("alice"))).json()
    assert {k["description"]: k["key"] for k in listed} == {"": None, "my-test-token": None}
    # The new key works, within its scope.
    scoped = {"X-API-Key": created["key"]}
    assert (await client.patch("/api/channels/my-channel", json={"private": True}, headers=scoped)).status_code == 200
    for bad in ({"roles": []}, {"description": 5}, {"description": "x", "expire_at": "soon"},
                {"description": "x", "expire_at": "2000-01-01"}, {"description": "x", "roles": "all"},
                {"description": "x", "roles": [{"channel": "my-channel", "role": "god"}]},
                {"description": "x", "roles": [{"channel": "nowhere", "role": "owner"}]}):
        r = await client.post("/api/api-keys", json=bad, headers=keys.header("alice"))
        assert r.status_code in (404, 422), (bad, r.status_code, r.text)
    dated = await client.post("/api/api-keys", json={"description": "d", "expire_at": "2999-12-31"},
                              headers=keys.header("alice"))
    assert dated.status_code == 201 and dated.json()["expire_at"] == "2999-12-31" and dated.json()["roles"] is None
    # Revoking: by the secret (Quetz) or not at all by someone else.
    assert (await client.delete(f"/api/api-keys/{created['key']}", headers=keys.header("bob"))).status_code == 404
    assert (await client.delete("/api/api-keys/gc-nothing", headers=keys.header("alice"))).status_code == 404
    assert (await client.delete(f"/api/api-keys/{created['key']}")).status_code == 401
    assert (await client.delete(f"/api/api-keys/{created['key']}", headers=keys.header("alice"))).status_code == 200
    assert (await client.get("/api/me", headers=scoped)).status_code == 401
    listed = (await client.get("/api/api-keys", headers=keys.header("alice"))).json()
    assert sorted(k["description"] for k in listed) == ["", "d"]


async def test_jobs(client: httpx2.AsyncClient, keys: Keys) -> None:
    for name in ("a-chan", "b-chan"):
        assert (await client.post("/api/channels", json={"name": name, "private": False},
                                  headers=keys.header("alice"))).status_code == 201
    start = {"action": "reindex", "start_at": "2999-01-01T00:00:00Z"}
    job = (await client.put("/api/channels/a-chan/actions", json=start, headers=keys.header("alice"))).json()
    assert (await client.get("/api/jobs")).status_code == 401
    listed = (await client.get("/api/jobs", headers=keys.header("alice"))).json()
    assert listed["pagination"]["all_records_count"] == 1 and listed["result"][0]["id"] == job["id"]
    assert (await client.get("/api/jobs", headers=keys.header("bob"))).json()["result"] == []
    assert (await client.get("/api/jobs", params={"status": "success"},
                             headers=keys.header("alice"))).json()["result"] == []
    assert (await client.get("/api/jobs", params={"status": "exploded"},
                             headers=keys.header("alice"))).status_code == 422
    assert (await client.get(f"/api/jobs/{job['id']}", headers=keys.header("alice"))).json() == job
    assert (await client.get(f"/api/jobs/{job['id']}", headers=keys.header("bob"))).status_code == 404
    assert (await client.get("/api/jobs/not-a-number", headers=keys.header("alice"))).status_code == 404
    assert (await client.patch(f"/api/jobs/{job['id']}", json={"status": "cancelled"},
                               headers=keys.header("bob"))).status_code == 404
    assert (await client.patch(f"/api/jobs/{job['id']}", json={"status": "running"},
                               headers=keys.header("alice"))).status_code == 422
    assert (await client.patch(f"/api/jobs/{job['id']}", json={"status": "cancelled"},
                               headers=keys.header("alice"))).status_code == 200
    got = (await client.get(f"/api/jobs/{job['id']}", headers=keys.header("alice"))).json()
    assert got["status"] == "cancelled"
    assert (await client.patch(f"/api/jobs/{job['id']}", json={"status": "cancelled"},
                               headers=keys.header("alice"))).status_code == 409
    everything = (await client.get("/api/jobs", params=[("status", "cancelled"), ("status", "pending")],
                                   headers=keys.header("admin"))).json()
    assert [j["id"] for j in everything["result"]] == [job["id"]]


async def test_unstorable_text_and_deep_bodies_are_422(client: httpx2.AsyncClient, keys: Keys) -> None:
    # Regression: a lone surrogate in a key description reached the database driver (500).
    r = await client.post("/api/api-keys", content=b'{"description": "\\ud800"}', headers=keys.header("alice"))
    assert r.status_code == 422 and r.json()["field"] == "description"
    r = await client.post("/api/channels", content=b'{"name": "x", "metadata": {"proxylist": ["a\\u0000"]}}',
                          headers=keys.header("admin"))
    assert r.status_code == 422 and r.json()["field"] == "proxylist"
    r = await client.post("/api/channels", content=b"[" * 200_000 + b"]" * 200_000, headers=keys.header("admin"))
    assert r.status_code == 422


async def test_bearer_credentials(client: httpx2.AsyncClient, keys: Keys) -> None:
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {keys.alice}"})
    assert me.status_code == 200 and me.json()["user"]["username"] == "alice"
    r = await client.post("/api/channels", json={"name": "bearer-made", "private": False},
                          headers={"Authorization": f"Bearer {keys.alice}"})
    assert r.status_code == 201
    assert (await client.get("/api/me", headers={"Authorization": "Bearer gc-wrong"})).status_code == 401
