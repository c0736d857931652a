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
from tests.helpers.packages import build_package
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
