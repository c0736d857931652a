"""Fragment reuse cannot multiply the work of validation: hostile documents are refused in milliseconds."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx2
import pytest

from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.helpers.sql import count_statements
from tests.schema.conftest import Gql, data, error_messages


def doubling(levels: int, leaf: str = "name") -> str:
    """`F1` spreads `F0` twice, `F2` spreads `F1` twice...: 2**levels copies of `leaf` once expanded."""
    fragments = [f"fragment F0 on Channel {{ {leaf} }}"]
    fragments += [f"fragment F{i} on Channel {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)]
    return f'query {{ channel(name: "x") {{ ...F{levels} }} }} {" ".join(fragments)}'


def refused(result: dict[str, Any]) -> list[str]:
    assert result["data"] is None, result
    assert result["errors"], result
    return error_messages(result)


@pytest.mark.parametrize("levels", [20, 100, 450])
async def test_doubling_fragments_are_refused_quickly_while_the_server_answers(
    live_server: LiveServer, levels: int
) -> None:
    document = doubling(levels)
    async with httpx2.AsyncClient(base_url=live_server.url, timeout=30) as client:
        health_waits: list[float] = []
        stop = asyncio.Event()

        async def poll_health() -> None:
            while not stop.is_set():
                start = time.monotonic()
                assert (await client.get("/healthz")).status_code == 200
                health_waits.append(time.monotonic() - start)
                await asyncio.sleep(0.01)

        async def hostile() -> list[float]:
            took = []
            for _ in range(3):
                for send in (
                    lambda: client.post("/graphql", json={"query": document}),
                    lambda: client.get("/graphql", params={"query": document}),
                ):
                    start = time.monotonic()
                    response = await send()
                    took.append(time.monotonic() - start)
                    assert response.status_code in (200, 400), response.text
                    refused(response.json())
            return took

        poller = asyncio.create_task(poll_health())
        try:
            took = await hostile()
        finally:
            stop.set()
            await poller
    # Generous bounds (the machine may be shared): the fix makes each a few milliseconds; before it,
    # 20 levels took about 15 s per request and blocked /healthz as long, 100 levels never finished.
    assert statistics.median(took) < 0.5, took
    assert max(took) < 3.0, took
    assert health_waits and max(health_waits) < 3.0, health_waits


async def test_each_limit_counts_fragments_where_they_are_spread(gql: Gql, services: Services) -> None:
    """The expanded document is measured, without being expanded: fields, aliases, depth and cost."""
    with count_statements(services) as seen:
        start = time.monotonic()
        fields = refused(await gql(doubling(40)))
        aliases = refused(await gql(doubling(40, "a: name")))
        costly = await gql(doubling(40, "packages(first: 100) { nodes { name } }"))
        took = time.monotonic() - start
    assert seen == [] and took < 1.0
    assert fields == [
        "the operation expands to 1099511627777 fields once its fragments are spread, over the limit of 5000: "
        "spread each fragment fewer times"
    ]
    assert "1099511627776 aliases found. Allowed: 30" in aliases
    assert [e["extensions"]["code"] for e in costly["errors"]] == ["QUERY_TOO_BIG", "QUERY_TOO_COSTLY"]
    # Depth counts through fragments too, and only once per operation.
    deep = "fragment D on Package { channel { packages(first: 1) { nodes { channel { packages(first: 1) { nodes {" \
        " channel { packages(first: 1) { nodes { channel { name } } } } } } } } } } }"
    nested = "packages(first: 1) { nodes { ...D } }"
    assert refused(await gql(f'{{ channel(name: "x") {{ {nested} }} }} {deep}')) == [
        "'anonymous' exceeds maximum operation depth of 12"]
    # Reuse within the limits is fine.
    reused = "fragment C on Channel { name description } fragment P on Channel { ...C ...C owner: name }"
    assert data(await gql(f'{{ a: channel(name: "x") {{ ...P }} b: channel(name: "y") {{ ...P ...C }} }} {reused}'))


async def test_fragments_nested_too_deeply_are_refused(gql: Gql) -> None:
    chain = ["fragment F0 on Channel { name }"] + [f"fragment F{i} on Channel {{ ...F{i - 1} }}" for i in range(1, 600)]
    messages = refused(await gql(f'{{ channel(name: "x") {{ ...F599 }} }} {" ".join(chain)}'))
    assert messages[0] == "selections nest 602 levels deep (fragments included), over the limit of 100"


@pytest.mark.parametrize("levels", [150, 199])
async def test_selections_nested_as_deep_as_the_parser_allows_are_refused(gql: Gql, levels: int) -> None:
    """Before, the walk for unstorable text recursed through them and failed (an internal error)."""
    query = "{ " + "channels { nodes { " * (levels // 2) + "name" + " } }" * (levels // 2) + " }"
    assert refused(await gql(query)) == [
        f"selections nest {levels // 2 * 2 + 1} levels deep (fragments included), over the limit of 100"]
