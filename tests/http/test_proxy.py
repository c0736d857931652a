"""Proxy channels against a real upstream on loopback: a static channel indexed by py-rattler's
indexer, served by a fault-injecting HTTP server (tests/fixtures/upstreams.py).

What a client of the proxy sees: index files and packages fetched on first request, served
from storage within the TTL, revalidated with conditional requests after it, the stored copy
when upstream fails, 502/504 only when nothing is stored, verified package files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import zstandard
from sqlalchemy import update

from graphconda.db.models import Channel
from graphconda.services import channels
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from tests.fixtures.upstreams import StaticChannel, place, rattler_index, serve_channel
from tests.helpers.packages import build_package


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"mirror": {"upstream_timeout_seconds": 1.0, "backoff_seconds": 0.05, "retries": 2,
                       "circuit_failures": 3, "circuit_open_seconds": 30}}


@pytest.fixture
def packages(tmp_path: Path) -> list[Path]:
    built = tmp_path / "built"
    return [
        build_package(built, "alpha", "1.0", "0"),
        build_package(built, "alpha", "2.0", "0", fmt=".tar.bz2"),
        build_package(built, "beta", "1.0", "h1_0", subdir="linux-64", depends=["alpha >=2"]),
    ]


@pytest.fixture
async def upstream(tmp_path: Path, packages: list[Path]) -> Any:
    async with serve_channel(tmp_path / "upstream", packages, zst=False) as channel:
        yield channel


async def make_proxy(services: Services, name: str, url: str, *, ttl: int | None = None,
                     private: bool = False) -> None:
    await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name=name, mirror_mode="proxy", mirror_channel_url=url, ttl=ttl, private=private))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_index_and_packages_come_through_the_proxy(client: httpx2.AsyncClient, services: Services,
                                                         upstream: StaticChannel, packages: list[Path]) -> None:
    await make_proxy(services, "px", upstream.url)
    upstream_doc = json.loads((upstream.root / "noarch/repodata.json").read_bytes())
    got = await client.get("/get/px/noarch/repodata.json")
    assert got.status_code == 200 and got.headers["etag"]
    assert got.json()["packages.conda"].keys() == upstream_doc["packages.conda"].keys()
    # .zst is the same snapshot, made here (upstream has none).
    zst = await client.get("/get/px/noarch/repodata.json.zst")
    assert zst.status_code == 200 and zstandard.ZstdDecompressor().decompress(zst.content) == got.content
    # A package file: fetched once, verified, then served from storage.
    for path in packages:
        subdir = "linux-64" if path.name.startswith("beta") else "noarch"
        for _ in range(2):
            response = await client.get(f"/get/px/{subdir}/{path.name}")
            assert response.status_code == 200, response.text
            assert sha(response.content) == sha(path.read_bytes())
        assert upstream.count(f"/{subdir}/{path.name}") == 1
    # Range reads work on the stored copy.
    part = await client.get(f"/get/px/noarch/{packages[0].name}", headers={"range": "bytes=-100"})
    assert part.status_code == 206 and part.content == packages[0].read_bytes()[-100:]
    # A subdir upstream does not have: known ones serve an empty index; no shard index is invented.
    assert (await client.get("/get/px/osx-arm64/repodata.json")).json()["packages"] == {}
    assert (await client.get("/get/px/noarch/repodata_shards.msgpack.zst")).status_code == 404
    assert (await client.get("/get/px/noarch/missing-1.0-0.conda")).status_code == 404


async def test_within_the_ttl_upstream_is_not_asked(client: httpx2.AsyncClient, services: Services,
                                                    upstream: StaticChannel) -> None:
    await make_proxy(services, "px", upstream.url, ttl=3600)
    first = await client.get("/get/px/noarch/repodata.json")
    asked = upstream.count("/noarch/repodata.json")
    for _ in range(3):
        again = await client.get("/get/px/noarch/repodata.json", headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304
    assert upstream.count("/noarch/repodata.json") == asked


async def test_after_the_ttl_a_revalidation_gets_304_and_serves_the_same_bytes(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel
) -> None:
    await make_proxy(services, "px", upstream.url, ttl=0)
    first = await client.get("/get/px/noarch/repodata.json")
    second = await client.get("/get/px/noarch/repodata.json")
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert upstream.statuses("/noarch/repodata.json") == [200, 304]


async def test_a_changed_upstream_index_arrives_after_the_ttl(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, tmp_path: Path
) -> None:
    await make_proxy(services, "px", upstream.url, ttl=0)
    before = (await client.get("/get/px/noarch/repodata.json")).json()
    place(upstream.root, [build_package(tmp_path / "more", "gamma", "1.0", "0")])
    await rattler_index(upstream.root, zst=True)  # now upstream has a .zst too
    after = (await client.get("/get/px/noarch/repodata.json")).json()
    assert "gamma-1.0-0.conda" in after["packages.conda"] and "gamma-1.0-0.conda" not in before["packages.conda"]
    zst = await client.get("/get/px/noarch/repodata.json.zst")
    assert json.loads(zstandard.ZstdDecompressor().decompress(zst.content)) == after


async def test_stale_if_error_and_502_504_only_without_a_copy(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await make_proxy(services, "px", upstream.url, ttl=0)
    # Nothing stored yet: an upstream error is a 502, a stall past the timeout a 504.
    upstream.fail("/linux-64/repodata.json", "status", times=10, status=500)
    upstream.fail("/linux-64/repodata.json.zst", "status", times=10, status=500)
    assert (await client.get("/get/px/linux-64/repodata.json")).status_code == 502
    upstream.clear_faults()
    upstream.fail("/noarch/repodata.json.zst", "stall", times=1, seconds=2.0)
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 504
    upstream.clear_faults()
    good = await client.get("/get/px/noarch/repodata.json")
    assert good.status_code == 200
    package = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert package.status_code == 200
    # Upstream fails from now on: the stored copies answer, and the failure is logged.
    for kind in ("status", "reset"):
        upstream.fail("repodata.json", kind, times=100)
        upstream.fail("repodata.json.zst", kind, times=100)
        with caplog.at_level(logging.WARNING, logger="graphconda"):
            again = await client.get("/get/px/noarch/repodata.json")
        assert again.status_code == 200 and again.content == good.content
        assert any("serving the stored" in r.getMessage() for r in caplog.records)
        upstream.clear_faults()
    assert (await client.get(f"/get/px/noarch/{packages[0].name}")).content == package.content


async def test_retries_honour_retry_after_and_survive_truncated_bodies(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path]
) -> None:
    await make_proxy(services, "px", upstream.url)
    upstream.fail("/noarch/repodata.json.zst", "status", status=429, retry_after="0")
    upstream.fail("/noarch/repodata.json", "status", status=429, retry_after="0")
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    assert 429 in upstream.statuses("/noarch/repodata.json") + upstream.statuses("/noarch/repodata.json.zst")
    upstream.fail(packages[0].name, "truncate")
    response = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert response.status_code == 200 and response.content == packages[0].read_bytes()
    assert upstream.count(packages[0].name) == 2


async def test_a_checksum_mismatch_is_never_cached(client: httpx2.AsyncClient, services: Services,
                                                   upstream: StaticChannel, packages: list[Path]) -> None:
    await make_proxy(services, "px", upstream.url)
    upstream.fail(packages[0].name, "corrupt")
    bad = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert bad.status_code == 502 and "checksum" in bad.json()["detail"]
    good = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert good.status_code == 200 and good.content == packages[0].read_bytes()
    assert upstream.count(packages[0].name) == 2


async def test_upstream_404s_are_remembered(client: httpx2.AsyncClient, services: Services,
                                            upstream: StaticChannel) -> None:
    await make_proxy(services, "px", upstream.url, ttl=0)
    for _ in range(3):
        assert (await client.get("/get/px/noarch/current_repodata.json")).status_code == 404
    assert upstream.count("/noarch/current_repodata.json") == 1


async def test_a_failing_upstream_is_blocked_for_a_while(client: httpx2.AsyncClient, services: Services,
                                                         upstream: StaticChannel) -> None:
    await make_proxy(services, "px", upstream.url, ttl=0)
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    upstream.fail("repodata.json", "status", times=1000, status=503)
    upstream.fail("repodata.json.zst", "status", times=1000, status=503)
    for _ in range(3):  # circuit_failures = 3
        assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    asked = upstream.count("repodata.json") + upstream.count("repodata.json.zst")
    for _ in range(5):
        assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    assert upstream.count("repodata.json") + upstream.count("repodata.json.zst") == asked


async def test_absolute_base_urls_are_rewritten(client: httpx2.AsyncClient, services: Services,
                                                upstream: StaticChannel, packages: list[Path]) -> None:
    # Upstream keeps its files elsewhere and says so with an absolute base_url.
    elsewhere = upstream.root / "files" / "noarch"
    elsewhere.mkdir(parents=True)
    doc = json.loads((upstream.root / "noarch/repodata.json").read_bytes())
    for name in [*doc["packages"], *doc["packages.conda"]]:
        (upstream.root / "noarch" / name).rename(elsewhere / name)
    doc["info"]["base_url"] = f"{upstream.url}/files/noarch/"
    doc["repodata_version"] = 2
    (upstream.root / "noarch/repodata.json").write_text(json.dumps(doc))
    (upstream.root / "noarch/repodata.json.zst").unlink(missing_ok=True)
    await make_proxy(services, "px", upstream.url)
    served = (await client.get("/get/px/noarch/repodata.json")).json()
    assert "base_url" not in served["info"]
    response = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert response.status_code == 200 and response.content == packages[0].read_bytes()
    assert upstream.count(f"/files/noarch/{packages[0].name}") == 1


async def test_private_proxy_channels_need_a_key(client: httpx2.AsyncClient, services: Services,
                                                 upstream: StaticChannel) -> None:
    from graphconda.services import api_keys
    from graphconda.services.authz import Role
    from tests.helpers.channels import make_user

    await make_proxy(services, "secretpx", upstream.url, private=True)
    assert (await client.get("/get/secretpx/noarch/repodata.json")).status_code == 404
    assert upstream.count("repodata.json") == 0
    owner = await make_user(services, "owner", Role.OWNER)
    _, key = await api_keys.create_api_key(services, owner)
    assert (await client.get(f"/t/{key}/get/secretpx/noarch/repodata.json")).status_code == 200


async def test_upstream_credentials_are_sent_and_never_logged(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.auth = ("reader", "s3cret-pass")
    url = upstream.url.replace("http://", "http://reader:s3cret-pass@")
    await make_proxy(services, "px", url, ttl=0)
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    upstream.fail("repodata.json", "status", times=100)
    upstream.fail("repodata.json.zst", "status", times=100)
    with caplog.at_level(logging.DEBUG):
        assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    assert caplog.records and not any("s3cret" in r.getMessage() for r in caplog.records)


async def test_two_processes_download_an_uncached_file_once(
    services: Services, upstream: StaticChannel, packages: list[Path], settings: Any,
) -> None:
    """Two server processes (each its own services, caches and upstream client) on one database
    and storage, eight clients each asking for the same uncached file at once."""
    from graphconda.app import create_app
    from tests.fixtures.server import run_live_server

    await make_proxy(services, "px", upstream.url)
    upstream.fail(packages[0].name, "slow", seconds=0.5)  # the first download takes a while
    servers: list[Iterator[Any]] = [run_live_server(create_app(settings)) for _ in range(2)]
    try:
        live = [await asyncio.to_thread(next, server) for server in servers]
        async with httpx2.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(*(http.get(f"{s.url}/get/px/noarch/{packages[0].name}")
                                             for s in live for _ in range(8)))
        assert all(a.status_code == 200 and a.content == packages[0].read_bytes() for a in answers)
        assert upstream.count(packages[0].name) == 1
    finally:
        for server in servers:
            await asyncio.to_thread(lambda s=server: next(s, None))


async def test_proxy_channels_take_no_uploads(services: Services, upstream: StaticChannel, tmp_path: Path) -> None:
    from graphconda.errors import ConflictError
    from graphconda.services import packages as package_service
    from tests.helpers.channels import chunks

    await make_proxy(services, "px", upstream.url)
    path = build_package(tmp_path / "up", "delta")
    with pytest.raises(ConflictError, match="proxy channel"):
        await package_service.ingest_package(services, SYSTEM, "px", path.name, chunks(path))


async def test_changing_the_upstream_refetches_every_index(client: httpx2.AsyncClient, services: Services,
                                                           upstream: StaticChannel, tmp_path: Path) -> None:
    await make_proxy(services, "px", upstream.url, ttl=3600)
    assert (await client.get("/get/px/linux-64/repodata.json")).json()["packages.conda"]
    omega = build_package(tmp_path / "o", "omega", "1.0", "0", subdir="linux-64")
    async with serve_channel(tmp_path / "other", [omega]) as second:
        await channels.update_channel(services, SYSTEM, "px", channels.ChannelUpdate(mirror_channel_url=second.url))
        async with services.db.write() as session:  # as another process would, a second later
            await session.execute(update(Channel).where(Channel.name == "px").values(description="moved"))
        await asyncio.sleep(services.settings.publish.serve_cache_seconds + 0.1)
        doc = (await client.get("/get/px/linux-64/repodata.json")).json()
        assert list(doc["packages.conda"]) == ["omega-1.0-0.conda"]


async def test_an_upstream_that_is_not_a_conda_channel(client: httpx2.AsyncClient, services: Services,
                                                       upstream: StaticChannel) -> None:
    """HTML where repodata should be, and a redirect loop: a clear 502, nothing stored, later fixed."""
    from graphconda.db.models import ProxyEntry

    (upstream.root / "noarch/repodata.json").write_text("<html>not a channel</html>")
    await make_proxy(services, "px", upstream.url, ttl=0)
    got = await client.get("/get/px/noarch/repodata.json")
    assert got.status_code == 502 and "repodata.json not cached" in got.json()["detail"]
    async with services.db.read() as session:
        assert await session.get(ProxyEntry, (1, "noarch/repodata.json")) is None
    assert await services.storage.stat("channels/px/noarch/repodata.json") is None


async def test_a_redirect_loop_upstream(client: httpx2.AsyncClient, services: Services, tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Loop(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("location", self.path)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        await make_proxy(services, "px", f"http://127.0.0.1:{server.server_address[1]}/c")
        got = await client.get("/get/px/linux-64/repodata.json")
        assert got.status_code == 502
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("settings_overrides", [{"mirror": {"max_index_bytes": 200, "retries": 0}}])
async def test_an_oversized_upstream_index_is_refused(client: httpx2.AsyncClient, services: Services,
                                                      upstream: StaticChannel) -> None:
    await make_proxy(services, "px", upstream.url)
    assert (await client.get("/get/px/linux-64/repodata.json")).status_code == 502
    assert await services.storage.stat("channels/px/linux-64/repodata.json") is None


async def test_proxied_package_downloads_are_counted(client: httpx2.AsyncClient, services: Services,
                                                     upstream: StaticChannel, packages: list[Path]) -> None:
    """A package GET through a proxy counts as a download by the same rule as any channel: the first
    (fetched upstream) and a cached one count, a suffix range (metadata probe) and index files do not."""
    from sqlalchemy import func, select

    from graphconda.db.models import DownloadEvent
    from graphconda.services.downloads import flush_downloads

    await make_proxy(services, "px", upstream.url)
    name = packages[0].name
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    for _ in range(2):
        assert (await client.get(f"/get/px/noarch/{name}")).status_code == 200
    assert (await client.get(f"/get/px/noarch/{name}", headers={"range": "bytes=-100"})).status_code == 206
    await flush_downloads(services)
    async with services.db.read() as session:
        counted = (await session.execute(select(DownloadEvent.subdir, DownloadEvent.filename,
                                                func.sum(DownloadEvent.count))
                                         .group_by(DownloadEvent.subdir, DownloadEvent.filename))).all()
    assert [tuple(row) for row in counted] == [("noarch", name, 2)]


async def test_package_files_are_checked_against_sha256_else_md5(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path],
) -> None:
    """The record's sha256 decides (its md5 is not looked at then); a record with only an md5 is checked by it."""
    index = upstream.root / "noarch/repodata.json"
    doc = json.loads(index.read_bytes())
    conda, bz2 = packages[0].name, packages[1].name
    doc["packages.conda"][conda]["md5"] = "0" * 32
    del doc["packages"][bz2]["sha256"]
    right_md5, doc["packages"][bz2]["md5"] = doc["packages"][bz2]["md5"], "f" * 32
    index.write_text(json.dumps(doc))
    await make_proxy(services, "px", upstream.url, ttl=0)
    first = await client.get(f"/get/px/noarch/{conda}")
    assert first.status_code == 200 and first.content == packages[0].read_bytes()
    bad = await client.get(f"/get/px/noarch/{bz2}")
    assert bad.status_code == 502 and "checksum" in bad.json()["detail"]
    doc["packages"][bz2]["md5"] = right_md5
    index.write_text(json.dumps(doc))
    good = await client.get(f"/get/px/noarch/{bz2}")
    assert good.status_code == 200 and good.content == packages[1].read_bytes()
    assert good.headers["etag"] == f'"{right_md5.ljust(64, "0")}"'  # stored under its md5, padded


async def test_the_first_answer_is_the_stored_file(client: httpx2.AsyncClient, services: Services,
                                                   upstream: StaticChannel, packages: list[Path]) -> None:
    """The first GET is answered from the verified download: same ETag as every later answer, which
    revalidate against it; ranges and HEAD right after it; nothing read back from upstream again."""
    await make_proxy(services, "px", upstream.url)
    name = packages[0].name
    first = await client.get(f"/get/px/noarch/{name}")
    assert first.status_code == 200 and first.content == packages[0].read_bytes()
    assert first.headers["etag"] == f'"{sha(first.content)}"'
    assert int(first.headers["content-length"]) == packages[0].stat().st_size
    head = await client.head(f"/get/px/noarch/{name}")
    assert head.status_code == 200 and head.headers["etag"] == first.headers["etag"]
    part = await client.get(f"/get/px/noarch/{name}", headers={"range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == packages[0].read_bytes()[:10]
    again = await client.get(f"/get/px/noarch/{name}", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert upstream.count(name) == 1


async def test_a_failed_store_still_answers_the_verified_file(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first GET is answered once the bytes are verified, while they are stored: a store that
    fails then leaves nothing behind, and the next request downloads again."""
    await make_proxy(services, "px", upstream.url)
    name = packages[0].name
    key = f"channels/px/noarch/{sha(packages[0].read_bytes())}/{name}"
    blocker = services.storage.local_path(key)
    assert blocker is not None
    blocker = blocker.parent
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the package's directory would go: storing it fails")
    with caplog.at_level(logging.ERROR, logger="graphconda.proxy"):
        first = await client.get(f"/get/px/noarch/{name}")
        assert first.status_code == 200 and first.content == packages[0].read_bytes()
        await services.proxy.aclose()  # the store under way ends
    assert any("failed after it was served" in r.getMessage() for r in caplog.records)
    assert await services.storage.stat(key) is None
    blocker.unlink()
    for _ in range(2):
        again = await client.get(f"/get/px/noarch/{name}")
        assert again.status_code == 200 and again.content == packages[0].read_bytes()
    await services.proxy.aclose()
    assert upstream.count(name) == 2
    assert await services.storage.stat(key) is not None


async def test_a_client_hanging_up_does_not_waste_the_download(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path],
) -> None:
    await make_proxy(services, "px", upstream.url)
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    name = packages[0].name
    upstream.fail(name, "slow", seconds=0.5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get(f"/get/px/noarch/{name}"), 0.1)
    await services.proxy.aclose()  # the download goes on without the client, and is stored
    response = await client.get(f"/get/px/noarch/{name}")
    assert response.status_code == 200 and response.content == packages[0].read_bytes()
    assert upstream.count(name) == 1


@pytest.mark.parametrize("settings_overrides", [{"publish": {"serve_memory_file_bytes": 512}}])
async def test_files_too_big_to_hold_are_stored_before_they_are_answered(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path],
) -> None:
    await make_proxy(services, "px", upstream.url)
    for path in packages[:2]:
        assert path.stat().st_size > 512
        first = await client.get(f"/get/px/noarch/{path.name}")
        assert first.status_code == 200 and first.content == path.read_bytes()
        key = f"channels/px/noarch/{sha(path.read_bytes())}/{path.name}"
        assert await services.storage.stat(key) is not None  # no store left under way
        part = await client.get(f"/get/px/noarch/{path.name}", headers={"range": "bytes=-100"})
        assert part.status_code == 206 and part.content == path.read_bytes()[-100:]
    assert upstream.count(packages[0].name) == upstream.count(packages[1].name) == 1
    assert list((services.settings.data_dir / "tmp").iterdir()) == []  # the temp files became the stored ones


async def test_a_file_newer_than_the_stored_index_is_found_once_per_negative_cache_time(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, tmp_path: Path
) -> None:
    # A long TTL: without a revalidation the new package would 404 for an hour.
    await make_proxy(services, "px", upstream.url, ttl=3600)
    assert (await client.get("/get/px/noarch/repodata.json")).status_code == 200
    added = build_package(tmp_path / "more", "gamma", "1.0", "0")
    place(upstream.root, [added])
    await rattler_index(upstream.root, zst=False)
    # Within mirror.negative_cache_seconds of the last check the stored index is trusted ...
    assert (await client.get(f"/get/px/noarch/{added.name}")).status_code == 404
    # ... after it, a file the index lacks has it revalidated once.
    later = services.now() + timedelta(seconds=services.settings.mirror.negative_cache_seconds + 1)
    services.clock = lambda: later
    got = await client.get(f"/get/px/noarch/{added.name}")
    assert got.status_code == 200 and sha(got.content) == sha(added.read_bytes())
    assert added.name in (await client.get("/get/px/noarch/repodata.json")).json()["packages.conda"]
    # Files upstream lacks: 404, and at most one revalidation per mirror.negative_cache_seconds.
    asked = upstream.count("/noarch/repodata.json")
    for n in range(3):
        assert (await client.get(f"/get/px/noarch/nothing-{n}-1.0-0.conda")).status_code == 404
    assert upstream.count("/noarch/repodata.json") == asked
