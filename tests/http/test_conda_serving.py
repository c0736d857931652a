"""Serving channels to conda clients: /get/<channel>/... with caching headers, 304, ranges, HEAD, privacy."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx2
import msgpack
import pytest
import zstandard
from sqlalchemy import func, select

from graphconda.db.models import DownloadEvent
from graphconda.services import api_keys, packages
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from graphconda.services.downloads import flush_downloads
from graphconda.services.publisher import wait_published
from tests.helpers.channels import add_member, chunks, make_channel, make_user, set_options
from tests.helpers.packages import build_package

EMPTY_NOARCH = {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}, "removed": [],
                "repodata_version": 1}


async def upload(services: Services, path: Path, channel: str = "main") -> None:
    await packages.ingest_package(services, SYSTEM, channel, path.name, chunks(path))
    await wait_published(services)


@pytest.fixture
async def channel(services: Services, tmp_path: Path) -> dict[str, Path]:
    await make_channel(services, "main")
    files = {
        "alpha": build_package(tmp_path, "alpha", "1.0", "0", depends=["beta >=1"], run_exports={"weak": ["alpha"]}),
        "beta": build_package(tmp_path, "beta", "1.0", "h1_0", subdir="linux-64", fmt=".tar.bz2"),
    }
    for path in files.values():
        await upload(services, path)
    return files


async def test_fresh_channel_serves_empty_noarch_and_known_subdirs(client: httpx2.AsyncClient,
                                                                   services: Services) -> None:
    await make_channel(services, "fresh")
    response = await client.get("/get/fresh/noarch/repodata.json")
    assert response.status_code == 200
    assert response.json() == EMPTY_NOARCH
    assert response.headers["cache-control"] == "public, max-age=60" and response.headers["etag"]
    assert response.headers["last-modified"]
    again = await client.get("/get/fresh/noarch/repodata.json", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.headers["cache-control"] == "public, max-age=60"
    zst = await client.get("/get/fresh/linux-64/repodata.json.zst")
    assert zst.status_code == 200 and "content-encoding" not in zst.headers
    assert json.loads(zstandard.ZstdDecompressor().decompress(zst.content))["info"] == {"subdir": "linux-64"}
    for url in ("/get/fresh/made-up/repodata.json", "/get/fresh/Bad_Subdir/repodata.json",
                "/get/fresh/noarch/repodata.json.bz2", "/get/fresh/noarch/current_repodata.json",
                "/get/fresh/noarch/whatever.txt"):
        missing = await client.get(url)
        assert missing.status_code == 404, url
        assert missing.headers["cache-control"] == "public, max-age=60", url
    no_channel = await client.get("/get/nope/noarch/repodata.json")
    assert no_channel.status_code == 404 and no_channel.headers["cache-control"] == "private, no-cache"


async def test_repodata_headers_and_bytes(client: httpx2.AsyncClient, channel: dict[str, Path]) -> None:
    response = await client.get("/get/main/noarch/repodata.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"] and response.headers["last-modified"]
    body = response.content
    doc = json.loads(body)
    assert body == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert b"\r" not in body
    assert list(doc["packages.conda"]) == ["alpha-1.0-0.conda"]
    assert doc["repodata_version"] == 1 and doc["info"] == {"subdir": "noarch"}

    zst = await client.get("/get/main/noarch/repodata.json.zst")
    assert zst.status_code == 200 and "content-encoding" not in zst.headers
    assert zstandard.get_frame_parameters(zst.content).content_size == len(body)
    assert zstandard.ZstdDecompressor().decompress(zst.content) == body

    exports = (await client.get("/get/main/noarch/run_exports.json")).json()
    assert exports["packages.conda"]["alpha-1.0-0.conda"] == {"run_exports": {"weak": ["alpha"]}}
    channeldata = (await client.get("/get/main/channeldata.json")).json()
    assert channeldata["packages"]["alpha"]["version"] == "1.0"
    assert set(channeldata["subdirs"]) == {"noarch", "linux-64"}


@pytest.mark.parametrize("url", ["/get/main/noarch/repodata.json", "/get/main/noarch/repodata_shards.msgpack.zst",
                                 "/get/main/linux-64/beta-1.0-h1_0.tar.bz2", "/get/main/channeldata.json"])
async def test_revalidation_answers_304_with_the_same_headers(client: httpx2.AsyncClient, channel: dict[str, Path],
                                                              url: str) -> None:
    first = await client.get(url)
    assert first.status_code == 200
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f"W/{etag}"}, {"If-None-Match": f'"x", {etag}'},
                    {"If-Modified-Since": modified}):
        again = await client.get(url, headers=headers)
        assert again.status_code == 304, headers
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
        head = await client.head(url, headers=headers)
        assert head.status_code == 304
    changed = await client.get(url, headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == first.content
    old = await client.get(url, headers={"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert old.status_code == 200


async def test_ranges_and_head(client: httpx2.AsyncClient, channel: dict[str, Path]) -> None:
    url = "/get/main/noarch/alpha-1.0-0.conda"
    data = channel["alpha"].read_bytes()
    size = len(data)
    part = await client.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == data[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{size}"
    tail = await client.get(url, headers={"Range": "bytes=-65536"})  # rattler's metadata read
    assert tail.status_code == 206 and tail.content == data[-65536:]
    assert tail.headers["content-range"] == f"bytes {max(size - 65536, 0)}-{size - 1}/{size}"
    middle = await client.get(url, headers={"Range": f"bytes=10-{size * 2}"})
    assert middle.status_code == 206 and middle.content == data[10:]
    beyond = await client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    ignored = await client.get(url, headers={"Range": "bytes=oops"})
    assert ignored.status_code == 200 and ignored.content == data
    stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.content == data
    head = await client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size) and head.headers["accept-ranges"] == "bytes"
    assert head.headers["cache-control"] == "public, max-age=31536000, immutable"
    repodata_range = await client.get("/get/main/noarch/repodata.json", headers={"Range": "bytes=0-0"})
    assert repodata_range.status_code == 206 and repodata_range.content == b"{"


async def test_shards(client: httpx2.AsyncClient, channel: dict[str, Path]) -> None:
    response = await client.get("/get/main/linux-64/repodata_shards.msgpack.zst")
    assert response.status_code == 200 and "content-encoding" not in response.headers
    assert response.headers["cache-control"] == "public, max-age=60"
    index = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(response.content))
    assert index["info"]["shards_base_url"] == "./shards/" and index["info"]["base_url"] == ""
    digest = index["shards"]["beta"]
    shard = await client.get(f"/get/main/linux-64/shards/{digest.hex()}.msgpack.zst")
    assert shard.status_code == 200
    assert shard.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert hashlib.sha256(shard.content).digest() == digest
    records = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(shard.content))["packages"]
    assert records["beta-1.0-h1_0.tar.bz2"]["md5"] == hashlib.md5(channel["beta"].read_bytes()).digest()
    assert (await client.get(f"/get/main/linux-64/shards/{'0' * 64}.msgpack.zst")).status_code == 404


async def test_downloads_are_counted_for_full_gets_only(client: httpx2.AsyncClient, channel: dict[str, Path],
                                                        services: Services) -> None:
    url = "/get/main/noarch/alpha-1.0-0.conda"
    assert (await client.get(url)).content == channel["alpha"].read_bytes()
    await client.head(url)
    await client.get(url, headers={"Range": "bytes=-65536"})
    etag = (await client.get(url)).headers["etag"]
    await client.get(url, headers={"If-None-Match": etag})
    await client.get("/get/main/noarch/repodata.json")
    await flush_downloads(services)
    async with services.db.read() as session:
        assert await session.scalar(select(func.sum(DownloadEvent.count))) == 2


async def test_optional_files_per_channel_options(client: httpx2.AsyncClient, services: Services,
                                                  tmp_path: Path) -> None:
    await make_channel(services, "full", options={"bz2": True, "current_repodata": True})
    await make_channel(services, "plain", options={"shards": False})
    for name in ("full", "plain"):
        await upload(services, build_package(tmp_path / name, "alpha"), name)
    bz2 = await client.get("/get/full/noarch/repodata.json.bz2")
    assert bz2.status_code == 200 and "content-encoding" not in bz2.headers
    current = await client.get("/get/full/noarch/current_repodata.json")
    assert list(current.json()["packages.conda"]) == ["alpha-1.0-0.conda"]
    no_shards = await client.get("/get/plain/noarch/repodata_shards.msgpack.zst")
    assert no_shards.status_code == 404 and "max-age" in no_shards.headers["cache-control"]
    assert (await client.get("/get/plain/noarch/repodata.json.bz2")).status_code == 404
    # Turning the option off later also hides files published before.
    await set_options(services, "plain", {"shards": False, "bz2": False})
    await set_options(services, "full", {})
    await upload(services, build_package(tmp_path / "full2", "beta"), "full")
    assert (await client.get("/get/full/noarch/repodata.json.bz2")).status_code == 404


async def test_private_channels(client: httpx2.AsyncClient, services: Services, tmp_path: Path) -> None:
    await make_channel(services, "secret", private=True)
    await upload(services, build_package(tmp_path, "alpha"), "secret")
    reader = await make_user(services, "reader")
    await add_member(services, "secret", reader, Role.MEMBER)
    _, key = await api_keys.create_api_key(services, reader)
    outsider = await make_user(services, "outsider")
    _, outsider_key = await api_keys.create_api_key(services, outsider)

    for url in ("/get/secret/noarch/repodata.json", "/get/secret/noarch/alpha-1.0-0.conda", "/get/secret/",
                "/get/secret/channeldata.json", "/get/secret/noarch/repodata_shards.msgpack.zst"):
        assert (await client.get(url)).status_code == 404, url
        assert (await client.get(url, headers={"X-API-Key": outsider_key})).status_code == 404, url
        assert (await client.get(f"/t/{key}{url}")).status_code == 200, url
    basic = base64.b64encode(f"reader:{key}".encode()).decode()
    for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"Basic {basic}"}, {"X-API-Key": key}):
        response = await client.get("/get/secret/noarch/repodata.json", headers=headers)
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("private")
    not_found = await client.get("/get/secret/noarch/repodata.json")
    assert not_found.json()["detail"] == "channel not found"
    assert "secret" not in not_found.text


async def test_indexes_are_browsable(client: httpx2.AsyncClient, channel: dict[str, Path]) -> None:
    top = await client.get("/get/main/")
    assert top.status_code == 200 and top.headers["content-type"].startswith("text/html")
    assert 'href="noarch/"' in top.text and 'href="linux-64/"' in top.text
    redirect = await client.get("/get/main")
    assert redirect.status_code == 301 and redirect.headers["location"] == "main/"
    sub = await client.get("/get/main/linux-64/")
    assert "beta-1.0-h1_0.tar.bz2" in sub.text and 'href="repodata.json"' in sub.text
    assert (await client.get("/get/main/linux-64/index.html")).text == sub.text


async def test_deleted_file_disappears(client: httpx2.AsyncClient, channel: dict[str, Path],
                                       services: Services) -> None:
    url = "/get/main/noarch/alpha-1.0-0.conda"
    assert (await client.get(url)).status_code == 200
    await packages.delete_package_file(services, SYSTEM, "main", "noarch", "alpha-1.0-0.conda")
    await wait_published(services)
    assert (await client.get(url)).status_code == 404
    doc: dict[str, Any] = (await client.get("/get/main/noarch/repodata.json")).json()
    assert doc["packages.conda"] == {}


@pytest.mark.parametrize("url", ["/get/main/noarch/repodata.json", "/get/main/noarch/repodata.json.zst",
                                 "/get/main/noarch/repodata_shards.msgpack.zst"])
async def test_cached_answers_are_the_same_as_first_answers(client: httpx2.AsyncClient, channel: dict[str, Path],
                                                            url: str) -> None:
    """Repeated anonymous requests are answered from memory ahead of routing: nothing may differ."""
    first = await client.get(url)
    keys = ("etag", "last-modified", "cache-control", "content-type", "content-length", "accept-ranges")
    for _ in range(2):
        again = await client.get(url)
        assert again.status_code == 200 and again.content == first.content
        assert {k: again.headers.get(k) for k in keys} == {k: first.headers.get(k) for k in keys}
        head = await client.head(url)
        assert head.content == b"" and head.headers["content-length"] == first.headers["content-length"]
    index = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(
        (await client.get("/get/main/noarch/repodata_shards.msgpack.zst")).content))
    shard_url = f"/get/main/noarch/shards/{index['shards']['alpha'].hex()}.msgpack.zst"
    shard_first = await client.get(shard_url)
    shard_again = await client.get(shard_url, headers={"If-None-Match": shard_first.headers["etag"]})
    assert shard_again.status_code == 304
    assert shard_again.headers["cache-control"] == shard_first.headers["cache-control"]


async def test_cached_public_files_hide_when_the_channel_turns_private(client: httpx2.AsyncClient,
                                                                       channel: dict[str, Path],
                                                                       services: Services) -> None:
    from graphconda.services import channels

    url = "/get/main/noarch/repodata.json"
    etag = (await client.get(url)).headers["etag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    await channels.update_channel(services, SYSTEM, "main", channels.ChannelUpdate(private=True))
    assert (await client.get(url)).status_code == 404
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 404
    bad_key = await client.get(url, headers={"X-API-Key": "gc_" + "x" * 43})
    assert bad_key.status_code == 401


@pytest.mark.parametrize("path", ["a%00b/noarch/repodata.json", "main/noarch/a%00b.conda", "main/noarch/%01.conda",
                                  "main/no%00arch/repodata.json", "main/noarch/shards/%ed%a0%80.msgpack.zst",
                                  "main/%0a/repodata.json"])
async def test_unstorable_text_in_urls_is_a_404(client: httpx2.AsyncClient, channel: dict[str, Path],
                                                path: str) -> None:
    """NUL, control characters and lone surrogates are 404s, never a database error (500 on PostgreSQL)."""
    response = await client.get(f"/get/{path}")
    assert response.status_code == 404
