"""Every Quetz route (from /api/openapi.json) against every kind of caller and hostile input: never a 500.

Then the permission matrix of the write routes: who gets which status on a private channel
owned by alice, and that a refused request changed nothing.
"""

from __future__ import annotations

import httpx2
import pytest
from sqlalchemy import select

from graphconda.db.models import Channel, ChannelMember, JobRun, User
from graphconda.services.context import Services
from tests.http.quetz.conftest import Keys

VALUES = {"channel": "team", "package": "hello", "platform": "noarch", "filename": "hello-1.0-0.conda",
          "username": "bob", "key": "gc-nothing", "job_id": "1", "mirror_id": "1"}
HOSTILE_BODIES: list[bytes] = [b"", b"null", b"[1]", b'{"name": null}', b'{"name": ["x"], "private": 1}',
                               b'{"action": {}, "role": 7, "username": [], "metadata": "x", "roles": [1]}',
                               b'{"name": "\\u0000", "description": "\\ud800"}', b"\xff" * 10,
                               b'{"start_at": "2020-13-45", "repeat_every_seconds": 1e300, "expire_at": 5}']
HOSTILE_PATHS = {"channel": "%00", "username": "%ud800", "job_id": "99999999999999999999999", "key": "..",
                 "filename": "x" * 300}


async def snapshot(services: Services) -> tuple[object, ...]:
    async with services.db.read() as session:
        return (sorted((c.name, c.private, tuple(c.proxylist)) for c in await session.scalars(select(Channel))),
                sorted((m.channel_id, m.user_id, m.role) for m in await session.scalars(select(ChannelMember))),
                sorted((u.username, u.server_role) for u in await session.scalars(select(User))),
                len(list(await session.scalars(select(JobRun)))))


@pytest.fixture
async def team(client: httpx2.AsyncClient, keys: Keys) -> None:
    r = await client.post("/api/channels", json={"name": "team"}, headers=keys.header("alice"))
    assert r.status_code == 201


async def test_no_route_answers_500(client: httpx2.AsyncClient, keys: Keys, team: None) -> None:
    doc = (await client.get("/api/openapi.json")).json()
    for template, methods in doc["paths"].items():
        for method in methods:
            for who in ("anon", "bob", "admin"):
                for values in (VALUES, {**VALUES, **HOSTILE_PATHS}):
                    path = template.format(**values)
                    for body in HOSTILE_BODIES[:3] if values is VALUES else HOSTILE_BODIES[:1]:
                        r = await client.request(method.upper(), path, content=body, headers=keys.header(who),
                                                 params={"skip": "-1", "limit": "x", "public": "maybe", "q": "\x00"})
                        assert r.status_code < 500, (method, path, who, body, r.status_code, r.text)
            for body in HOSTILE_BODIES:
                r = await client.request(method.upper(), template.format(**VALUES), content=body,
                                         headers=keys.header("admin"))
                assert r.status_code < 500, (method, template, body, r.status_code, r.text)


WRITES = [
    ("PATCH", "/api/channels/team", {"private": False}),
    ("DELETE", "/api/channels/team", None),
    ("PUT", "/api/channels/team/actions", {"action": "reindex"}),
    ("POST", "/api/channels/team/members", {"username": "bob", "role": "owner"}),
    ("DELETE", "/api/channels/team/members?username=alice", None),
    ("PUT", "/api/users/bob/role", {"role": "owner"}),
]
# anonymous, a stranger, a member of the private channel, server maintainer
EXPECTED = {"anon": [404, 404, 404, 404, 404, 401], "bob": [404, 404, 404, 404, 404, 403],
            "carol": [403, 403, 403, 403, 403, 403], "staff": [200, None, 200, 201, None, 403]}


@pytest.mark.parametrize("who", ["anon", "bob", "carol", "staff"])
async def test_permission_matrix(client: httpx2.AsyncClient, keys: Keys, services: Services, team: None,
                                 who: str) -> None:
    from graphconda.services import api_keys
    from graphconda.services.authz import Role
    from tests.helpers.channels import make_user

    carol = await make_user(services, "carol")
    headers = {"X-API-Key": (await api_keys.create_api_key(services, carol))[1]} if who == "carol" \
        else keys.header(who)
    r = await client.post("/api/channels/team/members", json={"username": "carol", "role": "member"},
                          headers=keys.header("alice"))
    assert r.status_code == 201
    del Role
    for (method, url, body), expected in zip(WRITES, EXPECTED[who], strict=True):
        if expected is None:
            continue
        before = await snapshot(services)
        r = await client.request(method, url, json=body, headers=headers)
        assert r.status_code == expected, (who, method, url, r.status_code, r.text)
        if expected >= 400:
            assert await snapshot(services) == before, (who, method, url)


async def test_mirror_routes_permissions_and_bad_input(client: httpx2.AsyncClient, keys: Keys, team: None,
                                                       services: Services) -> None:
    url = "/api/channels/team/mirrors"
    body = {"url": "http://127.0.0.1:9/get/m", "metrics_endpoint": "http://127.0.0.1:9/metrics/channels/m"}
    assert (await client.get(url)).status_code == 404  # private channel
    assert (await client.post(url, json=body)).status_code == 404
    assert (await client.post(url, json=body, headers=keys.header("bob"))).status_code == 404
    for bad in ({"url": "${QUETZ_HOST}/get/m", "metrics_endpoint": body["metrics_endpoint"]},
                {"url": body["url"], "metrics_endpoint": "ftp://x/metrics"}, {"url": 5}):
        r = await client.post(url, json=bad, headers=keys.header("alice"))
        assert r.status_code == 422, r.text
    # The metrics endpoint must answer (nothing listens on port 9): 422, nothing registered.
    assert (await client.post(url, json=body, headers=keys.header("alice"))).status_code == 422
    assert (await client.get(url, headers=keys.header("alice"))).json() == []
    for mirror_id in ("1", "00000000-0000-0000-0000-000000000001", "nonsense"):
        r = await client.delete(f"{url}/{mirror_id}", headers=keys.header("alice"))
        assert r.status_code == 404
    r = await client.put("/api/channels/team/actions", json={"action": "synchronize_metrics"},
                         headers=keys.header("alice"))
    assert r.status_code == 200 and r.json()["manifest"] == "synchronize_metrics"
    r = await client.post("/api/channels?register_mirror=true&mirror_api_key=k", headers=keys.header("admin"),
                          json={"name": "reg", "private": False, "mirror_mode": "mirror",
                                "mirror_channel_url": "http://127.0.0.1:9/get/team"})
    assert r.status_code == 422
    async with services.db.read() as session:
        assert await session.scalar(select(Channel.id).where(Channel.name == "reg")) is None
