"""Quetz channel and member routes in process: shapes, status codes, permissions, bad input, no partial change."""

from __future__ import annotations

import json

import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import Channel, JobRun, JobSchedule
from graphconda.services.context import Services
from tests.http.quetz.conftest import Keys

CHANNEL_FIELDS = {"name", "description", "private", "size_limit", "ttl", "mirror_channel_url", "mirror_mode",
                  "members_count", "packages_count"}
JOB_FIELDS = {"id", "items_spec", "manifest", "owner_id", "created", "status", "start_at", "repeat_every_seconds"}


async def channel_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Channel)) or 0)


async def job_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(JobRun)) or 0)


async def create(client: httpx2.AsyncClient, keys: Keys, who: str, body: dict[str, object]) -> httpx2.Response:
    return await client.post("/api/channels", json=body, headers=keys.header(who))


async def test_create_list_read_patch_delete(client: httpx2.AsyncClient, keys: Keys) -> None:
    r = await create(client, keys, "alice", {"name": "my-channel", "description": "Description for my-channel",
                                              "private": False})
    assert r.status_code == 201, r.text
    assert r.json() is None
    listed = (await client.get("/api/channels")).json()
    assert [c["name"] for c in listed] == ["my-channel"]
    assert set(listed[0]) == CHANNEL_FIELDS
    assert listed[0]["members_count"] == 1 and listed[0]["packages_count"] == 0
    assert listed[0]["mirror_mode"] is None and listed[0]["size_limit"] is None
    page = (await client.get("/api/paginated/channels", params={"skip": 0, "limit": 5, "q": "my"})).json()
    assert page["pagination"] == {"skip": 0, "limit": 5, "all_records_count": 1}
    assert page["result"] == listed
    assert (await client.get("/api/paginated/channels", params={"q": "nothing"})).json()["result"] == []
    members = (await client.get("/api/channels/my-channel/members")).json()
    assert [(m["role"], m["user"]["username"]) for m in members] == [("owner", "alice")]
    assert set(members[0]["user"]) == {"id", "username", "profile"}
    assert set(members[0]["user"]["profile"]) == {"name", "avatar_url"}
    again = await create(client, keys, "bob", {"name": "my-channel", "private": False})
    assert again.status_code == 409
    r = await client.patch("/api/channels/my-channel", json={"private": True}, headers=keys.header("alice"))
    assert r.status_code == 200 and r.json()["private"] is True
    assert set(r.json()) == CHANNEL_FIELDS - {"members_count", "packages_count"}
    assert (await client.get("/api/channels/my-channel")).status_code == 404  # private now: invisible
    assert (await client.get("/api/channels/my-channel", headers=keys.header("alice"))).json()["private"] is True
    assert (await client.delete("/api/channels/my-channel", headers=keys.header("bob"))).status_code == 404
    assert (await client.delete("/api/channels/my-channel", headers=keys.header("alice"))).status_code == 200
    assert (await client.get("/api/channels/my-channel", headers=keys.header("alice"))).status_code == 404


async def test_private_is_the_default_and_public_false_lists_own_channels(client: httpx2.AsyncClient,
                                                                          keys: Keys) -> None:
    assert (await create(client, keys, "alice", {"name": "secret"})).status_code == 201
    assert (await create(client, keys, "bob", {"name": "open", "private": False})).status_code == 201
    assert [c["name"] for c in (await client.get("/api/channels")).json()] == ["open"]
    mine = (await client.get("/api/channels", params={"public": "false"}, headers=keys.header("alice"))).json()
    assert [(c["name"], c["private"]) for c in mine] == [("secret", True)]
    everything = (await client.get("/api/channels", headers=keys.header("admin"))).json()
    assert [c["name"] for c in everything] == ["open", "secret"]


async def test_body_without_json_content_type(client: httpx2.AsyncClient, keys: Keys) -> None:
    r = await client.post("/api/channels", content=json.dumps({"name": "formish", "private": False}),
                          headers={**keys.header("alice"), "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("body, field", [
    ({"private": False}, "name"),
    ({"name": 5}, "name"),
    ({"name": "x1", "private": "yes"}, "private"),
    ({"name": "x1", "ttl": "soon"}, "ttl"),
    ({"name": "x1", "mirror_mode": "mirror"}, "mirror_mode"),
    ({"name": "x1", "mirror_channel_url": "https://example.org/c"}, "mirror_mode"),
    ({"name": "x1", "mirror_mode": "mirror", "mirror_channel_url": "ftp://example.org/c"}, "mirror_channel_url"),
    ({"name": "x1", "mirror_mode": "copy", "mirror_channel_url": "https://example.org/c"}, "mirror_mode"),
    ({"name": "x1", "metadata": {"includelist": ["a"], "excludelist": []}}, "metadata"),
    ({"name": "x1", "metadata": {"proxylist": "cudnn"}}, "proxylist"),
    ({"name": "x1", "metadata": {"colour": []}}, "metadata"),
    ({"name": "x1", "metadata": []}, "metadata"),
    ({"name": "x1", "actions": ["explode"]}, "action"),
    ({"name": "x1", "actions": "reindex"}, "actions"),
    ({"name": "x1", "actions": ["validate_packages"]}, "action"),
    ({"name": "x1", "size_limit": 100}, "size_limit"),
    ({"name": "Not A Name!"}, None),
])
async def test_bad_create_bodies_are_422_and_create_nothing(client: httpx2.AsyncClient, keys: Keys,
                                                            services: Services, body: dict[str, object],
                                                            field: str | None) -> None:
    r = await create(client, keys, "admin", body)
    assert r.status_code == 422, r.text
    if field:
        assert r.json()["field"] == field
    assert await channel_count(services) == 0
    assert await job_count(services) == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff\xfe", b'"name"'])
async def test_unparseable_bodies_are_422(client: httpx2.AsyncClient, keys: Keys, raw: bytes) -> None:
    r = await client.post("/api/channels", content=raw, headers=keys.header("alice"))
    assert r.status_code == 422


async def test_mirror_action_on_a_normal_channel_is_405(client: httpx2.AsyncClient, keys: Keys,
                                                        services: Services) -> None:
    r = await create(client, keys, "alice", {"name": "plain", "private": False, "actions": ["synchronize"]})
    assert r.status_code == 405
    assert await channel_count(services) == 0
    assert (await create(client, keys, "alice", {"name": "plain", "private": False})).status_code == 201
    for action in ("synchronize", "synchronize_repodata"):
        r = await client.put("/api/channels/plain/actions", content=json.dumps({"action": action}),
                             headers=keys.header("alice"))
        assert r.status_code == 405, r.text
    assert await job_count(services) == 0


async def test_actions_answer_quetz_jobs(client: httpx2.AsyncClient, keys: Keys, services: Services) -> None:
    assert (await create(client, keys, "alice", {"name": "plain", "private": False})).status_code == 201
    r = await client.put("/api/channels/plain/actions", content=json.dumps({"action": "reindex"}),
                         headers=keys.header("alice"))
    assert r.status_code == 200, r.text
    job = r.json()
    assert set(job) == JOB_FIELDS
    assert job["manifest"] == "reindex" and job["status"] in ("pending", "running", "success")
    assert job["items_spec"] == "channel=plain"
    # A second trigger while it is queued answers the same run (no duplicate).
    again = await client.put("/api/channels/plain/actions", json={"action": "generate_indexes"},
                             headers=keys.header("alice"))
    assert again.json()["id"] == job["id"]
    for who, status in (("anon", 401), ("bob", 403)):
        r = await client.put("/api/channels/plain/actions", json={"action": "reindex"}, headers=keys.header(who))
        assert r.status_code == status
    assert (await client.put("/api/channels/plain/actions", json={"action": "nope"},
                             headers=keys.header("alice"))).status_code == 422
    assert (await client.put("/api/channels/plain/actions", json={"action": ["reindex"]},
                             headers=keys.header("alice"))).status_code == 422
    assert (await client.put("/api/channels/plain/actions", json={},
                             headers=keys.header("alice"))).status_code == 422
    # cleanup is server-wide: server staff only.
    assert (await client.put("/api/channels/plain/actions", json={"action": "cleanup_dry_run"},
                             headers=keys.header("alice"))).status_code == 403
    r = await client.put("/api/channels/plain/actions", json={"action": "cleanup_dry_run"},
                         headers=keys.header("admin"))
    assert r.status_code == 200 and r.json()["manifest"] == "cleanup" and r.json()["items_spec"] == "*"
    assert (await client.put("/api/channels/nowhere/actions", json={"action": "reindex"},
                             headers=keys.header("admin"))).status_code == 404


async def test_action_start_at_and_repeat(client: httpx2.AsyncClient, keys: Keys, services: Services) -> None:
    assert (await create(client, keys, "alice", {"name": "plain", "private": False})).status_code == 201
    bad = [({"action": "reindex", "start_at": "tomorrow"}, "start_at"),
           ({"action": "reindex", "repeat_every_seconds": "often"}, "repeat_every_seconds"),
           ({"action": "reindex", "repeat_every_seconds": 0}, "repeat_every_seconds")]
    for body, field in bad:
        r = await client.put("/api/channels/plain/actions", json=body, headers=keys.header("alice"))
        assert r.status_code == 422 and r.json()["field"] == field
    assert await job_count(services) == 0
    r = await client.put("/api/channels/plain/actions", headers=keys.header("alice"),
                         json={"action": "reindex", "start_at": "2999-01-01T00:00:00", "repeat_every_seconds": 3600})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["start_at"].startswith("2999-01-01T00:00:00")
    assert r.json()["repeat_every_seconds"] == 3600
    async with services.db.read() as session:
        schedule = await session.scalar(select(JobSchedule).where(JobSchedule.kind == "reindex"))
    assert schedule is not None and schedule.interval_seconds == 3600


async def test_channel_permissions(client: httpx2.AsyncClient, keys: Keys, services: Services) -> None:
    assert (await create(client, keys, "anon", {"name": "x1"})).status_code == 401
    mirror = {"name": "m1", "private": False, "mirror_mode": "mirror", "mirror_channel_url": "http://127.0.0.1:9/c",
              "actions": []}
    assert (await create(client, keys, "alice", mirror)).status_code == 403
    assert await channel_count(services) == 0
    assert (await create(client, keys, "alice", {"name": "pub", "private": False})).status_code == 201
    r = await client.patch("/api/channels/pub", json={"private": True}, headers=keys.header("bob"))
    assert r.status_code == 403
    assert (await client.patch("/api/channels/pub", json={"private": True})).status_code == 401
    assert (await client.delete("/api/channels/pub", headers=keys.header("bob"))).status_code == 403
    assert (await client.delete("/api/channels/pub")).status_code == 401
    # Mirroring lists are server staff's business (graphconda is stricter than Quetz here).
    lists = {"metadata": {"proxylist": ["cudnn"]}}
    assert (await client.patch("/api/channels/pub", json=lists, headers=keys.header("alice"))).status_code == 403
    assert (await client.patch("/api/channels/pub", json={"name": "other"},
                               headers=keys.header("alice"))).status_code == 422
    assert (await client.patch("/api/channels/pub", json={"description": "new"},
                               headers=keys.header("alice"))).status_code == 422
    assert (await client.patch("/api/channels/pub", json={"private": "yes"},
                               headers=keys.header("alice"))).status_code == 422
    assert (await client.get("/api/channels/pub")).json()["private"] is False


async def test_patch_lists_of_a_mirror(client: httpx2.AsyncClient, keys: Keys, services: Services) -> None:
    mirror = {"name": "m1", "private": False, "mirror_mode": "mirror", "mirror_channel_url": "http://127.0.0.1:9/c",
              "actions": []}
    assert (await create(client, keys, "admin", mirror)).status_code == 201
    assert await job_count(services) == 0  # `actions: []`: no first sync
    proxylist = ["cudatoolkit", "cudnn", "cutensor", "cusparselt", "msmpi", "msms", "nvcc"]
    r = await client.patch("/api/channels/m1", headers=keys.header("admin"),
                           json={"metadata": {"excludelist": [], "includelist": [], "proxylist": proxylist}})
    assert r.status_code == 200, r.text
    async with services.db.read() as session:
        channel = await session.scalar(select(Channel).where(Channel.name == "m1"))
    assert channel is not None and channel.proxylist == proxylist and channel.includelist == []
    bad = await client.patch("/api/channels/m1", headers=keys.header("admin"),
                             json={"metadata": {"excludelist": ["a"], "includelist": ["b"]}})
    assert bad.status_code == 422
    async with services.db.read() as session:
        channel = await session.scalar(select(Channel).where(Channel.name == "m1"))
    assert channel is not None and channel.includelist == [] and channel.excludelist == []


async def test_members(client: httpx2.AsyncClient, keys: Keys) -> None:
    assert (await create(client, keys, "alice", {"name": "team"})).status_code == 201  # private
    add = {"username": "bob", "role": "member"}
    assert (await client.post("/api/channels/team/members", json=add)).status_code == 404  # invisible to anonymous
    assert (await client.post("/api/channels/team/members", json=add, headers=keys.header("bob"))).status_code == 404
    assert (await client.post("/api/channels/team/members", json=add, headers=keys.header("alice"))).status_code == 201
    # bob sees the private channel now, but a member may not manage members.
    r = await client.post("/api/channels/team/members", json={"username": "staff", "role": "member"},
                          headers=keys.header("bob"))
    assert r.status_code == 403
    r = await client.post("/api/channels/team/members", json={"username": "bob", "role": "maintainer"},
                          headers=keys.header("alice"))
    assert r.status_code == 201  # Quetz: POST changes an existing member's role
    listed = (await client.get("/api/channels/team/members", headers=keys.header("bob"))).json()
    assert [(m["user"]["username"], m["role"]) for m in listed] == [("alice", "owner"), ("bob", "maintainer")]
    for body in ({"username": "bob", "role": "king"}, {"username": "bob"}, {"role": "member"},
                 {"username": 3, "role": "member"}):
        assert (await client.post("/api/channels/team/members", json=body,
                                  headers=keys.header("alice"))).status_code == 422
    assert (await client.post("/api/channels/team/members", json={"username": "ghost", "role": "member"},
                              headers=keys.header("alice"))).status_code == 404
    assert (await client.delete("/api/channels/team/members", params={"username": "staff"},
                                headers=keys.header("alice"))).status_code == 404  # not a member
    assert (await client.delete("/api/channels/team/members", headers=keys.header("alice"))).status_code == 422
    assert (await client.delete("/api/channels/team/members", params={"username": "alice"},
                                headers=keys.header("alice"))).status_code == 409  # the last owner stays
    assert (await client.delete("/api/channels/team/members", params={"username": "bob"},
                                headers=keys.header("alice"))).status_code == 200
    assert (await client.get("/api/channels/team/members", headers=keys.header("bob"))).status_code == 404


async def test_upstream_credentials_only_for_server_staff(client: httpx2.AsyncClient, keys: Keys) -> None:
    url = "http://user:s3cret@127.0.0.1:9/t/tok123/get/c"
    r = await create(client, keys, "admin", {"name": "px", "private": False, "mirror_mode": "proxy",
                                             "mirror_channel_url": url})
    assert r.status_code == 201
    assert (await client.get("/api/channels/px", headers=keys.header("admin"))).json()["mirror_channel_url"] == url
    for who in ("anon", "alice"):
        for got in [(await client.get("/api/channels/px", headers=keys.header(who))).json(),
                    (await client.get("/api/channels", headers=keys.header(who))).json()[0]]:
            assert "s3cret" not in got["mirror_channel_url"] and "tok123" not in got["mirror_channel_url"]
