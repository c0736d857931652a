"""What conda clients see of a channel's files beyond the bytes: content ETags, compressed variants, gzip."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx2
import pytest
import zstandard

from graphconda.services import packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from tests.helpers.channels import chunks, make_channel
from tests.helpers.packages import build_package

IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


async def upload(services: Services, path: Path, channel: str = "main", *, force: bool = False) -> None:
    await packages.ingest_package(services, SYSTEM, channel, path.name, chunks(path), force=force)
    await wait_published(services)


@pytest.fixture
async def alpha(services: Services, tmp_path: Path) -> Path:
    await make_channel(services, "main", options={"current_repodata": True})
    path = build_package(tmp_path, "alpha", "1.0", "0", depends=["beta >=1"], timestamp=1_700_000_000_000)
    await upload(services, path)
    return path


URLS = ["/get/main/noarch/alpha-1.0-0.conda", "/get/main/noarch/repodata.json", "/get/main/noarch/repodata.json.zst",
        "/get/main/noarch/current_repodata.json", "/get/main/noarch/run_exports.json", "/get/main/channeldata.json"]


async def test_etags_survive_a_byte_identical_forced_reupload(client: httpx2.AsyncClient, services: Services,
                                                              alpha: Path) -> None:
    before = {url: (await client.get(url, headers=IDENTITY)) for url in URLS}
    assert all(r.status_code == 200 for r in before.values())
    await upload(services, alpha, force=True)
    for url, first in before.items():
        again = await client.get(url, headers=IDENTITY)
        assert again.content == first.content, url
        assert again.headers["etag"] == first.headers["etag"], url
        cached = await client.get(url, headers={**IDENTITY, "If-None-Match": first.headers["etag"]})
        assert cached.status_code == 304, url


async def test_current_repodata_zst_is_published_beside_the_json(client: httpx2.AsyncClient, alpha: Path) -> None:
    plain = await client.get("/get/main/noarch/current_repodata.json", headers=IDENTITY)
    zst = await client.get("/get/main/noarch/current_repodata.json.zst")
    assert zst.status_code == 200 and "content-encoding" not in zst.headers
    assert zst.headers["content-type"] == "application/zstd"
    assert json.loads(zstandard.ZstdDecompressor().decompress(zst.content)) == plain.json()
    assert list(plain.json()["packages.conda"]) == ["alpha-1.0-0.conda"]


async def raw_get(client: httpx2.AsyncClient, url: str, headers: dict[str, str],
                  method: str = "GET") -> tuple[httpx2.Response, bytes]:
    """The response and its bytes as sent (not decoded: httpx would gunzip them)."""
    async with client.stream(method, url, headers=headers) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, raw


@pytest.mark.parametrize("name", ["repodata.json", "current_repodata.json"])
async def test_gzip_copy_for_clients_that_accept_it(client: httpx2.AsyncClient, alpha: Path, name: str) -> None:
    url = f"/get/main/noarch/{name}"
    plain, plain_bytes = await raw_get(client, url, IDENTITY)
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    json.loads(plain_bytes)
    # The first answer comes from the routed path, the repeats from the fast path: all must agree.
    answers = [await raw_get(client, url, GZIP) for _ in range(3)]
    for response, raw in answers:
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-length"] == str(len(raw))
        assert gzip.decompress(raw) == plain_bytes
        assert response.headers["etag"] != plain.headers["etag"]
        assert response.headers["etag"] == answers[0][0].headers["etag"]
    gz_etag = answers[0][0].headers["etag"]
    for accept in ("gzip, deflate, br", "deflate, gzip;q=0.5", "*", "x-gzip"):
        response, raw = await raw_get(client, url, {"Accept-Encoding": accept})
        assert response.headers.get("content-encoding") == "gzip" and gzip.decompress(raw) == plain_bytes, accept
    for accept in ("identity", "br", "gzip;q=0", "*;q=0", "deflate, *;q=0"):
        response, raw = await raw_get(client, url, {"Accept-Encoding": accept})
        assert "content-encoding" not in response.headers and raw == plain_bytes, accept
        assert response.headers["etag"] == plain.headers["etag"]
    no_header, raw = await raw_get(client, url, {"Accept-Encoding": ""})
    assert "content-encoding" not in no_header.headers and raw == plain_bytes
    # HEAD says what GET would send.
    head, body = await raw_get(client, url, GZIP, method="HEAD")
    assert body == b"" and head.headers["content-encoding"] == "gzip"
    assert head.headers["content-length"] == answers[0][0].headers["content-length"]
    # Revalidation per representation.
    for _ in range(2):
        same, body = await raw_get(client, url, {**GZIP, "If-None-Match": gz_etag})
        assert same.status_code == 304 and body == b"" and same.headers["vary"] == "Accept-Encoding"
        assert same.headers["etag"] == gz_etag
        switched, raw = await raw_get(client, url, {**GZIP, "If-None-Match": plain.headers["etag"]})
        assert switched.status_code == 200 and gzip.decompress(raw) == plain_bytes
        identity_304, _ = await raw_get(client, url, {**IDENTITY, "If-None-Match": plain.headers["etag"]})
        assert identity_304.status_code == 304
    # Ranges are offsets into the JSON, whatever the client accepts.
    part, raw = await raw_get(client, url, {**GZIP, "Range": "bytes=0-0"})
    assert part.status_code == 206 and raw == b"{" and "content-encoding" not in part.headers
    assert part.headers["vary"] == "Accept-Encoding"
    # The copy is an encoding, not a file of its own.
    assert (await client.get(f"/get/main/noarch/{name}.gz")).status_code == 404


async def test_gzip_copy_follows_every_republish(client: httpx2.AsyncClient, services: Services, alpha: Path,
                                                 tmp_path: Path) -> None:
    first, _ = await raw_get(client, "/get/main/noarch/repodata.json", GZIP)
    await upload(services, build_package(tmp_path / "b", "beta", "2.0"))
    second, raw = await raw_get(client, "/get/main/noarch/repodata.json", GZIP)
    assert second.headers["etag"] != first.headers["etag"]
    assert set(json.loads(gzip.decompress(raw))["packages.conda"]) == {"alpha-1.0-0.conda", "beta-2.0-0.conda"}


async def test_unpublished_known_subdirs_still_serve_identity(client: httpx2.AsyncClient, alpha: Path) -> None:
    response, raw = await raw_get(client, "/get/main/linux-64/repodata.json", GZIP)
    assert response.status_code == 200 and "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert json.loads(raw)["info"] == {"subdir": "linux-64"}
