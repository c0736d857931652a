"""Channel and package members over GraphQL, and who may change them."""

from __future__ import annotations

from typing import Any

from tests.schema.conftest import Gql, Ingest, MakeChannel, People, Person, data, error_messages, set_member

SET = """
mutation($c: String!, $u: String!, $r: Role!) {
  setChannelMember(channel: $c, username: $u, role: $r) {
    __typename ... on Member { role user { username } } ... on Error { message }
  }
}"""
REMOVE = """
mutation($c: String!, $u: String!) {
  removeChannelMember(channel: $c, username: $u) {
    __typename ... on Channel { members { role user { username } } } ... on Error { message }
  }
}"""
SET_PACKAGE = """
mutation($c: String!, $p: String!, $u: String!, $r: Role!) {
  setPackageMember(channel: $c, package: $p, username: $u, role: $r) {
    __typename ... on Member { role user { username } } ... on Error { message }
  }
}"""
REMOVE_PACKAGE = """
mutation($c: String!, $p: String!, $u: String!) {
  removePackageMember(channel: $c, package: $p, username: $u) {
    __typename ... on Package { name members { role user { username } } } ... on Error { message }
  }
}"""


async def members(gql: Gql, channel: str) -> list[tuple[str, str]]:
    found = data(await gql("query($c: String!) { channel(name: $c) { members { role user { username } } } }",
                           {"c": channel}, as_=None))["channel"]
    return [(m["user"]["username"], m["role"]) for m in found["members"]]


async def run(gql: Gql, query: str, as_: Person | None, **variables: Any) -> dict[str, Any]:
    result = data(await gql(query, variables, as_=as_))
    return next(iter(result.values()))  # type: ignore[no-any-return]


async def test_add_change_and_remove_channel_members(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice)
    added = await run(gql, SET, people.alice, c="tools", u="bob", r="MEMBER")
    assert added == {"__typename": "Member", "role": "MEMBER", "user": {"username": "bob"}}
    await run(gql, SET, people.alice, c="tools", u="BOB", r="MAINTAINER")  # usernames are case-insensitive
    assert await members(gql, "tools") == [("alice", "OWNER"), ("bob", "MAINTAINER")]
    removed = await run(gql, REMOVE, people.alice, c="tools", u="bob")
    assert removed["members"] == [{"role": "OWNER", "user": {"username": "alice"}}]
    again = await run(gql, REMOVE, people.alice, c="tools", u="bob")
    assert again["__typename"] == "NotFound" and "not a member" in again["message"]


async def test_channel_member_rights(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice)
    await make_channel("hidden", people.alice, private=True)
    await set_member(gql, people.alice, "tools", people.bob, "MAINTAINER")
    await set_member(gql, people.alice, "tools", people.carol, "MEMBER")
    cases = [
        (None, SET, {"c": "tools", "u": "staff", "r": "MEMBER"}, "PermissionDenied"),
        (people.carol, SET, {"c": "tools", "u": "staff", "r": "MEMBER"}, "PermissionDenied"),  # members may not
        (people.bob, SET, {"c": "tools", "u": "staff", "r": "OWNER"}, "PermissionDenied"),  # above a maintainer
        (people.bob, SET, {"c": "tools", "u": "alice", "r": "MEMBER"}, "PermissionDenied"),  # demote an owner
        (people.bob, REMOVE, {"c": "tools", "u": "alice"}, "PermissionDenied"),
        (people.carol, REMOVE, {"c": "tools", "u": "bob"}, "PermissionDenied"),
        (people.bob, SET, {"c": "hidden", "u": "carol", "r": "MEMBER"}, "NotFound"),
        (people.alice, SET, {"c": "tools", "u": "nobody", "r": "MEMBER"}, "NotFound"),
        (people.alice, SET, {"c": "tools", "u": "../etc", "r": "MEMBER"}, "NotFound"),
        (people.alice, SET, {"c": "nope", "u": "bob", "r": "MEMBER"}, "NotFound"),
        # A channel keeps an owner.
        (people.alice, SET, {"c": "tools", "u": "alice", "r": "MAINTAINER"}, "Conflict"),
        (people.alice, REMOVE, {"c": "tools", "u": "alice"}, "Conflict"),
    ]
    for who, query, variables, typename in cases:
        result = await run(gql, query, who, **variables)
        assert result["__typename"] == typename, (who, variables, result)
    assert await members(gql, "tools") == [("alice", "OWNER"), ("bob", "MAINTAINER"), ("carol", "MEMBER")]
    # What maintainers may do: manage members up to maintainer.
    assert (await run(gql, SET, people.bob, c="tools", u="staff", r="MAINTAINER"))["__typename"] == "Member"
    assert (await run(gql, REMOVE, people.bob, c="tools", u="carol"))["__typename"] == "Channel"
    # Hand over ownership, then the old owner may leave.
    assert (await run(gql, SET, people.alice, c="tools", u="bob", r="OWNER"))["__typename"] == "Member"
    assert (await run(gql, REMOVE, people.alice, c="tools", u="alice"))["__typename"] == "Channel"
    assert await members(gql, "tools") == [("bob", "OWNER"), ("staff", "MAINTAINER")]


async def test_a_new_member_sees_the_private_channel(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("hidden", people.alice, private=True)
    query = '{ channel(name: "hidden") { name viewerRole } }'
    assert data(await gql(query, as_=people.bob))["channel"] is None
    await set_member(gql, people.alice, "hidden", people.bob, "MEMBER")
    assert data(await gql(query, as_=people.bob))["channel"] == {"name": "hidden", "viewerRole": "MEMBER"}
    viewer = data(await gql("{ viewer { memberships { role channel { name } } } }", as_=people.bob))["viewer"]
    assert viewer["memberships"] == [{"role": "MEMBER", "channel": {"name": "hidden"}}]


async def test_unknown_role_is_a_validation_error(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice)
    result = await gql(SET, {"c": "tools", "u": "bob", "r": "ADMIN"}, as_=people.alice)
    assert result["data"] is None and "ADMIN" in error_messages(result)[0]
    result = await gql('mutation { setChannelMember(channel: "tools", username: "bob", role: owner) { __typename } }',
                       as_=people.alice)
    assert result["data"] is None
    assert await members(gql, "tools") == [("alice", "OWNER")]


async def test_package_members(gql: Gql, people: People, make_channel: MakeChannel, ingest: Ingest) -> None:
    await make_channel("tools", people.alice)
    await set_member(gql, people.alice, "tools", people.bob, "MAINTAINER")
    await ingest("tools", people.bob, "numpy")  # the first uploader owns the package
    await ingest("tools", people.alice, "scipy")
    cases = [
        (None, {"p": "numpy", "u": "carol", "r": "MAINTAINER"}, "PermissionDenied"),
        (people.carol, {"p": "numpy", "u": "carol", "r": "OWNER"}, "PermissionDenied"),  # no self-promotion
        (people.alice, {"p": "nothere", "u": "carol", "r": "MEMBER"}, "NotFound"),
        (people.alice, {"p": "numpy", "u": "ghost", "r": "MEMBER"}, "NotFound"),
        (people.bob, {"p": "numpy", "u": "carol", "r": "MAINTAINER"}, "Member"),  # package owner
        (people.alice, {"p": "scipy", "u": "carol", "r": "OWNER"}, "Member"),  # channel owner
    ]
    for who, variables, typename in cases:
        result = await run(gql, SET_PACKAGE, who, c="tools", **variables)
        assert result["__typename"] == typename, (who, variables, result)
    # Carol now owns scipy: she may manage its members, but not numpy's (she only maintains it).
    assert (await run(gql, SET_PACKAGE, people.carol, c="tools", p="scipy", u="staff", r="MEMBER"))[
        "__typename"] == "Member"
    assert (await run(gql, SET_PACKAGE, people.carol, c="tools", p="numpy", u="staff", r="MEMBER"))[
        "__typename"] == "PermissionDenied"
    removed = await run(gql, REMOVE_PACKAGE, people.bob, c="tools", p="numpy", u="carol")
    assert removed == {"__typename": "Package", "name": "numpy",
                       "members": [{"role": "OWNER", "user": {"username": "bob"}}]}
    again = await run(gql, REMOVE_PACKAGE, people.bob, c="tools", p="numpy", u="carol")
    assert again["__typename"] == "NotFound"
    found = data(await gql('{ package(channel: "tools", name: "scipy") { members { role user { username } } } }'))
    assert found["package"]["members"] == [
        {"role": "OWNER", "user": {"username": "alice"}},
        {"role": "OWNER", "user": {"username": "carol"}},
        {"role": "MEMBER", "user": {"username": "staff"}},
    ]
