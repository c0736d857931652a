"""Channels over GraphQL: queries, the create/update/delete mutations and who may run them."""

from __future__ import annotations

import pytest

from graphconda.services.context import Services
from tests.schema.conftest import Gql, MakeChannel, People, Person, data, error_messages, set_member

CREATE = """
mutation($input: CreateChannelInput!) {
  createChannel(input: $input) {
    __typename
    ... on Channel { name description private mirrorMode members { role user { username } } }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""

UPDATE = """
mutation($input: UpdateChannelInput!) {
  updateChannel(input: $input) {
    __typename
    ... on Channel { name description private includelist }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""

DELETE = """
mutation($name: String!) {
  deleteChannel(name: $name) { __typename ... on DeletedChannel { name } ... on Error { message } }
}"""

NAMES = "{ channels(first: 100) { totalCount edges { node { name } } } }"


async def channel_names(gql: Gql, as_: Person | None = None) -> list[str]:
    found = data(await gql(NAMES, as_=as_))["channels"]
    names = [e["node"]["name"] for e in found["edges"]]
    assert found["totalCount"] == len(names)
    return names


async def test_create_channel_makes_the_caller_owner(gql: Gql, people: People) -> None:
    result = data(await gql(CREATE, {"input": {"name": "tools", "description": "Our tools"}}, as_=people.alice))
    assert result["createChannel"] == {
        "__typename": "Channel",
        "name": "tools",
        "description": "Our tools",
        "private": False,
        "mirrorMode": None,
        "members": [{"role": "OWNER", "user": {"username": "alice"}}],
    }
    found = data(await gql('{ channel(name: "tools") { name url repodataUrls subdirs packageCount size } }'))
    assert found["channel"] == {
        "name": "tools",
        "url": "http://testserver/get/tools",
        "repodataUrls": ["http://testserver/get/tools/noarch/repodata.json"],
        "subdirs": ["noarch"],
        "packageCount": 0,
        "size": 0,
    }


async def test_create_channel_refusals_change_nothing(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("taken", people.alice)
    cases = [
        (None, {"name": "anon"}, "PermissionDenied"),
        (people.bob, {"name": "taken"}, "AlreadyExists"),
        (people.bob, {"name": "Upper"}, "InvalidInput"),
        (people.bob, {"name": "../etc"}, "InvalidInput"),
        (people.bob, {"name": "a/b"}, "InvalidInput"),
        (people.bob, {"name": "x" * 65}, "InvalidInput"),
        (people.bob, {"name": ""}, "InvalidInput"),
        # Mirrors are for server staff.
        (people.bob, {"name": "mirror", "mirrorMode": "PROXY", "mirrorChannelUrl": "https://conda.anaconda.org/x"},
         "PermissionDenied"),
        (people.staff, {"name": "mirror", "mirrorMode": "PROXY", "mirrorChannelUrl": "ftp://nope"}, "InvalidInput"),
        # URLs no request could be made to: refused here, not found out at the first sync.
        *((people.staff, {"name": "mirror", "mirrorMode": "MIRROR", "mirrorChannelUrl": url}, "InvalidInput")
          for url in ("http://", "http://[::1", "http://127.0.0.1:99999/c", "https://host:port/c",
                      "http://host/a b", "http://host/c\r\nX-Injected: 1", "https:///c", "not a url")),
    ]
    for who, input_, typename in cases:
        result = data(await gql(CREATE, {"input": input_}, as_=who))["createChannel"]
        assert result["__typename"] == typename, (input_, result)
        assert result["message"]
    assert await channel_names(gql, people.owner) == ["taken"]


async def test_invalid_names_point_at_the_input_field(gql: Gql, people: People) -> None:
    result = data(await gql(CREATE, {"input": {"name": "../../etc/passwd"}}, as_=people.alice))["createChannel"]
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == "input.name"
    assert "invalid channel name" in result["message"]


async def test_staff_create_mirror_channels(gql: Gql, people: People) -> None:
    url = "https://conda.anaconda.org/conda-forge"
    result = data(
        await gql(CREATE, {"input": {"name": "cf", "mirrorMode": "PROXY", "mirrorChannelUrl": url}}, as_=people.staff)
    )["createChannel"]
    assert result["mirrorMode"] == "PROXY"
    found = data(await gql('{ channels(filter: {mirrorMode: PROXY}) { edges { node { name mirrorChannelUrl } } } }'))
    assert found["channels"]["edges"] == [{"node": {"name": "cf", "mirrorChannelUrl": url}}]


async def test_unknown_enum_value_is_a_validation_error(gql: Gql, people: People) -> None:
    result = await gql(
        'mutation { createChannel(input: {name: "m", mirrorMode: SIDEWAYS}) { __typename } }', as_=people.staff
    )
    assert result["data"] is None
    assert "SIDEWAYS" in error_messages(result)[0]
    result = await gql(CREATE, {"input": {"name": "m", "mirrorMode": "sideways"}}, as_=people.staff)
    assert "sideways" in error_messages(result)[0]
    assert await channel_names(gql, people.owner) == []


async def test_private_channels_are_absent_for_outsiders(
    gql: Gql, people: People, make_channel: MakeChannel
) -> None:
    await make_channel("open", people.alice)
    await make_channel("secret", people.alice, private=True)
    assert await channel_names(gql) == ["open"]
    assert await channel_names(gql, people.bob) == ["open"]
    assert await channel_names(gql, people.alice) == ["open", "secret"]
    assert await channel_names(gql, people.staff) == ["open", "secret"]
    for who in (None, people.bob):
        found = data(await gql('{ channel(name: "secret") { name } package(channel: "secret", name: "x") { name } }',
                               as_=who))
        assert found == {"channel": None, "package": None}
        # Filters and counts do not give it away either.
        found = data(await gql("{ channels(filter: {private: true}) { totalCount edges { node { name } } } }", as_=who))
        assert found["channels"] == {"totalCount": 0, "edges": []}
        viewer = data(await gql("{ viewer { memberships { channel { name } } } }", as_=who))["viewer"]
        assert viewer is None or viewer["memberships"] == []


async def test_channel_filter(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    for name in ("alpha", "alphabet", "beta"):
        await make_channel(name, people.alice, private=name == "alphabet")
    query = "query($f: ChannelFilter) { channels(filter: $f) { totalCount edges { node { name } } } }"

    async def names(f: dict[str, object]) -> list[str]:
        found = data(await gql(query, {"f": f}, as_=people.alice))["channels"]
        return [e["node"]["name"] for e in found["edges"]]

    assert await names({"nameContains": "alpha"}) == ["alpha", "alphabet"]
    assert await names({"nameContains": "ALPHA", "private": False}) == ["alpha"]
    assert await names({"nameContains": "%"}) == []  # literal, not a wildcard
    assert await names({"nameContains": "_"}) == []
    assert await names({"private": True}) == ["alphabet"]


async def test_update_channel(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice)
    changed = data(
        await gql(UPDATE, {"input": {"name": "tools", "description": "new", "private": True}}, as_=people.alice)
    )["updateChannel"]
    assert changed == {"__typename": "Channel", "name": "tools", "description": "new", "private": True,
                       "includelist": []}
    assert await channel_names(gql, people.bob) == []
    # Omitted fields stay as they are.
    changed = data(await gql(UPDATE, {"input": {"name": "tools", "private": False}}, as_=people.alice))["updateChannel"]
    assert (changed["description"], changed["private"]) == ("new", False)


async def test_update_channel_permissions(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice, description="before")
    await make_channel("hidden", people.alice, private=True)
    await set_member(gql, people.alice, "tools", people.bob, "MAINTAINER")
    await set_member(gql, people.alice, "tools", people.carol, "MEMBER")
    cases = [
        (None, "tools", {}, "PermissionDenied"),
        (people.carol, "tools", {}, "PermissionDenied"),  # members may not
        (people.bob, "tools", {}, "Channel"),  # maintainers may
        (people.bob, "tools", {"includelist": ["numpy"]}, "PermissionDenied"),  # mirror settings: staff
        (people.staff, "tools", {"includelist": ["numpy", " numpy "]}, "Channel"),
        (people.bob, "hidden", {}, "NotFound"),  # private and not a member: as if absent
        (people.bob, "nope", {}, "NotFound"),
        (people.alice, "tools", {"description": "x" * 10_001}, "InvalidInput"),
        (people.staff, "tools", {"mirrorChannelUrl": "https://x.org/c"}, "InvalidInput"),  # not a mirror
    ]
    for who, name, extra, typename in cases:
        result = data(await gql(UPDATE, {"input": {"name": name, "description": "after", **extra}}, as_=who))
        assert result["updateChannel"]["__typename"] == typename, (who, name, extra, result)
    tools = data(await gql('{ channel(name: "tools") { description includelist } }'))["channel"]
    assert tools == {"description": "after", "includelist": ["numpy"]}


async def test_hidden_channel_not_found_says_nothing_more(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("hidden", people.alice, private=True)
    hidden = data(await gql(UPDATE, {"input": {"name": "hidden"}}, as_=people.bob))["updateChannel"]
    absent = data(await gql(UPDATE, {"input": {"name": "absent"}}, as_=people.bob))["updateChannel"]
    assert hidden == absent


async def test_delete_channel(gql: Gql, people: People, make_channel: MakeChannel, services: Services) -> None:
    await make_channel("tools", people.alice)
    await set_member(gql, people.alice, "tools", people.bob, "MAINTAINER")
    for who in (None, people.bob, people.carol):  # anonymous, maintainer, outsider
        result = data(await gql(DELETE, {"name": "tools"}, as_=who))["deleteChannel"]
        assert result["__typename"] == "PermissionDenied"
    assert await channel_names(gql) == ["tools"]
    result = data(await gql(DELETE, {"name": "tools"}, as_=people.alice))["deleteChannel"]
    assert result == {"__typename": "DeletedChannel", "name": "tools"}
    assert await channel_names(gql, people.owner) == []
    again = data(await gql(DELETE, {"name": "tools"}, as_=people.alice))["deleteChannel"]
    assert again["__typename"] == "NotFound"
    # The name is free again.
    await make_channel("tools", people.carol)


@pytest.mark.parametrize("who", ["owner", "staff"])
async def test_server_staff_may_delete_any_channel(
    gql: Gql, people: People, make_channel: MakeChannel, who: str
) -> None:
    await make_channel("secret", people.alice, private=True)
    result = data(await gql(DELETE, {"name": "secret"}, as_=getattr(people, who)))["deleteChannel"]
    assert result["__typename"] == "DeletedChannel"


async def test_taking_a_private_channels_name_does_not_repeat_it(
    gql: Gql, people: People, make_channel: MakeChannel
) -> None:
    """The name is taken (it must be), but the refusal never names the private channel."""
    await make_channel("hidden-team", people.alice, private=True)
    result = data(await gql(CREATE, {"input": {"name": "hidden-team", "private": True}}, as_=people.bob))
    refusal = result["createChannel"]
    assert refusal["__typename"] == "AlreadyExists"
    assert "hidden-team" not in refusal["message"] and "already exists" in refusal["message"]
    assert await channel_names(gql, people.bob) == []
    assert await channel_names(gql, people.alice) == ["hidden-team"]
