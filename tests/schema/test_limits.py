"""Hostile or broken requests are refused cheaply and clearly; unexpected failures are masked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
from graphql import get_introspection_query
from sqlalchemy import text

from graphconda.services.context import Services
from tests.helpers.sql import count_statements
from tests.schema.conftest import Gql, Ingest, MakeChannel, People, data, error_messages


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


def deep_query(cycles: int) -> str:
    """channel > packages > edges > node > channel > packages > ... (four levels a cycle)."""
    nested = "packages { edges { node { channel { " * cycles + "name" + " } } } }" * cycles
    return '{ channel(name: "x") { ' + nested + " } }"


async def test_too_deep_query_is_refused_before_any_work(gql: Gql, services: Services, people: People) -> None:
    assert data(await gql(deep_query(2)))  # depth 9
    with count_statements(services) as seen:
        result = await gql(deep_query(3))  # depth 13
    assert result["data"] is None
    assert error_messages(result) == ["'anonymous' exceeds maximum operation depth of 12"]
    assert seen == []


async def test_alias_bomb_is_refused_before_any_work(
    gql: Gql, services: Services, people: People, make_channel: MakeChannel
) -> None:
    await make_channel("tools", people.alice)
    aliases = " ".join(f'c{i}: channel(name: "tools") {{ members {{ user {{ username }} }} }}' for i in range(31))
    with count_statements(services) as seen:
        result = await gql(f"{{ {aliases} }}")
    assert result["data"] is None
    assert error_messages(result) == ["31 aliases found. Allowed: 30"]
    assert seen == []
    mutations = " ".join(f'm{i}: createChannel(input: {{name: "c{i}"}}) {{ __typename }}' for i in range(31))
    result = await gql(f"mutation {{ {mutations} }}", as_=people.alice)
    assert error_messages(result) == ["31 aliases found. Allowed: 30"]
    assert [e["node"]["name"] for e in data(await gql("{ channels { edges { node { name } } } }"))["channels"]
            ["edges"]] == ["tools"]


async def test_oversized_document_is_refused_before_any_work(
    gql: Gql, services: Services, people: People
) -> None:
    fields = " ".join(["name description private"] * 2000)
    document = f'mutation {{ createChannel(input: {{name: "big"}}) {{ ... on Channel {{ {fields} }} }} }}'
    with count_statements(services) as seen:
        result = await gql(document, as_=people.alice)
    assert result["data"] is None
    assert error_messages(result) == ["Syntax Error: Document contains more than 5000 tokens. Parsing aborted."]
    assert [s for s in seen if "channels" in s and "INSERT" in s] == []
    assert data(await gql('{ channel(name: "big") { name } }'))["channel"] is None


async def test_oversized_body_is_a_413_before_parsing(client: httpx2.AsyncClient, people: People) -> None:
    literal = "x" * (2 * 1024 * 1024)
    query = f'mutation {{ createChannel(input: {{name: "big", description: "{literal}"}}) {{ __typename }} }}'
    response = await client.post("/graphql", json={"query": query}, headers=people.alice.headers)
    assert response.status_code == 413
    # Without a Content-Length (chunked), the cap holds while reading.

    async def chunks() -> Any:
        body = b'{"query": "' + literal.encode() + b'"}'
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    response = await client.post(
        "/graphql", content=chunks(), headers={**people.alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert (await client.post("/graphql", json={"query": '{ channel(name: "big") { name } }'})).json() == {
        "data": {"channel": None}}


@pytest.mark.parametrize(
    "settings_overrides",
    [{"limits": {"graphql_max_depth": 2, "graphql_max_aliases": 1, "graphql_max_tokens": 40}}],
    indirect=True,
)
async def test_limits_are_configurable(gql: Gql) -> None:
    assert error_messages(await gql("{ channels { edges { node { name } } } }")) == [
        "'anonymous' exceeds maximum operation depth of 2"]
    assert error_messages(await gql("{ a: serverInfo { version } b: serverInfo { version } }")) == [
        "2 aliases found. Allowed: 1"]
    assert "more than 40 tokens" in error_messages(await gql("{ " + "serverInfo { version } " * 12 + "}"))[0]
    assert data(await gql("{ serverInfo { version } }"))


NESTED = (
    "{ channels(first: %s) { nodes { packages(first: %s) { nodes {"
    " versions(first: %s) { nodes { filename } } } } } } }"
)


def cost_error(result: dict[str, Any]) -> dict[str, Any]:
    assert result["data"] is None
    [error] = result["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    return error


async def test_costly_query_is_refused_before_any_work(
    gql: Gql, services: Services, people: People, make_channel: MakeChannel, ingest: Ingest
) -> None:
    await make_channel("tools", people.alice)
    await ingest("tools", people.alice, "hello")
    with count_statements(services) as seen:
        result = await gql(NESTED % (100, 100, 100))  # up to a million files
    error = cost_error(result)
    assert error["message"].startswith("query cost 1020201 is over the limit of 50000: the most objects it could")
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 1020201, "maxCost": 50000}
    assert seen == []
    # Smaller pages of the same shape run: 1 + 20 * (2 + 20 * (2 + 100)).
    found = data(await gql(NESTED % (20, 20, 100)))
    assert found["channels"]["nodes"] == [{"packages": {"nodes": [{"versions": {"nodes": [
        {"filename": "hello-1.0-0.conda"}]}}]}}]


async def test_cost_reads_variables_and_their_defaults(gql: Gql, services: Services) -> None:
    query = "query($n: Int = 40) " + NESTED % ("$n", "$n", "$n")
    with count_statements(services) as seen:
        assert cost_error(await gql(query))["extensions"]["cost"] == 1 + 40 * (2 + 40 * 42)
        assert cost_error(await gql(query, {"n": 37}))["extensions"]["cost"] == 1 + 37 * (2 + 37 * 39)
        assert cost_error(await gql(query, {"n": 10**9}))["extensions"]["cost"] == 1020201  # clamped to the page limit
    assert seen == []
    assert data(await gql(query, {"n": 36}))["channels"] == {"nodes": []}
    assert data(await gql(query, {"n": None}))  # null: the default page size
    # A value the variable will not accept counts as a full page until coercion refuses it.
    assert cost_error(await gql(query, {"n": "many"}))["extensions"]["cost"] == 1020201


async def test_fragments_and_aliases_add_up(gql: Gql, client: httpx2.AsyncClient) -> None:
    body = "channels(first: 50) { nodes { packages(first: 5) { nodes { ...Files } } } }"
    fragment = "fragment Files on Package { versions(first: 100) { nodes { filename } } }"
    one = 1 + 50 * (2 + 5 * (2 + 100))
    assert data(await gql(f"{{ a: {body} }} {fragment}"))  # 25601
    assert cost_error(await gql(f"{{ a: {body} b: {body} }} {fragment}"))["extensions"]["cost"] == 2 * one
    inline = f"{{ a: {body} ... on Query {{ b: {body} }} }} {fragment}"
    assert cost_error(await gql(inline))["extensions"]["cost"] == 2 * one
    spread = f"{{ ...Both }} fragment Both on Query {{ a: {body} b: {body} }} {fragment}"
    assert cost_error(await gql(spread))["extensions"]["cost"] == 2 * one
    # Only the operation that runs counts.
    two = f"query Small {{ serverInfo {{ version }} }} query Big {{ a: {body} b: {body} }} {fragment}"
    for name, refused in (("Small", False), ("Big", True)):
        result = (await client.post("/graphql", json={"query": two, "operationName": name})).json()
        assert ("errors" in result) is refused


async def test_plain_lists_count_a_full_page(gql: Gql) -> None:
    members = "{ channels(first: %d) { nodes { packages(first: 100) { nodes { members { role } } } } } }"
    assert data(await gql(members % 4))  # 1 + 4 * (2 + 100 * (1 + 100))
    assert cost_error(await gql(members % 5))["extensions"]["cost"] == 1 + 5 * (2 + 100 * 101)


async def test_default_page_size_and_introspection(gql: Gql) -> None:
    # `first` omitted: 20 per page.
    query = "{ channels { nodes { packages { nodes { versions { nodes { filename } } } } } } }"
    assert data(await gql(query))  # 1 + 20 * (2 + 20 * 22) = 8841
    # GraphiQL's introspection query is bounded by the schema, not by the cost limit.
    assert data(await gql(get_introspection_query()))["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize("settings_overrides", [{"limits": {"graphql_max_cost": 8840}}], indirect=True)
async def test_cost_limit_is_configurable(gql: Gql) -> None:
    query = "{ channels { nodes { packages { nodes { versions { nodes { filename } } } } } } }"
    error = cost_error(await gql(query))
    assert error["message"].startswith("query cost 8841 is over the limit of 8840:")
    assert data(await gql("{ channels(first: 100) { nodes { name } } }"))


def readme_queries() -> list[str]:
    """The GraphQL documents of the README's examples (curl JSON bodies and the Python pager)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    found = [json.loads(f'"{q}"') for q in re.findall(r'"query": "((?:[^"\\]|\\.)*)"', readme)]
    found += re.findall(r'query = """(.*?)"""', readme, flags=re.S)
    found += [f"{{ {q} }}" for q in re.findall(r"`(viewer \{ username.*?\})`", readme)]
    return found


async def test_readme_examples_are_under_the_cost_limit(gql: Gql, people: People) -> None:
    queries = readme_queries()
    assert len(queries) >= 6
    for query in queries:
        result = await gql(query, {"files": [], "after": None}, as_=people.alice)
        # Valid and under the limit: any error comes from a resolver (the channel may not exist yet).
        assert all("path" in e for e in result.get("errors") or []), (query, result)


async def test_unexpected_errors_are_masked(
    gql: Gql, services: Services, people: People, make_channel: MakeChannel, caplog: pytest.LogCaptureFixture
) -> None:
    await make_channel("tools", people.alice)
    # A real failure of ours: the members table is gone.
    async with services.db.write() as session:
        await session.execute(text("ALTER TABLE channel_members RENAME TO channel_members_away"))
    try:
        result = await gql('{ channel(name: "tools") { name members { role } } serverInfo { version } }')
    finally:
        async with services.db.write() as session:
            await session.execute(text("ALTER TABLE channel_members_away RENAME TO channel_members"))
    [error] = result["errors"]
    assert error["message"] == "Internal server error."
    assert "extensions" not in error
    assert "channel_members" not in str(result)
    # Other fields still answer.
    assert result["data"]["serverInfo"]["version"]
    assert any("channel_members" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_public_errors_pass_unmasked(gql: Gql) -> None:
    result = await gql('{ search(query: "   ") { totalCount } }')
    assert result["errors"][0]["message"] == "the search query must not be empty"
    assert result["errors"][0]["extensions"] == {"code": "InvalidInput", "field": "query"}


async def test_validation_errors_pass_unmasked(gql: Gql) -> None:
    result = await gql("{ channels { nope } }")
    assert error_messages(result)[0].startswith("Cannot query field 'nope' on type 'ChannelConnection'.")
    result = await gql("query($n: String!) { channel(name: $n) { name } }", {"n": 5})
    assert "String cannot represent a non string value: 5" in error_messages(result)[0]


async def test_users_is_for_staff_only(gql: Gql, people: People) -> None:
    for who, message in ((None, "log in or pass an API key to list users"),
                         (people.alice, "only server owners and maintainers may list users")):
        result = await gql("{ users { username } }", as_=who)
        assert result["data"] is None
        assert result["errors"][0]["message"] == message
        assert result["errors"][0]["extensions"]["code"] == "PermissionDenied"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{", "application/json"),
        (b"[]", "application/json"),
        (b'{"query": 5}', "application/json"),
        (b'{"query": "{ serverInfo { version } }", "variables": []}', "application/json"),
        (b"query=%7B%7D", "application/x-www-form-urlencoded"),
        (b"{ serverInfo { version } }", "text/plain"),
        (b"\xff\xfe", "application/json"),
    ],
)
async def test_broken_requests_are_4xx(client: httpx2.AsyncClient, body: bytes, content_type: str) -> None:
    response = await client.post("/graphql", content=body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text


async def test_mutations_over_get_are_refused(client: httpx2.AsyncClient, people: People) -> None:
    response = await client.get(
        "/graphql", params={"query": 'mutation { createChannel(input: {name: "g"}) { __typename } }'},
        headers=people.alice.headers,
    )
    assert response.status_code == 400 and "mutations are not allowed" in response.text.lower()
    found = await client.get("/graphql", params={"query": '{ channel(name: "g") { name } }'})
    assert found.json() == {"data": {"channel": None}}


async def test_introspection_is_on(gql: Gql) -> None:
    found = data(await gql("{ __schema { queryType { name } mutationType { name } } }"))
    assert found["__schema"] == {"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}}


async def test_queries_over_websocket(live_server: Any, people: People) -> None:
    """The same schema, context and limits over graphql-transport-ws."""
    import json

    import websockets

    url = live_server.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"],
                                  additional_headers=people.alice.headers) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { username } }"}}))
        assert json.loads(await ws.recv()) == {"id": "1", "type": "next", "payload": {"data": {"viewer": {
            "username": "alice"}}}}
        assert json.loads(await ws.recv()) == {"id": "1", "type": "complete"}
        # Each operation reads afresh (the connection's context, with its loaders, outlives it).
        mine = {"query": "{ viewer { memberships { channel { name } } } }"}
        await ws.send(json.dumps({"id": "c1", "type": "subscribe", "payload": mine}))
        assert json.loads(await ws.recv())["payload"] == {"data": {"viewer": {"memberships": []}}}
        await ws.recv()
        async with httpx2.AsyncClient(base_url=live_server.url, headers=people.alice.headers) as other:
            create = {"query": 'mutation { createChannel(input: {name: "ws"}) { __typename } }'}
            assert (await other.post("/graphql", json=create)).json() == {
                "data": {"createChannel": {"__typename": "Channel"}}}
        await ws.send(json.dumps({"id": "c2", "type": "subscribe", "payload": mine}))
        assert json.loads(await ws.recv())["payload"] == {
            "data": {"viewer": {"memberships": [{"channel": {"name": "ws"}}]}}}
        await ws.recv()
        deep = {"query": deep_query(3)}
        await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": deep}))
        refused = json.loads(await ws.recv())
        assert refused["type"] == "error" or refused["payload"].get("errors"), refused


UNSTORABLE_TEXT = [
    "query($s: String!) { channel(name: $s) { name } }",
    "query($s: String!) { package(channel: $s, name: $s) { name } }",
    "query($s: String!) { channels(filter: {nameContains: $s}) { totalCount } }",
    'query($s: String!) { channel(name: "tools") { packages(nameContains: $s) { totalCount } } }',
    "query($s: String!) { search(query: $s) { totalCount } }",
    'mutation($s: String!) { updateChannel(input: {name: "tools", description: $s}) { __typename } }',
    'mutation($s: String!) { createChannel(input: {name: "fresh", description: $s}) { __typename } }',
    "mutation($s: String!) { createApiKey(input: {description: $s}) { __typename } }",
    "mutation($s: String!) { createApiKey(input: {scopes: [{channel: $s, role: MEMBER}]}) { __typename } }",
    'mutation($s: String!) { setChannelMember(channel: "tools", username: $s, role: MEMBER) { __typename } }',
    'mutation($s: String!) { setPackageMember(channel: "tools", package: $s, username: "bob", role: MEMBER) '
    "{ __typename } }",
    "mutation($s: String!) { setServerRole(username: $s, role: MEMBER) { __typename } }",
]


@pytest.mark.parametrize("escaped", ["a\\u0000b", "\\ud800", "x\\udfffy"], ids=["nul", "lone-high", "lone-low"])
@pytest.mark.parametrize("query", UNSTORABLE_TEXT, ids=lambda q: q.split("{")[1].split("(")[0].strip())
async def test_unstorable_text_is_refused_before_any_work(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, gql: Gql, query: str, escaped: str
) -> None:
    """NUL and lone surrogates (both legal in JSON) get a GraphQL error on SQLite and PostgreSQL alike, not a 500."""
    await make_channel("tools", people.owner, description="before")
    body = f'{{"query": {json.dumps(query)}, "variables": {{"s": "{escaped}"}}}}'
    response = await client.post(
        "/graphql", content=body.encode(), headers={**people.owner.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["data"] is None
    [error] = result["errors"]
    assert error["message"] == "text arguments must not contain NUL characters or unpaired surrogates"
    assert error["extensions"]["code"] == "InvalidInput" and error["extensions"]["field"]
    state = '{ channels { totalCount } channel(name: "tools") { description } viewer { apiKeys { id } } }'
    after = data(await gql(state, as_=people.owner))
    assert after["channels"]["totalCount"] == 1 and after["channel"]["description"] == "before"
    assert len(after["viewer"]["apiKeys"]) == 1


async def test_nul_in_a_string_literal_is_refused(gql: Gql) -> None:
    result = await gql('{ channel(name: "a\\u0000b") { name } }')
    assert result["data"] is None
    assert error_messages(result) == ["text arguments must not contain NUL characters or unpaired surrogates"]


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        ('mutation($d: String) { updateChannel(input: {name: "x", description: $d}) { __typename } }',
         {"d": "a\x00"}, "input.description"),
        ("mutation($i: UpdateChannelInput!) { updateChannel(input: $i) { __typename } }",
         {"i": {"name": "x", "includelist": ["ok", "b\x00"]}}, "input.includelist"),
        ("mutation($s: [ApiKeyScopeInput!]!) { createApiKey(input: {scopes: $s}) { __typename } }",
         {"s": [{"channel": "x\x00", "role": "MEMBER"}]}, "input.scopes.channel"),
        ('{ search(query: "a\\u0000") { totalCount } }', {}, "query"),
    ],
)
async def test_unstorable_text_names_the_argument(gql: Gql, query: str, variables: dict[str, Any], field: str) -> None:
    result = await gql(query, variables)
    assert result["data"] is None
    assert result["errors"][0]["extensions"] == {"code": "InvalidInput", "field": field}


async def test_introspection_counts_in_the_cost(gql: Gql, services: Services) -> None:
    """Each full-schema introspection costs about what it returns: aliased copies are not free."""
    operation, fragments = get_introspection_query().split("fragment", 1)
    body, fragments = operation.split("{", 1)[1].rsplit("}", 1)[0].strip(), "fragment" + fragments
    assert body.startswith("__schema")
    assert data(await gql(f"{{ {body} }} {fragments}"))["__schema"]["types"]
    # 16 copies: within the alias and size limits, which alone let up to 22 copies through.
    copies = " ".join(f"a{i}: {body}" for i in range(16))
    with count_statements(services) as seen:
        error = cost_error(await gql(f"{{ {copies} }} {fragments}"))
    assert seen == []
    assert error["extensions"]["cost"] // 16 > 926  # the objects one returns today: the estimate bounds them
    # Types' fields' types' fields...: graphql-core's introspection depth rule refuses a third hop.
    hops = "__schema { types { fields { type { ofType { fields { type { ofType { fields { type { ofType {" \
           " fields { name } } } } } } } } } } } }"
    assert error_messages(await gql(f"{{ {hops} }}")) == ["Maximum introspection depth exceeded"]
