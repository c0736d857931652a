"""Connections: keyset pages, their edges, and every kind of bad `first` and `after`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.schema.conftest import Gql, MakeChannel, People, data

PAGE = """
query($first: Int, $after: String) {
  channels(first: $first, after: $after) {
    totalCount
    edges { cursor node { name } }
    nodes { name }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def page(gql: Gql, first: int | None, after: str | None = None, **kw: Any) -> dict[str, Any]:
    return data(await gql(PAGE, {"first": first, "after": after}, **kw))["channels"]  # type: ignore[no-any-return]


async def walk(gql: Gql, first: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        found = await page(gql, first, after)
        names = [e["node"]["name"] for e in found["edges"]]
        assert names == [n["name"] for n in found["nodes"]]
        pages.append(names)
        if not found["pageInfo"]["hasNextPage"]:
            return pages
        after = found["pageInfo"]["endCursor"]
        assert after == found["edges"][-1]["cursor"]


async def test_empty_list(gql: Gql) -> None:
    assert await page(gql, 10) == {
        "totalCount": 0,
        "edges": [],
        "nodes": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
    }


async def test_pages_exact_and_last(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    for name in ("c1", "c2", "c3", "c4", "c5"):
        await make_channel(name, people.alice)
    assert await walk(gql, 5) == [["c1", "c2", "c3", "c4", "c5"]]  # exactly one page: no next page
    assert await walk(gql, 2) == [["c1", "c2"], ["c3", "c4"], ["c5"]]  # a short last page
    assert await walk(gql, 1) == [["c1"], ["c2"], ["c3"], ["c4"], ["c5"]]
    first = await page(gql, 2)
    second = await page(gql, 2, first["pageInfo"]["endCursor"])
    assert second["pageInfo"]["hasPreviousPage"] is True
    assert second["totalCount"] == 5
    # A cursor stays valid when the row it points at is gone: keyset, not offset.
    await make_channel("c0", people.alice)
    third = await page(gql, 2, second["pageInfo"]["endCursor"])
    assert [e["node"]["name"] for e in third["edges"]] == ["c5"]


async def test_first_zero_and_default(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("one", people.alice)
    zero = await page(gql, 0)
    assert zero["edges"] == [] and zero["pageInfo"]["hasNextPage"] is True and zero["totalCount"] == 1
    assert [e["node"]["name"] for e in (await page(gql, None))["edges"]] == ["one"]


async def test_pages_skip_private_channels_of_others(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    for name in ("a", "b", "c", "d"):
        await make_channel(name, people.alice, private=name in ("b", "c"))
    assert await walk(gql, 1) == [["a"], ["d"]]
    assert (await page(gql, 1))["totalCount"] == 2


def cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "after",
    [
        "",
        "not a cursor",
        "!!!!",
        "%%%",
        base64.b64encode(b"\xff\xfe").decode(),
        cursor({"kind": "channel"}),
        cursor(["channel"]),  # too short
        cursor(["channel", 5]),  # wrong type
        cursor(["channel", "a", "b"]),  # too long
        cursor(["package", "a"]),  # a cursor of another list
        cursor(["channel", None]),
        "A" * 5000,
    ],
)
async def test_invalid_cursor_is_a_clear_error(gql: Gql, after: str) -> None:
    result = await gql(PAGE, {"first": 2, "after": after})
    assert result["data"] is None
    [error] = result["errors"]
    assert error["message"].startswith("invalid cursor")
    assert error["extensions"] == {"code": "InvalidInput", "field": "after"}


@pytest.mark.parametrize(
    ("first", "message"),
    [(-1, "first must not be negative (got -1)"), (101, "first must be at most 100 (got 101)")],
)
async def test_bad_first_is_a_clear_error(gql: Gql, first: int, message: str) -> None:
    result = await gql(PAGE, {"first": first})
    assert result["data"] is None
    assert result["errors"][0]["message"].startswith(message)
    assert result["errors"][0]["extensions"] == {"code": "InvalidInput", "field": "first"}


async def test_first_beyond_32_bits_is_a_validation_error(gql: Gql) -> None:
    result = await gql(PAGE, {"first": 2**40})
    assert result["data"] is None
    assert "Int cannot represent non 32-bit signed integer value" in result["errors"][0]["message"]
    result = await gql("{ channels(first: 99999999999) { totalCount } }")
    assert result["data"] is None and result["errors"]
