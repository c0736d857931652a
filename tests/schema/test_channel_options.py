"""GraphQL: channel publishing options on createChannel / updateChannel and Channel.publishing."""

from __future__ import annotations

import bz2

import httpx2

from tests.schema.conftest import Gql, People, data, set_member

CREATE = """
mutation($input: CreateChannelInput!) {
  createChannel(input: $input) {
    __typename ... on Channel { name publishing { bz2 currentRepodata shards } } ... on Error { message }
  }
}"""

UPDATE = """
mutation($input: UpdateChannelInput!) {
  updateChannel(input: $input) {
    __typename
    ... on Channel { name description publishing { bz2 currentRepodata shards } }
    ... on Error { message }
  }
}"""


async def test_create_and_update_options(gql: Gql, people: People, client: httpx2.AsyncClient) -> None:
    made = data(await gql(CREATE, {"input": {"name": "tools"}}, as_=people.alice))["createChannel"]
    assert made["publishing"] == {"bz2": False, "currentRepodata": False, "shards": True}  # server default
    made = data(await gql(CREATE, {"input": {"name": "classic", "publishBz2": True, "publishCurrentRepodata": True,
                                             "publishShards": False}}, as_=people.alice))["createChannel"]
    assert made["publishing"] == {"bz2": True, "currentRepodata": True, "shards": False}
    assert (await client.get("/get/classic/noarch/repodata_shards.msgpack.zst")).status_code == 404

    changed = data(await gql(UPDATE, {"input": {"name": "tools", "publishBz2": True}}, as_=people.alice))
    assert changed["updateChannel"]["publishing"] == {"bz2": True, "currentRepodata": False, "shards": True}
    served = await client.get("/get/tools/noarch/repodata.json.bz2")
    assert served.status_code == 200
    assert bz2.decompress(served.content) == (await client.get("/get/tools/noarch/repodata.json")).content
    # Omitted options stay as they are.
    changed = data(await gql(UPDATE, {"input": {"name": "tools", "description": "d", "publishShards": False}},
                             as_=people.alice))["updateChannel"]
    assert changed["publishing"] == {"bz2": True, "currentRepodata": False, "shards": False}
    assert (await client.get("/get/tools/noarch/repodata_shards.msgpack.zst")).status_code == 404
    queried = data(await gql('{ channel(name: "tools") { publishing { bz2 currentRepodata shards } } }'))
    assert queried["channel"]["publishing"] == changed["publishing"]


async def test_option_permissions_and_bad_values(gql: Gql, people: People, client: httpx2.AsyncClient) -> None:
    data(await gql(CREATE, {"input": {"name": "tools"}}, as_=people.alice))
    data(await gql(CREATE, {"input": {"name": "hidden", "private": True}}, as_=people.alice))
    await set_member(gql, people.alice, "tools", people.carol, "MEMBER")
    cases = [
        (None, "tools", "PermissionDenied"),
        (people.carol, "tools", "PermissionDenied"),  # members may not
        (people.bob, "tools", "PermissionDenied"),
        (people.bob, "hidden", "NotFound"),  # private and not a member: as if absent
        (people.carol, "hidden", "NotFound"),
    ]
    for who, name, typename in cases:
        result = data(await gql(UPDATE, {"input": {"name": name, "publishBz2": True, "publishShards": False}}, as_=who))
        assert result["updateChannel"]["__typename"] == typename, (who, name, result)
    assert (await client.get("/get/tools/noarch/repodata.json.bz2")).status_code == 404
    assert (await client.get("/get/tools/noarch/repodata_shards.msgpack.zst")).status_code == 200
    # Values that are not booleans never reach the service: GraphQL refuses the variables.
    refused = await gql(UPDATE, {"input": {"name": "tools", "publishBz2": "yes"}}, as_=people.alice)
    assert refused.get("errors") and not refused.get("data")
    tools = data(await gql('{ channel(name: "tools") { publishing { bz2 shards } } }', as_=people.alice))
    assert tools["channel"]["publishing"] == {"bz2": False, "shards": True}
