"""Download figures over GraphQL: series and counts on Channel, Package and PackageFile,
Channel.packages(orderBy), and private channels' figures invisible to outsiders."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2

from graphconda.services.context import Services
from graphconda.services.metrics import aggregate
from graphconda.services.publisher import wait_published
from tests.schema.conftest import Gql, Ingest, MakeChannel, People, data

SERIES = """query($channel: String!) { channel(name: $channel) {
  downloadCount
  downloads(period: DAY) { period total points { start count } }
  filled: downloads(period: HOUR, from: "2025-06-01T09:00:00Z", to: "2025-06-01T12:00:00Z", fillZeros: true) {
    total points { start count } }
  package(name: "alpha") {
    downloadCount
    downloads(period: MONTH) { total points { start count } }
    latestFiles { filename downloadCount downloads(period: YEAR) { total points { start count } } }
  }
  byDownloads: packages(orderBy: DOWNLOADS) { edges { node { name downloadCount } } }
} }"""


async def download(client: httpx2.AsyncClient, services: Services, url: str, times: int, when: str) -> None:
    services.clock = lambda: datetime.fromisoformat(when).replace(tzinfo=UTC)
    for _ in range(times):
        assert (await client.get(url)).status_code == 200


async def setup(client: httpx2.AsyncClient, services: Services, people: People, make_channel: MakeChannel,
                ingest: Ingest, name: str, private: bool) -> None:
    await make_channel(name, people.alice, private=private)
    for package in ("alpha", "beta", "gamma"):
        await ingest(name, people.alice, package)
    await wait_published(services)
    auth = {"Authorization": f"Bearer {people.alice.key}"}
    for package, times in (("alpha", 3), ("beta", 5)):
        services.clock = lambda: datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
        for _ in range(times):
            response = await client.get(f"/get/{name}/noarch/{package}-1.0-0.conda", headers=auth)
            assert response.status_code == 200
    services.clock = lambda: datetime(2025, 7, 2, 8, 0, tzinfo=UTC)
    assert (await client.get(f"/get/{name}/noarch/alpha-1.0-0.conda", headers=auth)).status_code == 200
    await services.downloads.flush()
    await aggregate(services)


async def test_series_counts_and_order(client: httpx2.AsyncClient, services: Services, people: People,
                                       make_channel: MakeChannel, ingest: Ingest, gql: Gql) -> None:
    await setup(client, services, people, make_channel, ingest, "pub", private=False)
    channel = data(await gql(SERIES, {"channel": "pub"}))["channel"]
    assert channel["downloadCount"] == 9
    assert channel["downloads"] == {"period": "DAY", "total": 9, "points": [
        {"start": "2025-06-01T00:00:00+00:00", "count": 8}, {"start": "2025-07-02T00:00:00+00:00", "count": 1}]}
    assert channel["filled"] == {"total": 8, "points": [
        {"start": "2025-06-01T09:00:00+00:00", "count": 0}, {"start": "2025-06-01T10:00:00+00:00", "count": 8},
        {"start": "2025-06-01T11:00:00+00:00", "count": 0}]}
    alpha = channel["package"]
    assert alpha["downloadCount"] == 4
    assert alpha["downloads"]["points"] == [{"start": "2025-06-01T00:00:00+00:00", "count": 3},
                                            {"start": "2025-07-01T00:00:00+00:00", "count": 1}]
    assert alpha["latestFiles"] == [{"filename": "alpha-1.0-0.conda", "downloadCount": 4, "downloads": {
        "total": 4, "points": [{"start": "2025-01-01T00:00:00+00:00", "count": 4}]}}]
    assert [(e["node"]["name"], e["node"]["downloadCount"]) for e in channel["byDownloads"]["edges"]] == [
        ("beta", 5), ("alpha", 4), ("gamma", 0)]
    # Pages of the DOWNLOADS order follow on from their cursor; UPDATED orders newest first.
    page = """query($after: String) { channel(name: "pub") { packages(first: 1, after: $after, orderBy: DOWNLOADS) {
      edges { node { name } } pageInfo { endCursor } } } }"""
    first = data(await gql(page, {"after": None}))["channel"]["packages"]
    second = data(await gql(page, {"after": first["pageInfo"]["endCursor"]}))["channel"]["packages"]
    assert [first["edges"][0]["node"]["name"], second["edges"][0]["node"]["name"]] == ["beta", "alpha"]
    updated = """query($after: String) { channel(name: "pub") { packages(first: 2, after: $after, orderBy: UPDATED) {
      edges { node { name } } pageInfo { endCursor } } } }"""
    one = data(await gql(updated, {"after": None}))["channel"]["packages"]
    two = data(await gql(updated, {"after": one["pageInfo"]["endCursor"]}))["channel"]["packages"]
    assert [e["node"]["name"] for e in one["edges"] + two["edges"]] == ["gamma", "beta", "alpha"]


async def test_private_channel_figures_are_invisible_to_outsiders(
        client: httpx2.AsyncClient, services: Services, people: People, make_channel: MakeChannel,
        ingest: Ingest, gql: Gql) -> None:
    await setup(client, services, people, make_channel, ingest, "secret", private=True)
    for outsider in (None, people.bob):
        assert data(await gql(SERIES, {"channel": "secret"}, as_=outsider))["channel"] is None
        search = await gql('{ search(query: "alpha") { edges { node { downloadCount channel { name } } } } }',
                           as_=outsider)
        assert data(search)["search"]["edges"] == []
    member = data(await gql(SERIES, {"channel": "secret"}, as_=people.alice))["channel"]
    assert member["downloadCount"] == 9 and member["package"]["downloadCount"] == 4
