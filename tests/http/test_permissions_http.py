"""The permission matrix over HTTP: each role, with its own API key, tries every action through GraphQL.

Expectations come from the same table as the authz unit tests (tests/services/test_authz.py),
so the README's matrix, authz and the API cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from graphconda.services import api_keys, channels, members, packages, users
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from tests.helpers.packages import build_package
from tests.helpers.sessions import session_cookie
from tests.services.test_authz import expected

WHO = [
    "anonymous",
    "user",
    "server-member",
    "server-maintainer",
    "server-owner",
    "channel-member",
    "channel-maintainer",
    "channel-owner",
    "package-member",
    "package-maintainer",
    "package-owner",
]
SERVER_ROLES = {"server-member": Role.MEMBER, "server-maintainer": Role.MAINTAINER, "server-owner": Role.OWNER}
CHANNEL_ROLES = {"channel-member": Role.MEMBER, "channel-maintainer": Role.MAINTAINER, "channel-owner": Role.OWNER}
PACKAGE_ROLES = {"package-member": Role.MEMBER, "package-maintainer": Role.MAINTAINER, "package-owner": Role.OWNER}

# (action name in the authz table, GraphQL document); run in this order, destructive ones last.
MUTATIONS = [
    ("update-channel", 'mutation { updateChannel(input: {name: "team", description: "changed"}) { __typename } }'),
    ("add-member", 'mutation { setChannelMember(channel: "team", username: "extra", role: MEMBER) { __typename } }'),
    ("add-owner", 'mutation { setChannelMember(channel: "team", username: "extra2", role: OWNER) { __typename } }'),
    (
        "manage-package-members",
        'mutation { setPackageMember(channel: "team", package: "numpy", username: "extra", role: MAINTAINER)'
        " { __typename } }",
    ),
    (
        "delete-file",
        'mutation { deletePackageFile(channel: "team", subdir: "noarch", filename: "numpy-1.0-0.conda")'
        " { __typename } }",
    ),
    ("delete-channel", 'mutation { deleteChannel(name: "team") { __typename } }'),
]


@dataclass
class World:
    keys: dict[str, str]
    packages: Path


async def upload(services: Services, actor: Any, path: Path) -> None:
    data = await anyio.Path(path).read_bytes()

    async def body() -> Any:
        yield data

    await packages.ingest_package(services, actor, "team", path.name, body())


async def make_world(services: Services, tmp_path: Path, private: bool) -> World:
    creator = users.actor_for(await users.create_user(services, SYSTEM, "creator"))
    await channels.create_channel(services, creator, channels.ChannelSpec("team", private=private))
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    await upload(services, creator, build_package(pkgs, "numpy", "1.0", "0"))
    for extra in ("extra", "extra2"):
        await users.create_user(services, SYSTEM, extra)
    keys: dict[str, str] = {}
    for who in WHO[1:]:
        user = await users.create_user(services, SYSTEM, who, server_role=SERVER_ROLES.get(who))
        if who in CHANNEL_ROLES:
            await members.set_channel_member(services, SYSTEM, "team", who, CHANNEL_ROLES[who])
        if who in PACKAGE_ROLES:
            await members.set_package_member(services, SYSTEM, "team", "numpy", who, PACKAGE_ROLES[who])
        _, keys[who] = await api_keys.create_api_key(services, SYSTEM, user_id=user.id)
    return World(keys, pkgs)


SUCCESS = {"PackageFile", "Channel", "Member", "DeletedPackageFile", "DeletedChannel"}


def classify(typename: str | None) -> str:
    if typename in (None, "NotFound"):
        return "hidden"
    if typename == "PermissionDenied":
        return "denied"
    return "ok" if typename in SUCCESS else f"unexpected {typename}"


def want(action: str, who: str, private: bool) -> str:
    got = expected(action, who, private)
    return {"ok": "ok", 401: "denied", 403: "denied", 404: "hidden"}[got]


async def gql(client: httpx2.AsyncClient, key: str | None, query: str) -> dict[str, Any]:
    headers = {"X-API-Key": key} if key else {}
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def gql_upload(client: httpx2.AsyncClient, key: str | None, path: Path, force: bool) -> str:
    operations = {
        "query": "mutation($files: [Upload!]!) { uploadPackages(channel: \"team\", files: $files, "
        f"force: {'true' if force else 'false'}) {{ __typename }} }}",
        "variables": {"files": [None]},
    }
    headers = {"X-API-Key": key} if key else {}
    content = await anyio.Path(path).read_bytes()
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.files.0"]})},
        files={"0": (path.name, content, "application/octet-stream")},
        headers=headers,
    )
    if key is None:  # multipart GraphQL without a key is refused before any lookup (CSRF guard)
        assert response.status_code in (400, 401, 403)
        return "refused"
    assert response.status_code == 200, response.text
    return classify(response.json()["data"]["uploadPackages"][0]["__typename"])


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("who", WHO)
async def test_matrix_over_graphql(
    client: httpx2.AsyncClient, services: Services, tmp_path: Path, who: str, private: bool
) -> None:
    world = await make_world(services, tmp_path, private)
    key = world.keys.get(who)
    got: dict[str, str] = {}
    read = await gql(client, key, '{ channel(name: "team") { name } }')
    got["read"] = "ok" if read["channel"] else "hidden"
    got["upload"] = await gql_upload(client, key, build_package(world.packages, "numpy", "2.0", "0"), force=False)
    again = world.packages / "again"
    again.mkdir()
    got["upload-force"] = await gql_upload(client, key, build_package(again, "numpy", "1.0", "0"), force=True)
    for action, document in MUTATIONS:
        data = await gql(client, key, document)
        got[action] = classify(next(iter(data.values()))["__typename"])
    for action in ("upload", "upload-force"):
        if got[action] == "refused":  # anonymous: refused before the channel is even looked up
            assert want(action, who, private) != "ok"
            del got[action]
    assert got == {action: want(action, who, private) for action in got}
    # Whatever was refused left the channel as it was for its owner to see.
    if got["delete-channel"] != "ok":
        creator_view = await gql(client, world.keys["server-owner"], '{ channel(name: "team") { name } }')
        assert creator_view["channel"] == {"name": "team"}


# --- the conda routes and the REST upload routes ------------------------------------

STATUS = {"ok": 200, 401: 401, 403: 403, 404: 404}


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("who", WHO)
async def test_matrix_over_conda_and_upload_routes(
    client: httpx2.AsyncClient, services: Services, tmp_path: Path, who: str, private: bool
) -> None:
    world = await make_world(services, tmp_path, private)
    await wait_published(services)
    key = world.keys.get(who)
    headers = {"X-API-Key": key} if key else {}
    read = STATUS[expected("read", who, private)]
    for path in ("/get/team/noarch/repodata.json", "/get/team/noarch/numpy-1.0-0.conda"):
        assert (await client.get(path, headers=headers)).status_code == read, path
        if key:  # conda's token path
            assert (await client.get(f"/t/{key}{path}")).status_code == read, path
    assert (await client.head("/get/team/noarch/repodata.json", headers=headers)).status_code == read

    def created(action: str) -> int:
        want_ = expected(action, who, private)
        return 201 if want_ == "ok" else want_

    new = build_package(world.packages, "numpy", "2.0", "0")
    response = await client.post(
        f"/api/channels/team/upload/{new.name}", content=await anyio.Path(new).read_bytes(), headers=headers
    )
    assert response.status_code == created("upload"), response.text
    if response.status_code != 201:
        assert "team" not in response.text  # never named in an error
    newer = build_package(world.packages, "numpy", "3.0", "0")
    response = await client.post(
        "/api/v1/upload/team", content=await anyio.Path(newer).read_bytes(),
        headers={**headers, "X-File-Name": newer.name},
    )
    assert response.status_code == created("upload"), response.text
    again = world.packages / "again"
    again.mkdir()
    same = build_package(again, "numpy", "1.0", "0")
    response = await client.post(
        f"/api/channels/team/upload/{same.name}?force=true", content=await anyio.Path(same).read_bytes(),
        headers=headers,
    )
    assert response.status_code == created("upload-force"), response.text
    await wait_published(services)
    listed = (await client.get("/get/team/noarch/repodata.json", headers=world_owner(world))).json()
    names = sorted(listed["packages.conda"])
    uploaded = expected("upload", who, private) == "ok"
    assert names == (
        ["numpy-1.0-0.conda", "numpy-2.0-0.conda", "numpy-3.0-0.conda"] if uploaded else ["numpy-1.0-0.conda"]
    )


def world_owner(world: World) -> dict[str, str]:
    return {"X-API-Key": world.keys["server-owner"]}


async def test_scoped_key_reads_only_its_private_channel(
    client: httpx2.AsyncClient, services: Services, tmp_path: Path
) -> None:
    world = await make_world(services, tmp_path, private=True)
    owner = users.actor_for(await users.get_user(services, "channel-owner"))
    await channels.create_channel(services, owner, channels.ChannelSpec("other", private=True))
    _, other_only = await api_keys.create_api_key(
        services, owner, scopes=[api_keys.ScopeSpec("other", "owner")]
    )
    _, team_reader = await api_keys.create_api_key(services, owner, scopes=[api_keys.ScopeSpec("team", "member")])
    assert (await client.get(f"/t/{other_only}/get/team/noarch/repodata.json")).status_code == 404
    assert (await client.get(f"/t/{team_reader}/get/team/noarch/repodata.json")).status_code == 200
    pkg = build_package(world.packages, "numpy", "2.0", "0")
    response = await client.post(
        f"/t/{team_reader}/api/channels/team/upload/{pkg.name}", content=await anyio.Path(pkg).read_bytes()
    )
    assert response.status_code == 403  # the channel owner's key, scoped down to member


async def test_cookie_uploads_need_same_site_proof(
    client: httpx2.AsyncClient, services: Services, tmp_path: Path
) -> None:
    """A cross-site form could post a multipart upload with the user's cookie; it must be refused."""
    await make_world(services, tmp_path, private=False)
    cookie = await session_cookie(services, "channel-owner")
    client.cookies.set("graphconda_session", cookie, domain="testserver.local")
    pkg = build_package(tmp_path, "scipy", "1.0", "0")
    files = {"files": (pkg.name, await anyio.Path(pkg).read_bytes(), "application/octet-stream")}
    refused = await client.post("/api/channels/team/files", files=files)
    assert refused.status_code == 403
    refused = await client.post("/api/channels/team/files", files=files, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    await wait_published(services)
    repodata = (await client.get("/get/team/noarch/repodata.json")).json()
    assert "scipy-1.0-0.conda" not in repodata["packages.conda"]
    accepted = await client.post("/api/channels/team/files", files=files, headers={"Origin": "http://testserver"})
    assert accepted.status_code == 201, accepted.text
