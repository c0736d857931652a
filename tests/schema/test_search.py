"""search: ranking, literal matching, paging, and private channels."""

from __future__ import annotations

import pytest

from tests.schema.conftest import Gql, Ingest, MakeChannel, People, Person, data, error_messages, set_member

SEARCH = """
query($q: String!, $first: Int, $after: String) {
  search(query: $q, first: $first, after: $after) {
    totalCount
    edges { node { name channel { name } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def hits(gql: Gql, q: str, as_: Person | None = None, first: int | None = None) -> list[str]:
    found = data(await gql(SEARCH, {"q": q, "first": first}, as_=as_))["search"]
    names = [f"{e['node']['channel']['name']}/{e['node']['name']}" for e in found["edges"]]
    assert found["totalCount"] >= len(names)
    return names


@pytest.fixture
async def catalogue(people: People, make_channel: MakeChannel, ingest: Ingest) -> None:
    await make_channel("pub", people.alice)
    await make_channel("priv", people.alice, private=True)
    packages = {
        "numpy": "Array computing",
        "numpy-base": "The numpy core",
        "pynumpy": "Wrapper",
        "scipy": "Science built on numpy arrays",
        "pandas": "Data frames",
        "under_score": "Has 100% coverage",
    }
    for name, summary in packages.items():
        await ingest("pub", people.alice, name, about={"summary": summary, "description": f"About {name}"})
    await ingest("priv", people.alice, "numpy", about={"summary": "Private fork"})
    await ingest("priv", people.alice, "secretpkg", about={"summary": "Nobody may know"})


@pytest.mark.usefixtures("catalogue")
async def test_ranking_exact_prefix_substring_then_text(gql: Gql) -> None:
    assert await hits(gql, "numpy") == ["pub/numpy", "pub/numpy-base", "pub/pynumpy", "pub/scipy"]
    assert await hits(gql, "NumPy") == ["pub/numpy", "pub/numpy-base", "pub/pynumpy", "pub/scipy"]
    assert await hits(gql, "  frames ") == ["pub/pandas"]  # summary
    assert await hits(gql, "about pandas") == ["pub/pandas"]  # description


@pytest.mark.usefixtures("catalogue")
async def test_query_is_literal(gql: Gql) -> None:
    assert await hits(gql, "%") == ["pub/under_score"]  # in the summary, not a wildcard
    assert await hits(gql, "_") == ["pub/under_score"]
    assert await hits(gql, "n_mpy") == []
    assert await hits(gql, "'; drop table packages; --") == []


@pytest.mark.usefixtures("catalogue")
async def test_private_channels_stay_out_of_search(gql: Gql, people: People) -> None:
    for who in (None, people.bob):
        assert await hits(gql, "secret", who) == []
        assert await hits(gql, "private fork", who) == []
        found = data(await gql(SEARCH, {"q": "numpy"}, as_=who))["search"]
        assert found["totalCount"] == 4
    assert await hits(gql, "secret", people.alice) == ["priv/secretpkg"]
    assert sorted((await hits(gql, "numpy", people.staff))[:2]) == ["priv/numpy", "pub/numpy"]
    await set_member(gql, people.alice, "priv", people.bob, "MEMBER")
    assert await hits(gql, "secret", people.bob) == ["priv/secretpkg"]


@pytest.mark.usefixtures("catalogue")
async def test_search_pages(gql: Gql) -> None:
    seen, after = [], None
    while True:
        found = data(await gql(SEARCH, {"q": "numpy", "first": 3, "after": after}))["search"]
        seen += [e["node"]["name"] for e in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
    assert seen == ["numpy", "numpy-base", "pynumpy", "scipy"]
    # A cursor of another search is refused rather than silently mispaging.
    result = await gql(SEARCH, {"q": "pandas", "first": 3, "after": after})
    assert error_messages(result)[0].startswith("invalid cursor")


@pytest.mark.parametrize("query", ["", "   ", "x" * 101, "a\x00b"])
async def test_bad_queries_are_clear_errors(gql: Gql, query: str) -> None:
    result = await gql(SEARCH, {"q": query})
    assert result["data"] is None
    assert result["errors"][0]["extensions"] == {"code": "InvalidInput", "field": "query"}
