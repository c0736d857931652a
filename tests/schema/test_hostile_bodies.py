"""Cheap hostile request bodies to /graphql get a 4xx with a GraphQL-style error, never a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import websockets
from websockets.typing import Subprotocol

from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.helpers.packages import build_package
from tests.schema.conftest import Gql, MakeChannel, People, data
from tests.schema.test_packages import stored_files

DEEP = "[" * 100_000 + "]" * 100_000
QUERY = "{ serverInfo { version } }"


def request_error(response: httpx2.Response, status: int = 400) -> str:
    """The message of a request refused before anything ran, as a GraphQL client reads it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST" if status == 400 else error["extensions"]["code"]
    return str(error["message"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'"hello"', "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"true", "must be a JSON object"),
        (b"[]", "Batching is not enabled"),
        (b'{"query": "\xff\xfe"}', "UTF-8"),
        (b"\xff\xfe", "UTF-8"),
        (b"{", "Unable to parse request body as JSON"),
        (f'{{"query": "{QUERY}", "extensions": {DEEP}}}'.encode(), "nested too deeply"),
        (f'{{"query": "{QUERY}", "variables": {{"v": {DEEP}}}}}'.encode(), "nested too deeply"),
        (f'{{"query": "{QUERY}", "variables": {{"v": {"[" * 40 + "]" * 40}}}}}'.encode(), "nested too deeply"),
    ],
    ids=["string", "number", "null", "true", "list", "bad-utf8-inside", "bad-utf8", "truncated", "deep-extensions",
         "deep-variables", "40-levels"],
)
async def test_json_bodies_that_are_no_request_are_4xx(client: httpx2.AsyncClient, body: bytes, message: str) -> None:
    response = await client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert message in request_error(response)


async def test_reasonable_nesting_still_runs(gql: Gql) -> None:
    nested: Any = "x"
    for _ in range(20):
        nested = [nested]
    assert data(await gql(QUERY, {"unused": nested}))["serverInfo"]["version"]


@pytest.mark.parametrize("param", ["variables", "extensions"])
async def test_deep_json_in_get_parameters_is_a_400(client: httpx2.AsyncClient, param: str) -> None:
    deep = "[" * 3000 + "]" * 3000  # past the JSON decoder's recursion limit, within a URL's length
    response = await client.get("/graphql", params={"query": QUERY, param: deep})
    assert "nested too deeply" in request_error(response)


def _operations(n: int = 1) -> str:
    return json.dumps({"query": 'mutation($f: [Upload!]!) { uploadPackages(channel: "tools", files: $f) '
                                "{ __typename ... on Error { message } } }", "variables": {"f": [None] * n}})


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"operations": DEEP, "map": '{"0": ["variables.f.0"]}'}, "nested too deeply"),
        ({"operations": _operations(), "map": '{"0": ' + DEEP + "}"}, "nested too deeply"),
        ({"operations": _operations(), "map": '{"0": ["variables.f.0"], "a": ' + DEEP + "}"}, "nested too deeply"),
    ],
    ids=["deep-operations", "deep-map", "deep-map-entry"],
)
async def test_hostile_multipart_fields_are_a_400(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, services: Services,
    form: dict[str, str], message: str,
) -> None:
    await make_channel("tools", people.alice)
    response = await client.post(
        "/graphql", data=form, files={"0": ("numpy-1.0-0.conda", b"x")},
        headers=people.alice.headers,
    )
    assert message in request_error(response)
    assert await stored_files(services, "tools") == []


async def test_one_file_part_maps_to_one_variable(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, services: Services, tmp_path: Path
) -> None:
    """A part mapped to 1,000 entries would run 1,000 uploads of one file: refused before any runs."""
    await make_channel("tools", people.alice)
    pkg = build_package(tmp_path, "numpy", "1.0", "0")
    for n in (2, 1000):
        mapping = {"0": [f"variables.f.{i}" for i in range(n)]}
        response = await client.post(
            "/graphql", data={"operations": _operations(n), "map": json.dumps(mapping)},
            files={"0": (pkg.name, pkg.read_bytes())}, headers=people.alice.headers,
        )
        assert "to 2 paths" in request_error(response) if n == 2 else request_error(response)
    # Two parts mapped to the same variable: the second would silently replace the first.
    mapping = {"0": ["variables.f.0"], "1": ["variables.f.0"]}
    response = await client.post(
        "/graphql", data={"operations": _operations(1), "map": json.dumps(mapping)},
        files={"0": (pkg.name, pkg.read_bytes()), "1": (pkg.name, pkg.read_bytes())}, headers=people.alice.headers,
    )
    assert "variables.f.0" in request_error(response)
    assert await stored_files(services, "tools") == []
    # One part per variable still uploads.
    response = await client.post(
        "/graphql", data={"operations": _operations(1), "map": '{"0": ["variables.f.0"]}'},
        files={"0": (pkg.name, pkg.read_bytes())}, headers=people.alice.headers,
    )
    assert response.json()["data"]["uploadPackages"] == [{"__typename": "PackageFile"}]


def multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart body written out by hand: (name, Content-Disposition parameters after the name, body)."""
    body = b"".join(
        f'--b\r\nContent-Disposition: form-data; name="{name}"{params}\r\n\r\n'.encode() + value + b"\r\n"
        for name, params, value in parts
    )
    return body + b"--b--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}


@pytest.mark.parametrize("params", ['; filename=""', ""], ids=["empty", "missing"])
async def test_a_file_part_without_a_filename_says_so(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, services: Services, tmp_path: Path,
    params: str,
) -> None:
    """Before, a part without a filename became a text variable, refused for the NUL bytes of the package."""
    await make_channel("tools", people.alice)
    package = build_package(tmp_path, "numpy", "1.0", "0").read_bytes()
    body, headers = multipart([("operations", "", _operations().encode()),
                               ("map", "", b'{"0": ["variables.f.0"]}'), ("0", params, package)])
    response = await client.post("/graphql", content=body, headers={**headers, **people.alice.headers})
    if params:  # a file part with an empty filename: the mutation's typed error
        assert response.status_code == 200, response.text
        assert response.json()["data"]["uploadPackages"] == [
            {"__typename": "InvalidInput", "message": "each uploaded file needs a filename"}]
    else:
        assert "multipart part '0' is not a file" in request_error(response)
    body, headers = multipart([("files", params, package)])
    response = await client.post("/api/channels/tools/files", content=body, headers={**headers, **people.alice.headers})
    assert response.status_code == 422, response.text
    assert "NUL" not in response.text
    assert response.json()["detail"] == ("filename must not be empty" if params else
                                         "no package files: send them as multipart fields named 'files'")
    assert await stored_files(services, "tools") == []


async def test_deep_json_over_a_websocket_closes_it_cleanly(
    live_server: LiveServer, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    """A message too deep to read is a message that is not JSON: close code 4400, nothing logged as a failure."""
    url = live_server.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")],
                                  additional_headers=people.alice.headers) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        deep = "[" * 5000 + "]" * 5000
        payload = f'{{"query": "{QUERY}", "variables": {{"v": {deep}}}}}'
        await ws.send(f'{{"id": "1", "type": "subscribe", "payload": {payload}}}')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    async with httpx2.AsyncClient(base_url=live_server.url) as client:
        assert (await client.post("/graphql", json={"query": QUERY})).json()["data"]["serverInfo"]["version"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
