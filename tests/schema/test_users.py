"""viewer, users, API keys and server roles over GraphQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from tests.helpers.keys import assert_conda_reads_the_whole_key
from tests.schema.conftest import Gql, MakeChannel, People, Person, data, error_messages

CREATE_KEY = """
mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    __typename
    ... on NewApiKey { secret apiKey { id description expiresAt scopes { channel package role } } }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""
REVOKE = """
mutation($id: ID!) {
  revokeApiKey(id: $id) { __typename ... on ApiKey { id revokedAt } ... on Error { message } }
}"""
SET_ROLE = """
mutation($u: String!, $r: Role) {
  setServerRole(username: $u, role: $r) { __typename ... on User { username serverRole } ... on Error { message } }
}"""
VIEWER = "{ viewer { username serverRole email apiKeys { id description revokedAt scopes { channel role } } } }"


async def create_key(gql: Gql, as_: Person | None, **input_: Any) -> dict[str, Any]:
    return data(await gql(CREATE_KEY, {"input": input_}, as_=as_))["createApiKey"]  # type: ignore[no-any-return]


async def test_viewer(gql: Gql, people: People) -> None:
    assert data(await gql(VIEWER)) == {"viewer": None}
    viewer = data(await gql(VIEWER, as_=people.staff))["viewer"]
    assert viewer["username"] == "staff" and viewer["serverRole"] == "MAINTAINER"
    assert [k["description"] for k in viewer["apiKeys"]] == ["test"]
    assert "secret" not in str(viewer) and people.staff.key not in str(viewer)


async def test_users_and_private_fields(gql: Gql, people: People) -> None:
    query = "{ users { username serverRole email apiKeys { id } } }"
    found = data(await gql(query, as_=people.staff))["users"]
    assert [u["username"] for u in found] == ["alice", "bob", "carol", "root", "staff"]
    alice = found[0]
    assert alice["email"] == ""  # staff see e-mails
    assert alice["apiKeys"] is None  # but only owners (and alice) see her keys
    own = data(await gql("{ viewer { apiKeys { id } } }", as_=people.alice))["viewer"]["apiKeys"]
    assert len(own) == 1
    assert data(await gql(query, as_=people.owner))["users"][0]["apiKeys"] == own
    assert error_messages(await gql(query, as_=people.alice))  # plain users may not list users


async def test_create_and_use_a_scoped_key(
    gql: Gql, people: People, make_channel: MakeChannel, client: httpx2.AsyncClient
) -> None:
    await make_channel("tools", people.alice)
    await make_channel("other", people.alice)
    made = await create_key(gql, people.alice, description="ci", scopes=[{"channel": "tools", "role": "MEMBER"}])
    assert made["__typename"] == "NewApiKey" and made["secret"].startswith("gc-")
    assert_conda_reads_the_whole_key(made["secret"])
    assert made["apiKey"]["scopes"] == [{"channel": "tools", "package": None, "role": "MEMBER"}]
    scoped = Person("alice", made["secret"])
    viewer = data(await gql("{ viewer { username } }", as_=scoped))["viewer"]
    assert viewer == {"username": "alice"}
    # The scope holds: read, but no channel changes, no new keys, no channels.
    update = 'mutation { updateChannel(input: {name: "tools", description: "x"}) { __typename } }'
    assert data(await gql(update, as_=scoped))["updateChannel"]["__typename"] == "PermissionDenied"
    create = 'mutation { createChannel(input: {name: "mine"}) { __typename } }'
    assert data(await gql(create, as_=scoped))["createChannel"]["__typename"] == "PermissionDenied"
    assert (await create_key(gql, scoped))["__typename"] == "PermissionDenied"
    # The secret never shows again.
    listed = data(await gql(VIEWER, as_=people.alice))["viewer"]["apiKeys"]
    assert made["secret"] not in str(listed)
    assert [k["description"] for k in listed] == ["ci", "test"]


async def test_create_key_refusals(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice)
    await make_channel("hidden", people.alice, private=True)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases = [
        (None, {}, "PermissionDenied", None),
        (people.bob, {"username": "alice"}, "PermissionDenied", None),  # someone else's key
        (people.bob, {"username": "ghost"}, "PermissionDenied", None),  # the same answer: no probing for names
        (people.bob, {"scopes": [{"channel": "tools", "role": "OWNER"}]}, "PermissionDenied", None),  # more than held
        (people.bob, {"scopes": [{"channel": "hidden", "role": "MEMBER"}]}, "InvalidInput", "input.scopes"),
        (people.bob, {"scopes": [{"channel": "../x", "role": "MEMBER"}]}, "InvalidInput", "input.scopes"),
        (people.bob, {"expiresAt": past}, "InvalidInput", "input.expiresAt"),
        # West of UTC, the last day of year 9999 is past the last representable UTC time.
        (people.bob, {"expiresAt": "9999-12-31T23:59:59-05:00"}, "InvalidInput", "input.expiresAt"),
        (people.bob, {"description": "x" * 513}, "InvalidInput", "input.description"),
        (people.owner, {"username": "ghost"}, "NotFound", None),
    ]
    for who, input_, typename, field in cases:
        made = await create_key(gql, who, **input_)
        assert made["__typename"] == typename, (who, input_, made)
        if field:
            assert made["field"] == field
    assert len(data(await gql(VIEWER, as_=people.bob))["viewer"]["apiKeys"]) == 1
    # Server owners make keys for others.
    made = await create_key(gql, people.owner, username="bob", description="for bob")
    assert made["__typename"] == "NewApiKey"
    assert data(await gql("{ viewer { username } }", as_=Person("bob", made["secret"])))["viewer"]["username"] == "bob"


async def test_revoke_api_key(gql: Gql, people: People, client: httpx2.AsyncClient) -> None:
    made = await create_key(gql, people.bob, description="temp")
    key_id, secret = made["apiKey"]["id"], made["secret"]
    for who, key in ((None, key_id), (people.carol, key_id), (people.bob, "999"), (people.bob, "x"),
                     (people.bob, "-1"), (people.bob, "9" * 40)):
        result = data(await gql(REVOKE, {"id": key}, as_=who))["revokeApiKey"]
        assert result["__typename"] in ("NotFound", "PermissionDenied"), (who, key, result)
    assert data(await gql("{ viewer { username } }", as_=Person("bob", secret)))["viewer"]["username"] == "bob"
    revoked = data(await gql(REVOKE, {"id": key_id}, as_=people.bob))["revokeApiKey"]
    assert revoked["__typename"] == "ApiKey" and revoked["revokedAt"]
    response = await client.post("/graphql", json={"query": "{ viewer { username } }"},
                                 headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    # Server owners may revoke anyone's key.
    other = await create_key(gql, people.carol)
    assert data(await gql(REVOKE, {"id": other["apiKey"]["id"]}, as_=people.owner))["revokeApiKey"][
        "__typename"] == "ApiKey"


async def test_set_server_role(gql: Gql, people: People) -> None:
    cases = [
        (None, "bob", "MAINTAINER", "PermissionDenied"),
        (people.bob, "bob", "OWNER", "PermissionDenied"),
        (people.staff, "bob", "MAINTAINER", "PermissionDenied"),  # maintainers do not hand out roles
        (people.owner, "ghost", "MEMBER", "NotFound"),
        (people.owner, "root", None, "Conflict"),  # the last owner stays
    ]
    for who, username, role, typename in cases:
        result = data(await gql(SET_ROLE, {"u": username, "r": role}, as_=who))["setServerRole"]
        assert result["__typename"] == typename, (who, username, role, result)
    result = data(await gql(SET_ROLE, {"u": "bob", "r": "MAINTAINER"}, as_=people.owner))["setServerRole"]
    assert result == {"__typename": "User", "username": "bob", "serverRole": "MAINTAINER"}
    assert [u["username"] for u in data(await gql("{ users { username } }", as_=people.bob))["users"]][:1] == ["alice"]
    result = data(await gql(SET_ROLE, {"u": "bob", "r": None}, as_=people.owner))["setServerRole"]
    assert result["serverRole"] is None
    assert error_messages(await gql("{ users { username } }", as_=people.bob))
    assert error_messages(await gql(SET_ROLE, {"u": "bob", "r": "ROOT"}, as_=people.owner))
