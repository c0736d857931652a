"""Fixtures for the GraphQL tests: people with API keys, and a `gql` caller over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx2
import pytest

from graphconda.services import api_keys, packages, users
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from tests.helpers.packages import build_package


@dataclass(frozen=True)
class Person:
    username: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Gql(Protocol):
    def __call__(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: Person | None = None
    ) -> Awaitable[dict[str, Any]]: ...


@pytest.fixture
def gql(client: httpx2.AsyncClient) -> Gql:
    """POST a GraphQL operation (as `as_`, else anonymously); the JSON body of the 200 answer."""

    async def call(query: str, variables: dict[str, Any] | None = None, *, as_: Person | None = None) -> dict[str, Any]:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=as_.headers if as_ else {}
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    return call


async def make_person(services: Services, username: str, server_role: str | None = None) -> Person:
    user = await users.create_user(services, SYSTEM, username, server_role=server_role)
    _, secret = await api_keys.create_api_key(services, SYSTEM, user_id=user.id, description="test")
    return Person(username, secret)


@dataclass(frozen=True)
class People:
    owner: Person  # server owner
    staff: Person  # server maintainer
    alice: Person  # plain users
    bob: Person
    carol: Person


@pytest.fixture
async def people(services: Services) -> People:
    return People(
        owner=await make_person(services, "root", "owner"),
        staff=await make_person(services, "staff", "maintainer"),
        alice=await make_person(services, "alice"),
        bob=await make_person(services, "bob"),
        carol=await make_person(services, "carol"),
    )


def data(result: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a result that must have no errors."""
    assert not result.get("errors"), result.get("errors")
    return result["data"]  # type: ignore[no-any-return]


def error_messages(result: dict[str, Any]) -> list[str]:
    return [e["message"] for e in result.get("errors") or []]


MakeChannel = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def make_channel(gql: Gql) -> MakeChannel:
    async def create(name: str, as_: Person, *, private: bool = False, description: str = "") -> dict[str, Any]:
        result = data(
            await gql(
                """mutation($input: CreateChannelInput!) {
                     createChannel(input: $input) {
                       __typename ... on Channel { name private } ... on Error { message }
                     }
                   }""",
                {"input": {"name": name, "private": private, "description": description}},
                as_=as_,
            )
        )["createChannel"]
        assert result["__typename"] == "Channel", result
        return result  # type: ignore[no-any-return]

    return create


async def set_member(gql: Gql, by: Person, channel: str, who: Person, role: str) -> None:
    result = data(
        await gql(
            """mutation($c: String!, $u: String!, $r: Role!) {
                 setChannelMember(channel: $c, username: $u, role: $r) { __typename ... on Error { message } }
               }""",
            {"c": channel, "u": who.username, "r": role},
            as_=by,
        )
    )["setChannelMember"]
    assert result["__typename"] == "Member", result


UPLOAD = """
mutation($channel: String!, $files: [Upload!]!, $force: Boolean!) {
  uploadPackages(channel: $channel, files: $files, force: $force) {
    __typename
    ... on PackageFile { filename subdir name version size sha256 }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""


Upload = Callable[..., Awaitable[Any]]


@pytest.fixture
def upload(client: httpx2.AsyncClient) -> Upload:
    """uploadPackages through the GraphQL multipart request spec; returns the response."""

    async def send(
        channel: str,
        files: list[tuple[str, bytes]],
        as_: Person | None,
        *,
        force: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        operations = {
            "query": UPLOAD,
            "variables": {"channel": channel, "files": [None] * len(files), "force": force},
        }
        mapping = {str(i): [f"variables.files.{i}"] for i in range(len(files))}
        parts = {str(i): (name, body, "application/octet-stream") for i, (name, body) in enumerate(files)}
        return await client.post(
            "/graphql",
            data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
            files=parts,
            headers={**(as_.headers if as_ else {"GraphQL-Require-Preflight": "1"}), **(headers or {})},
        )

    return send


Ingest = Callable[..., Awaitable[Any]]


@pytest.fixture
def ingest(services: Services, tmp_path: Path) -> Ingest:
    """Build a real package and store it through the one ingest path, as `who`."""

    async def store(channel: str, who: Person, name: str, version: str = "1.0", **kw: Any) -> Any:
        path = build_package(tmp_path / "built", name, version, **kw)
        user = await users.get_user(services, who.username)

        async def body() -> AsyncIterator[bytes]:
            yield path.read_bytes()

        return await packages.ingest_package(services, users.actor_for(user), channel, path.name, body())

    return store
