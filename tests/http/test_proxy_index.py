"""Index files of proxy channels, against a real upstream on loopback (a static channel indexed by
py-rattler's indexer, with shards, behind the fault-injecting server of tests/fixtures/upstreams.py).

What a client notices: every encoding of repodata.json (plain, gzip, .zst, .bz2) and of
current_repodata.json decodes to the same document, whatever the upstream did between
requests; the shard index lists the same packages; within the TTL nothing is asked
upstream, after it a 304 keeps the same bytes; upstream failures serve the stored copies;
files upstream lacks are remembered for `mirror.negative_cache_seconds`, never longer.
"""

from __future__ import annotations

import bz2
import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import msgpack
import pytest
import zstandard

from graphconda.services import channels
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from tests.fixtures.upstreams import StaticChannel, StaticServer, place, rattler_index
from tests.helpers.clock import Clock
from tests.helpers.packages import build_package

GZIP = {"accept-encoding": "gzip"}
PLAIN = {"accept-encoding": "identity"}


# No per-process freshness shortcut (publish.serve_cache_seconds): every request consults the
# shared state, so a test moves time with the services clock alone.
OVERRIDES: dict[str, Any] = {
    "mirror": {"upstream_timeout_seconds": 1.0, "backoff_seconds": 0.05, "retries": 1, "circuit_failures": 100,
               "negative_cache_seconds": 60},
    "publish": {"serve_cache_seconds": 0},
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return OVERRIDES


def negative_cache(seconds: float) -> dict[str, Any]:
    return {**OVERRIDES, "mirror": {**OVERRIDES["mirror"], "negative_cache_seconds": seconds}}


async def index(upstream: StaticChannel, *, zst: bool) -> None:
    """Index the upstream directory as a static channel would be (repodata, shards) and write each
    subdir's current_repodata.json: the newest version of each name, with an absolute base_url."""
    await rattler_index(upstream.root, zst=zst, shards=True)
    for repodata in upstream.root.glob("*/repodata.json"):
        doc = json.loads(repodata.read_bytes())
        newest: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for group in ("packages", "packages.conda"):
            for filename, record in doc.get(group, {}).items():
                if record["name"] not in newest or record["version"] > newest[record["name"]][2]["version"]:
                    newest[record["name"]] = (group, filename, record)
        base_url = f"{upstream.url}/{repodata.parent.name}/"
        current: dict[str, Any] = {"info": {**doc["info"], "base_url": base_url},
                                   "packages": {}, "packages.conda": {}, "repodata_version": 2}
        for group, filename, record in newest.values():
            current[group][filename] = record
        (repodata.parent / "current_repodata.json").write_text(json.dumps(current))


@pytest.fixture(params=[True, False], ids=["upstream-zst", "upstream-json-only"])
def zst(request: pytest.FixtureRequest) -> bool:
    """Whether upstream publishes repodata.json.zst beside repodata.json."""
    return bool(request.param)


@pytest.fixture
async def upstream(tmp_path: Path, zst: bool) -> AsyncIterator[StaticChannel]:
    root = tmp_path / "upstream"
    built = tmp_path / "built"
    place(root, [build_package(built, "alpha", "1.0", "0"), build_package(built, "alpha", "2.0", "0", fmt=".tar.bz2"),
                 build_package(built, "beta", "1.0", "h1_0", subdir="linux-64")])
    with StaticServer(root) as channel:
        await index(channel, zst=zst)
        yield channel


async def add_package(upstream: StaticChannel, zst: bool, directory: Path, name: str) -> str:
    path = build_package(directory, name, "1.0", "0")
    place(upstream.root, [path])
    await index(upstream, zst=zst)
    return path.name


async def make_proxy(services: Services, url: str, *, ttl: int, bz2: bool = True) -> None:
    await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name="px", mirror_mode="proxy", mirror_channel_url=url, ttl=ttl, publish_bz2=bz2))


async def get(client: httpx2.AsyncClient, path: str, headers: dict[str, str] = PLAIN) -> httpx2.Response:
    response = await client.get(f"/get/px/{path}", headers=headers)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response


# Every way a client can read each index of a subdir: (file, request headers, expected Content-Encoding).
ENCODINGS = [("repodata.json", PLAIN, None), ("repodata.json", GZIP, "gzip"), ("repodata.json.zst", PLAIN, None),
             ("repodata.json.bz2", PLAIN, None), ("current_repodata.json", PLAIN, None),
             ("current_repodata.json", GZIP, "gzip"), ("current_repodata.json.zst", PLAIN, None)]


async def read_all(client: httpx2.AsyncClient, subdir: str, first: int = 0) -> dict[str, list[Any]]:
    """Each index of `subdir` as decoded from every encoding (the `first` encoding asked first)."""
    docs: dict[str, list[Any]] = {"repodata.json": [], "current_repodata.json": []}
    for name, headers, encoding in ENCODINGS[first:] + ENCODINGS[:first]:
        response = await get(client, f"{subdir}/{name}", headers)
        assert response.headers.get("content-encoding") == encoding, name
        if name.endswith(".json"):
            assert response.headers["vary"] == "Accept-Encoding"
        data = response.content  # a gzip body is decoded by the client, as by any HTTP client
        if name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
        elif name.endswith(".bz2"):
            data = bz2.decompress(data)
        docs[name.split(".json")[0] + ".json"].append(json.loads(data))
    return docs


async def shard_filenames(client: httpx2.AsyncClient, subdir: str) -> set[str]:
    """Every package filename the sharded index lists (index, then each shard it names)."""
    unpack = functools.partial(zstandard.ZstdDecompressor().decompress, max_output_size=1 << 30)
    index_doc = msgpack.unpackb(unpack((await get(client, f"{subdir}/repodata_shards.msgpack.zst")).content))
    assert index_doc["info"]["shards_base_url"] == "./shards/" and not index_doc["info"].get("base_url")
    names: set[str] = set()
    for digest in index_doc["shards"].values():
        shard = msgpack.unpackb(unpack((await get(client, f"{subdir}/shards/{digest.hex()}.msgpack.zst")).content))
        names |= set(shard.get("packages", {})) | set(shard.get("packages.conda", {}))
    return names


def filenames(doc: dict[str, Any]) -> set[str]:
    return set(doc.get("packages", {})) | set(doc.get("packages.conda", {}))


async def test_every_encoding_agrees_after_upstream_changes(client: httpx2.AsyncClient, services: Services,
                                                            upstream: StaticChannel, zst: bool, tmp_path: Path) -> None:
    """Upstream changes before each round; whichever encoding a round asks first, every encoding
    (and the shard index) then decodes to the same, new document."""
    await make_proxy(services, upstream.url, ttl=0)
    await read_all(client, "noarch")
    for round_, _ in enumerate(ENCODINGS):
        added = await add_package(upstream, zst, tmp_path / "more", f"pkg{round_}")
        docs = await read_all(client, "noarch", first=round_)
        for name, versions in docs.items():
            assert all(doc == versions[0] for doc in versions), f"round {round_}: {name} encodings disagree"
            assert added in filenames(versions[0]) and "base_url" not in versions[0]["info"]
        assert docs["repodata.json"][0] == json.loads((upstream.root / "noarch/repodata.json").read_bytes())
        assert filenames(docs["current_repodata.json"][0]) == {"alpha-2.0-0.tar.bz2",
                                                               *(f"pkg{n}-1.0-0.conda" for n in range(round_ + 1))}
        assert await shard_filenames(client, "noarch") == filenames(docs["repodata.json"][0])
    # The gzip and bz2 copies are made here, from the stored snapshot: never asked upstream.
    assert upstream.count("repodata.json.bz2") == upstream.count(".gz") == 0


async def test_within_the_ttl_every_encoding_is_the_stored_snapshot(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, zst: bool, tmp_path: Path
) -> None:
    await make_proxy(services, upstream.url, ttl=3600)
    before = await read_all(client, "noarch")
    asked = sum(upstream.requests.values())
    await add_package(upstream, zst, tmp_path / "more", "gamma")
    after = await read_all(client, "noarch", first=3)
    assert after == before and sum(upstream.requests.values()) == asked


async def test_after_the_ttl_a_304_keeps_every_encoding(client: httpx2.AsyncClient, services: Services,
                                                        upstream: StaticChannel, zst: bool) -> None:
    await make_proxy(services, upstream.url, ttl=0)
    first = {(name, encoding): await get(client, f"noarch/{name}", headers) for name, headers, encoding in ENCODINGS}
    for (name, encoding), response in first.items():
        again = await get(client, f"noarch/{name}", GZIP if encoding else PLAIN)
        assert again.content == response.content and again.headers["etag"] == response.headers["etag"], name
    source = ".zst" if zst else ""
    assert set(upstream.statuses(f"/noarch/repodata.json{source}")[1:]) == {304}
    assert set(upstream.statuses("/noarch/current_repodata.json")[1:]) == {304}


async def test_stale_if_error_serves_every_stored_encoding(client: httpx2.AsyncClient, services: Services,
                                                           upstream: StaticChannel) -> None:
    await make_proxy(services, upstream.url, ttl=0)
    # Nothing stored yet and upstream failing: 502, as for any index.
    upstream.fail("linux-64/current_repodata.json", "status", times=10)
    assert (await client.get("/get/px/linux-64/current_repodata.json.zst")).status_code == 502
    upstream.clear_faults()
    stored = await read_all(client, "noarch")
    for kind in ("status", "reset"):
        for suffix in ("current_repodata.json", "current_repodata.json.zst", "repodata.json", "repodata.json.zst"):
            upstream.fail(f"/noarch/{suffix}", kind, times=1000)
        assert await read_all(client, "noarch", first=4) == stored
        upstream.clear_faults()


@pytest.mark.parametrize("settings_overrides", [negative_cache(60), negative_cache(0)],
                         ids=["remembered", "not-remembered"])
async def test_upstream_404s_are_remembered_for_the_negative_cache_time(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, zst: bool
) -> None:
    """However long the channel's TTL: a 404 upstream answered is remembered for
    `mirror.negative_cache_seconds`, so a file upstream adds is served once that has passed."""
    negative = services.settings.mirror.negative_cache_seconds
    await make_proxy(services, upstream.url, ttl=3600)
    (upstream.root / "linux-64/current_repodata.json").unlink()
    for _ in range(3):
        for name in ("current_repodata.json", "current_repodata.json.zst"):
            assert (await client.get(f"/get/px/linux-64/{name}")).status_code == 404
    # The pair costs one look upstream (its .zst, then its .json) per negative-cache period.
    looks = 1 if negative else 6
    assert upstream.count("/linux-64/current_repodata.json.zst") == upstream.count(
        "/linux-64/current_repodata.json") == looks
    await index(upstream, zst=zst)
    answer = await client.get("/get/px/linux-64/current_repodata.json")
    if negative:
        assert answer.status_code == 404
    else:
        assert answer.status_code == 200 and "beta-1.0-h1_0.conda" in answer.json()["packages.conda"]


async def test_files_no_channel_serves_never_reach_upstream(client: httpx2.AsyncClient, services: Services,
                                                           upstream: StaticChannel) -> None:
    await make_proxy(services, upstream.url, ttl=3600, bz2=False)
    # The channel does not publish .bz2 (its option); no channel publishes the others.
    for name in ("repodata.json.bz2", "repodata_from_packages.json", "run_exports.json.zst", "patch_instructions.json"):
        assert (await client.get(f"/get/px/noarch/{name}")).status_code == 404
        assert upstream.count(name) == 0
    # A known subdir upstream lacks: an empty repodata.json (gzip-encoded as any), no current_repodata.
    empty = await client.get("/get/px/osx-arm64/repodata.json", headers=GZIP)
    assert empty.json()["packages"] == {} and empty.headers["vary"] == "Accept-Encoding"
    assert (await client.get("/get/px/osx-arm64/current_repodata.json")).status_code == 404


async def test_options_switched_on_apply_to_the_stored_snapshot(client: httpx2.AsyncClient, services: Services,
                                                                upstream: StaticChannel) -> None:
    await make_proxy(services, upstream.url, ttl=3600, bz2=False)
    plain = await get(client, "noarch/repodata.json")
    assert (await client.get("/get/px/noarch/repodata.json.bz2")).status_code == 404
    # Changing options rebuilds nothing here: the stored upstream files stay as they are.
    await channels.update_channel(services, SYSTEM, "px", channels.ChannelUpdate(
        publish_bz2=True, publish_current_repodata=True, publish_shards=False))
    asked = sum(upstream.requests.values())
    assert bz2.decompress((await get(client, "noarch/repodata.json.bz2")).content) == plain.content
    assert (await get(client, "noarch/repodata.json")).content == plain.content
    assert (await client.get("/get/px/noarch/repodata_shards.msgpack.zst")).status_code == 404
    await channels.update_channel(services, SYSTEM, "px", channels.ChannelUpdate(publish_shards=True))
    assert (await get(client, "noarch/repodata.json")).content == plain.content
    assert sum(upstream.requests.values()) == asked
    assert await shard_filenames(client, "noarch") == filenames(plain.json())


async def test_ranges_get_the_plain_bytes(client: httpx2.AsyncClient, services: Services,
                                          upstream: StaticChannel) -> None:
    await make_proxy(services, upstream.url, ttl=3600)
    plain = await get(client, "noarch/repodata.json")
    part = await client.get("/get/px/noarch/repodata.json", headers={**GZIP, "range": "bytes=0-9"})
    assert part.status_code == 206 and "content-encoding" not in part.headers and part.content == plain.content[:10]
    zipped = await client.get("/get/px/noarch/repodata.json", headers=GZIP)
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["etag"] != plain.headers["etag"]
    assert (await client.get("/get/px/noarch/repodata.json", headers={**GZIP, "if-none-match": zipped.headers["etag"]})
            ).status_code == 304


async def test_a_changed_shard_index_brings_repodata_along(client: httpx2.AsyncClient, services: Services,
                                                           upstream: StaticChannel, zst: bool, tmp_path: Path) -> None:
    """A sharded client sees a package as soon as the shard index it reads was revalidated, though the
    repodata.json its download is checked against was fetched later (so would still be in its TTL)."""
    services.clock = clock = Clock()
    await make_proxy(services, upstream.url, ttl=300)
    assert await shard_filenames(client, "noarch")
    clock.advance(200)
    await get(client, "noarch/repodata.json")
    added = await add_package(upstream, zst, tmp_path / "more", "gamma")
    clock.advance(150)  # the shard index is past its TTL, repodata.json is not
    assert added in await shard_filenames(client, "noarch")
    download = await client.get(f"/get/px/noarch/{added}")
    assert download.status_code == 200 and download.content == (upstream.root / "noarch" / added).read_bytes()
    assert added in filenames((await get(client, "noarch/repodata.json")).json())
