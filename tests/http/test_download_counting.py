"""What counts as a download, each rule with a real HTTP request to a server on loopback.

Counted: a GET of a package file answered with the whole body (200, or 206 of byte 0 to the
last byte), a redirect to it (presigned S3 URL), a package file of a proxy channel. Not
counted: HEAD, 304, other ranges (rattler's suffix range for .conda metadata), index files.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import DownloadEvent
from graphconda.services import channels, packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.services.downloads import flush_downloads
from graphconda.services.publisher import wait_published
from tests.fixtures.server import LiveServer
from tests.fixtures.upstreams import serve_channel
from tests.helpers.channels import chunks, make_channel
from tests.helpers.packages import build_package


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"metrics": {"flush_seconds": 0.1}}


async def counted(services: Services, at_least: int) -> int:
    """Downloads the live server wrote, once it wrote `at_least` (its counter flushes every 0.1 s).

    Counts are taken in memory before a response goes out and a flush writes all of them, so
    once the last request's count is written, so is every count of the requests before it.
    """
    await flush_downloads(services)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with services.db.read() as session:
            total = int(await session.scalar(select(func.coalesce(func.sum(DownloadEvent.count), 0))) or 0)
        if total >= at_least or asyncio.get_running_loop().time() > deadline:
            return total
        await asyncio.sleep(0.05)


@pytest.fixture
async def package(services: Services, tmp_path: Path) -> Path:
    await make_channel(services, "main")
    path = build_package(tmp_path, "alpha", "1.0", "0", about={"summary": "x" * 5000})
    await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    await wait_published(services)
    return path


URL = "/get/main/noarch/alpha-1.0-0.conda"


def read(path: Path) -> bytes:
    return path.read_bytes()


async def test_full_get_counts(live_server: LiveServer, services: Services, package: Path) -> None:
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        response = await http.get(URL)
    assert response.status_code == 200 and response.content == read(package)
    assert await counted(services, 1) == 1


async def test_suffix_and_partial_ranges_do_not_count(live_server: LiveServer, services: Services,
                                                      package: Path) -> None:
    size = len(read(package))
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        suffix = await http.get(URL, headers={"Range": "bytes=-1024"})
        middle = await http.get(URL, headers={"Range": f"bytes=10-{size - 1}"})
        head_part = await http.get(URL, headers={"Range": "bytes=0-99"})
        whole_suffix = await http.get(URL, headers={"Range": f"bytes=-{size}"})  # all bytes, but as a suffix
        control = await http.get(URL)  # the one that counts
    assert [suffix.status_code, middle.status_code, head_part.status_code] == [206, 206, 206]
    assert whole_suffix.status_code == 206 and whole_suffix.content == read(package)
    assert control.status_code == 200
    assert await counted(services, 1) == 1


async def test_range_of_the_whole_file_counts(live_server: LiveServer, services: Services, package: Path) -> None:
    size = len(read(package))
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        explicit = await http.get(URL, headers={"Range": f"bytes=0-{size - 1}"})
        open_ended = await http.get(URL, headers={"Range": "bytes=0-"})
    for response in (explicit, open_ended):
        assert response.status_code == 206 and response.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
        assert response.content == read(package)
    assert await counted(services, 2) == 2


async def test_head_304_and_index_files_do_not_count(live_server: LiveServer, services: Services,
                                                     package: Path) -> None:
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        head = await http.head(URL)
        etag = head.headers["etag"]
        revalidated = await http.get(URL, headers={"If-None-Match": etag})
        for name in ("repodata.json", "repodata.json.zst", "repodata_shards.msgpack.zst", "run_exports.json"):
            assert (await http.get(f"/get/main/noarch/{name}")).status_code == 200
        assert (await http.get("/get/main/channeldata.json")).status_code == 200
        assert (await http.get(URL)).status_code == 200  # the one that counts
    assert head.status_code == 200 and revalidated.status_code == 304
    assert await counted(services, 1) == 1


async def test_proxy_channel_files_count(live_server: LiveServer, services: Services, tmp_path: Path) -> None:
    built = build_package(tmp_path / "built", "gamma", "1.0", "0")
    async with serve_channel(tmp_path / "upstream", [built], zst=False) as upstream:
        await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
            name="px", mirror_mode="proxy", mirror_channel_url=upstream.url))
        async with httpx2.AsyncClient(base_url=live_server.url) as http:
            first = await http.get(f"/get/px/noarch/{built.name}")  # fetched from upstream
            second = await http.get(f"/get/px/noarch/{built.name}")  # from storage
            head = await http.head(f"/get/px/noarch/{built.name}")
            suffix = await http.get(f"/get/px/noarch/{built.name}", headers={"Range": "bytes=-100"})
    assert [first.status_code, second.status_code, head.status_code, suffix.status_code] == [200, 200, 200, 206]
    assert first.content == read(built)
    assert await counted(services, 2) == 2


class TestPresignedRedirect:
    pytestmark = [pytest.mark.s3, pytest.mark.slow]

    @pytest.fixture
    def settings_overrides(self, seaweedfs: Any) -> dict[str, Any]:
        s3 = seaweedfs.s3_settings(bucket="channels", prefix=f"t-{uuid.uuid4().hex[:12]}/", presign_downloads=True)
        return {"storage": {"backend": "s3", "s3": s3.model_dump()}, "metrics": {"flush_seconds": 0.1}}

    async def test_presigned_redirect_counts_once(self, live_server: LiveServer, services: Services,
                                                  package: Path) -> None:
        async with httpx2.AsyncClient(base_url=live_server.url, follow_redirects=True) as http:
            response = await http.get(URL)
            assert response.status_code == 200 and response.content == read(package)
            assert response.history and response.history[0].status_code == 302  # the bytes came from S3
            etag = (await http.head(URL)).headers["etag"]
            assert (await http.get(URL, headers={"If-None-Match": etag},
                                   follow_redirects=False)).status_code == 304
            suffix = await http.get(URL, headers={"Range": "bytes=-100"}, follow_redirects=False)
            assert suffix.status_code == 302
            control = await http.get(URL, headers={"Range": f"bytes=0-{len(read(package)) - 1}"})
            assert control.status_code == 206 and control.content == read(package)
        assert await counted(services, 2) == 2  # the full GET and the range of all bytes
